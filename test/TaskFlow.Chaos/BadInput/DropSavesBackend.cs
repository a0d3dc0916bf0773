using TaskFlow.Chaos.CrashResume;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.BadInput;

/// <summary>
/// A deliberately broken store for the bad-input self-test: it acknowledges but drops every save of a finished
/// atom, so what a run leaves in the store disagrees with how it ended.
/// </summary>
internal sealed class DropSavesBackend(IPersistenceBackend inner) : DelegatingBackend(inner)
{
    public override Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default)
    {
        var kept = atomDetails.Where(a => a.State is not (AtomState.Success or AtomState.Reverted)).ToArray();
        return kept.Length == 0 ? Task.CompletedTask : Inner.SaveAtomDetailsAsync(flowDetailId, kept, cancellationToken);
    }
}
