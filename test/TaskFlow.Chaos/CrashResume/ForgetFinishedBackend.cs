using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>
/// A deliberately broken store for the crash-resume self-test: loading a saved run reports its latest finished task
/// (the last SUCCESS atom, when every atom after it is still PENDING) as RUNNING again, so a resumed run executes again
/// a task whose SUCCESS was acknowledged — the "lost final save" that no later execution count can see unless the
/// checker knows what was acknowledged.
/// </summary>
internal sealed class ForgetFinishedBackend(IPersistenceBackend inner) : DelegatingBackend(inner)
{
    public override async Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default)
    {
        var detail = await Inner.GetFlowDetailAsync(flowDetailId, cancellationToken).ConfigureAwait(false);
        if (detail is null) return null;
        var atoms = detail.Atoms.ToList();
        int last = atoms.FindLastIndex(a => a.State != AtomState.Pending);
        if (last < 0 || atoms[last] is not TaskDetail { State: AtomState.Success } done) return detail;
        atoms[last] = done.WithReset(AtomState.Running);
        return detail with { Atoms = atoms };
    }
}
