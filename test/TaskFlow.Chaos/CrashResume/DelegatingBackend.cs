using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>A backend that forwards every call to another; the chaos wrappers override the calls they change.</summary>
internal abstract class DelegatingBackend(IPersistenceBackend inner) : IPersistenceBackend
{
    protected IPersistenceBackend Inner { get; } = inner;

    public virtual Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => Inner.EnsureSchemaAsync(cancellationToken);

    public virtual Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) => Inner.SaveLogBookAsync(logBook, cancellationToken);

    public virtual Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => Inner.GetLogBookAsync(logBookId, cancellationToken);

    public virtual Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default) => Inner.ListLogBooksAsync(cancellationToken);

    public virtual Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => Inner.DeleteLogBookAsync(logBookId, cancellationToken);

    public virtual Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) => Inner.SaveFlowDetailAsync(flowDetail, cancellationToken);

    public virtual Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => Inner.GetFlowDetailAsync(flowDetailId, cancellationToken);

    public virtual Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default) => Inner.ListFlowDetailsAsync(logBookId, cancellationToken);

    public virtual Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => Inner.DeleteFlowDetailAsync(flowDetailId, cancellationToken);

    public virtual Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) => Inner.UpdateFlowStateAsync(flowDetailId, state, cancellationToken);

    public virtual Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        Inner.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken);

    public virtual Task ClearAllAsync(CancellationToken cancellationToken = default) => Inner.ClearAllAsync(cancellationToken);

    public virtual ValueTask DisposeAsync() => Inner.DisposeAsync();
}
