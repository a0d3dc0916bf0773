using TaskFlow.Chaos.CrashResume;
using TaskFlow.Conductors;
using TaskFlow.Persistence;
using TaskFlow.States;
using TaskFlow.TestUtilities;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>
/// How a chaos conductor saves: through the backend's fence, or, for the self-test's deliberately broken variant
/// (<c>--unfenced true</c>, test code only), around it: ownership is never taken and writes go to the backend unchecked,
/// which is what the conductor did before fencing tokens. Either way every save that returns with atoms SUCCESS is
/// logged ("saved &lt;job&gt; &lt;task&gt; &lt;epoch&gt; &lt;time&gt;"), so the checker can tell a re-execution of a task whose
/// success was already stored.
/// </summary>
internal sealed class JobboardPersistence(IFencedPersistenceBackend inner, bool unfenced, ISideEffects log, Func<Guid, long> jobOf)
    : ForwardingPersistenceBackend(inner), IFencedPersistenceBackend
{
    /// <summary>Logs "refused &lt;job&gt; &lt;write&gt; &lt;held epoch&gt; &lt;current epoch&gt; &lt;time&gt;" for every write the store refused.</summary>
    public static void LogRefusals(Conductor conductor, ISideEffects log) =>
        conductor.Notifications.Subscribe<JobWriteRefused>(e => log.Record(
            $"refused {e.Job.Store["job"].GetInt64()} {e.Write.Replace(' ', '_')} {e.HeldEpoch} {e.CurrentEpoch?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} {System.Diagnostics.Stopwatch.GetTimestamp()}"));

    public async Task<IPersistenceBackend> TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken = default)
    {
        var view = unfenced ? inner : await inner.TakeOwnershipAsync(flowDetailId, token, cancellationToken);
        return new SaveLog(view, token.Epoch, jobOf(flowDetailId), log);
    }

    /// <summary>The child owns the backend.</summary>
    public override ValueTask DisposeAsync() => inner.DisposeAsync();

    /// <summary>One claim's view: forwards everything and logs the SUCCESS atoms of every atom save that returned.</summary>
    private sealed class SaveLog(IPersistenceBackend view, long epoch, long job, ISideEffects log) : ForwardingPersistenceBackend(view)
    {
        public override async Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default)
        {
            await Inner.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken);
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            foreach (var atom in atomDetails)
                if (atom.State == AtomState.Success) log.Record($"saved {job} {atom.Name} {epoch} {now}");
        }
    }
}
