using TaskFlow.Chaos.CrashResume;
using TaskFlow.Persistence;

namespace TaskFlow.Chaos.BadInput;

/// <summary>
/// A deliberately broken store for the bad-input self-test: it hides damage, answering a read that failed with
/// <see cref="PersistenceException"/> as if the run were not there (a store that "recovers" by forgetting).
/// </summary>
internal sealed class HideDamageBackend(IPersistenceBackend inner) : DelegatingBackend(inner)
{
    public override async Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default)
    {
        try { return await Inner.GetFlowDetailAsync(flowDetailId, cancellationToken).ConfigureAwait(false); }
        catch (PersistenceException) { return null; }
    }

    public override async Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default)
    {
        try { return await Inner.ListLogBooksAsync(cancellationToken).ConfigureAwait(false); }
        catch (PersistenceException) { return []; }
    }
}
