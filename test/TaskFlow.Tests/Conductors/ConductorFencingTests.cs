using System.Collections.Concurrent;
using TaskFlow.Atoms;
using TaskFlow.Conductors;
using TaskFlow.Flows;
using TaskFlow.Jobs;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Tests.Conductors;

/// <summary>What a conductor does when the store fences it out: a newer owner took its job's run over.</summary>
public sealed class ConductorFencingTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly InMemoryJobBoard _board = new("tests");
    private readonly InMemoryPersistenceBackend _persistence = new();
    private readonly ConcurrentQueue<string> _executed = new();
    private readonly List<Conductor> _conductors = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _conductors) await c.DisposeAsync();
        await _board.DisposeAsync();
    }

    private Conductor NewConductor(IFlowFactoryRegistry flows, IPersistenceBackend? persistence = null)
    {
        var conductor = new Conductor(_board, flows, persistence ?? _persistence, new ConductorOptions
        {
            Name = "conductor-a",
            Engine = ConductorEngine.Parallel,
            WaitTimeout = TimeSpan.FromSeconds(1),
        });
        _conductors.Add(conductor);
        return conductor;
    }

    private static Task<TEvent> Next<TEvent>(Conductor conductor, Func<TEvent, bool>? filter = null) where TEvent : struct
    {
        var tcs = new TaskCompletionSource<TEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        conductor.Notifications.Subscribe<TEvent>(e =>
        {
            if (filter is null || filter(e)) tcs.TrySetResult(e);
        });
        return tcs.Task.WaitAsync(Patience);
    }

    [Fact]
    public async Task ANewerOwnerTakesTheRunOver_TheStaleSaveIsRefused_TheRunIsCancelled_AndTheJobGivenBack()
    {
        var slowStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fastMayFinish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slowCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var flows = new FlowFactoryRegistry().Register("pair", () => new LinearFlow("pair")
        {
            new UnorderedFlow("both")
            {
                // Still running when the refused save stops the run: it must see its cancellation.
                FlowTask.Create("slow", async (CancellationToken cancellationToken) =>
                {
                    _executed.Enqueue("slow");
                    slowStarted.TrySetResult();
                    try { await Task.Delay(Timeout.Infinite, cancellationToken); }
                    catch (OperationCanceledException) { slowCancelled.TrySetResult(); throw; }
                }),
                FlowTask.Create("fast", async () => { _executed.Enqueue("fast"); await fastMayFinish.Task; return 1; }, provides: "f"),
            },
            FlowTask.Create("after", (int f) => { _executed.Enqueue("after"); return f; }),
        });
        var job = await _board.PostAsync(new JobPosting { Name = "pair", FlowFactory = "pair" });
        var conductor = NewConductor(flows);
        // Stopped as soon as it is fenced out: on this board it still holds the claim, so the abandon succeeds, and it
        // must not claim the job again (as a later epoch it would be the legitimate owner and write).
        conductor.Notifications.Subscribe<JobWriteRefused>(e => { _ = conductor.StopAsync(); });
        var refused = Next<JobWriteRefused>(conductor);
        var abandoned = Next<JobAbandoned>(conductor);
        var running = conductor.RunAsync();
        await slowStarted.Task.WaitAsync(Patience);
        while (!_executed.Contains("fast")) await Task.Delay(5);
        var before = (await _persistence.GetFlowDetailAsync(job.FlowDetailId))!;

        // Someone else took the run over (as a conductor that claimed the job after this one's lease ran out would).
        var successor = new FencingToken("conductor-b", 2);
        await _persistence.TakeOwnershipAsync(job.FlowDetailId, successor);
        fastMayFinish.SetResult();

        var e = await refused;
        await slowCancelled.Task.WaitAsync(Patience);
        var given = await abandoned;
        await conductor.StopAsync();
        await running;

        Assert.Equal(job.Id, e.Job.Id);
        Assert.Equal("conductor-a", e.Conductor);
        Assert.Equal("save atom details", e.Write);
        Assert.Equal(1, e.HeldEpoch);
        Assert.Equal(2, e.CurrentEpoch);
        Assert.Equal("conductor-b", e.CurrentOwner);
        Assert.Contains("epoch 1", given.Reason);
        Assert.Contains("'conductor-b' at epoch 2", given.Reason);
        Assert.IsType<StaleOwnerException>(given.Failure);
        Assert.DoesNotContain("after", _executed);
        // Nothing the stale conductor wrote after the take-over is stored: fast is still RUNNING, the flow too.
        var after = (await _persistence.GetFlowDetailAsync(job.FlowDetailId))!;
        Assert.Equal(AtomState.Running, after.FindAtom("fast")!.State);
        Assert.Equal(before.State, after.State);
        Assert.Equal(before.Atoms.Select(a => a.State), after.Atoms.Select(a => a.State));
    }

    [Fact]
    public async Task TheStoredOwnerIsNewerThanTheClaim_NothingRunsUntilAClaimPassesIt_ThenTheJobRunsOnce()
    {
        var flows = new FlowFactoryRegistry().Register("one", () => new LinearFlow("one")
        {
            FlowTask.Create("only", () => { _executed.Enqueue("only"); return 1; }),
        });
        var job = await _board.PostAsync(new JobPosting { Name = "one", FlowFactory = "one" });
        // A run an earlier job (or an earlier board) took over up to epoch 3.
        await _persistence.TakeOwnershipAsync(job.FlowDetailId, new FencingToken("elsewhere", 3));
        var conductor = NewConductor(flows);
        var refusals = new ConcurrentQueue<JobWriteRefused>();
        conductor.Notifications.Subscribe<JobWriteRefused>(refusals.Enqueue);
        var consumed = Next<JobConsumed>(conductor);

        var running = conductor.RunAsync();
        var done = await consumed;
        await conductor.StopAsync();
        await running;

        // Claims 1, 2 and 3 could not take the run over; claim 4 could, and ran it.
        Assert.Equal([1L, 2L, 3L], refusals.Select(r => r.HeldEpoch));
        Assert.All(refusals, r => Assert.Equal(("take ownership", 3L, "elsewhere"), (r.Write, r.CurrentEpoch!.Value, r.CurrentOwner!)));
        Assert.Equal(4, done.Job.ClaimCount);
        Assert.Equal(["only"], _executed);
        Assert.Equal(FlowState.Success, (await _persistence.GetFlowDetailAsync(job.FlowDetailId))!.State);
    }

    [Fact]
    public void Constructor_PersistenceWithoutFencing_IsRefusedNamingWhatIsNeeded()
    {
        var ex = Assert.Throws<ArgumentException>(() => NewConductor(new FlowFactoryRegistry(), new UnfencedBackend(_persistence)));

        Assert.Equal("persistence", ex.ParamName);
        Assert.Contains(nameof(UnfencedBackend), ex.Message);
        Assert.Contains(nameof(IFencedPersistenceBackend), ex.Message);
        Assert.Contains("conductor-a", ex.Message);
    }

    /// <summary>A user's backend that does not implement fencing (here: a wrapper that does not forward it).</summary>
    private sealed class UnfencedBackend(IPersistenceBackend inner) : TaskFlow.TestUtilities.ForwardingPersistenceBackend(inner);
}
