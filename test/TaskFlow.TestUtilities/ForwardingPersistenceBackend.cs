using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.TestUtilities;

/// <summary>
/// A backend that forwards every call to another, for test wrappers that change one or two calls (a user's decorator,
/// which does not implement fencing unless it says so). Shared by the test projects and the chaos harness (linked into
/// it as source). Test code only.
/// </summary>
public class ForwardingPersistenceBackend(IPersistenceBackend inner) : IPersistenceBackend
{
    protected IPersistenceBackend Inner => inner;

    public virtual Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => inner.EnsureSchemaAsync(cancellationToken);
    public virtual Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) => inner.SaveLogBookAsync(logBook, cancellationToken);
    public virtual Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => inner.GetLogBookAsync(logBookId, cancellationToken);
    public virtual Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default) => inner.ListLogBooksAsync(cancellationToken);
    public virtual Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => inner.DeleteLogBookAsync(logBookId, cancellationToken);
    public virtual Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) => inner.SaveFlowDetailAsync(flowDetail, cancellationToken);
    public virtual Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => inner.GetFlowDetailAsync(flowDetailId, cancellationToken);
    public virtual Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default) => inner.ListFlowDetailsAsync(logBookId, cancellationToken);
    public virtual Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => inner.DeleteFlowDetailAsync(flowDetailId, cancellationToken);
    public virtual Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) => inner.UpdateFlowStateAsync(flowDetailId, state, cancellationToken);
    public virtual Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        inner.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken);
    public virtual Task ClearAllAsync(CancellationToken cancellationToken = default) => inner.ClearAllAsync(cancellationToken);

    /// <summary>Does not dispose the inner backend (whoever created it does), unless a subclass says otherwise.</summary>
    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
