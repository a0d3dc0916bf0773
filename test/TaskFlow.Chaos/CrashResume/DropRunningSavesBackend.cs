using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>
/// A deliberately broken store for the crash-resume self-test: it acknowledges but never writes an atom's RUNNING
/// state, so a run killed while a task runs looks, when resumed, as if the task never started.
/// </summary>
internal sealed class DropRunningSavesBackend(IPersistenceBackend inner) : DelegatingBackend(inner)
{
    public override Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default)
    {
        var kept = atomDetails.Where(a => a.State != AtomState.Running).ToArray();
        return kept.Length == 0 ? Task.CompletedTask : Inner.SaveAtomDetailsAsync(flowDetailId, kept, cancellationToken);
    }
}
