using System.Collections.Concurrent;
using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Conductors;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Jobs;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Tests.Conductors;

public sealed class ConductorTests : IAsyncDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly InMemoryJobBoard _board = new("tests");
    private readonly InMemoryPersistenceBackend _persistence = new();
    private readonly FlowFactoryRegistry _flows = new();
    private readonly ConcurrentQueue<string> _executed = new();
    private readonly List<Conductor> _conductors = [];

    public ConductorTests()
    {
        // x + y = sum, then double it: reads the job's store, writes a result the second task needs.
        _flows.Register("add-then-double", () => new LinearFlow("add-then-double")
        {
            FlowTask.Create("add", (int x, int y) => { _executed.Enqueue("add"); return x + y; }, provides: "sum"),
            FlowTask.Create("double", (int sum) => { _executed.Enqueue("double"); return sum * 2; }, provides: "doubled"),
        });
        _flows.Register("fails", () => new LinearFlow("fails")
        {
            FlowTask.Create("prepare", () => { _executed.Enqueue("prepare"); }, () => { _executed.Enqueue("revert prepare"); }),
            FlowTask.Create("explode", () => { _executed.Enqueue("explode"); throw new InvalidOperationException("disk on fire"); }),
        });
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _conductors) await c.DisposeAsync();
        await _board.DisposeAsync();
    }

    private Conductor NewConductor(string name = "conductor-1", int maxConcurrentJobs = 1, FlowFailureAction onFailure = FlowFailureAction.Consume,
        ConductorEngine engine = ConductorEngine.Serial, IFlowFactoryRegistry? flows = null)
    {
        var conductor = new Conductor(_board, flows ?? _flows, _persistence, new ConductorOptions
        {
            Name = name,
            MaxConcurrentJobs = maxConcurrentJobs,
            OnFlowFailure = onFailure,
            Engine = engine,
            WaitTimeout = TimeSpan.FromSeconds(1),
        });
        _conductors.Add(conductor);
        return conductor;
    }

    private static Task<TEvent> Next<TEvent>(Conductor conductor, Func<TEvent, bool>? filter = null) where TEvent : struct
    {
        var tcs = new TaskCompletionSource<TEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        IDisposable? subscription = null;
        subscription = conductor.Notifications.Subscribe<TEvent>(e =>
        {
            if (filter is not null && !filter(e)) return;
            if (tcs.TrySetResult(e)) subscription?.Dispose();
        });
        return tcs.Task.WaitAsync(Patience);
    }

    private Task<Job> PostAsync(string factory, object? store = null) =>
        _board.PostAsync(new JobPosting
        {
            Name = factory + "-job",
            FlowFactory = factory,
            Store = store is null
                ? new Dictionary<string, JsonElement>()
                : JsonSerializer.SerializeToElement(store).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone()),
        });

    [Theory]
    [InlineData(ConductorEngine.Serial)]
    [InlineData(ConductorEngine.Parallel)]
    public async Task RunAsync_SucceedingFlow_RunsEachTaskOnceSavesTheRunAndConsumesTheJob(ConductorEngine engine)
    {
        var job = await PostAsync("add-then-double", new { x = 2, y = 3 });
        var conductor = NewConductor(engine: engine);
        var claimed = Next<JobClaimed>(conductor);
        var consumed = Next<JobConsumed>(conductor);

        var running = conductor.RunAsync();
        var done = await consumed;
        await conductor.StopAsync();
        await running;

        Assert.Equal(job.Id, (await claimed).Job.Id);
        Assert.Equal(job.Id, done.Job.Id);
        Assert.Null(done.Failure);
        Assert.Equal(["add", "double"], _executed);
        var read = await _board.GetJobAsync(job.Id);
        Assert.Equal(JobState.Complete, read!.State);
        Assert.Equal("conductor-1", read.Owner);
        var detail = await _persistence.GetFlowDetailAsync(job.FlowDetailId);
        Assert.Equal(FlowState.Success, detail!.State);
        Assert.Equal(job.LogBookId, detail.LogBookId);
        Assert.Equal(10, ((TaskDetail)detail.FindAtom("double")!).Result!.Value.GetInt32());
        Assert.Equal(1, conductor.DispatchedCount);
    }

    [Fact]
    public async Task RunAsync_FailingFlow_IsRevertedAndConsumedByDefaultLikeTaskFlow()
    {
        var job = await PostAsync("fails");
        var conductor = NewConductor();
        var consumed = Next<JobConsumed>(conductor);

        var running = conductor.RunAsync();
        var done = await consumed;
        await conductor.StopAsync();
        await running;

        Assert.IsType<InvalidOperationException>(done.Failure);
        Assert.Equal("disk on fire", done.Failure!.Message);
        Assert.Equal(["prepare", "explode", "revert prepare"], _executed);
        Assert.Equal(JobState.Complete, (await _board.GetJobAsync(job.Id))!.State);
        Assert.Equal(FlowState.Reverted, (await _persistence.GetFlowDetailAsync(job.FlowDetailId))!.State);
    }

    [Fact]
    public async Task RunAsync_FailingFlowUnderTrash_TrashesTheJob()
    {
        var job = await PostAsync("fails");
        var conductor = NewConductor(onFailure: FlowFailureAction.Trash);
        var trashed = Next<JobTrashed>(conductor);

        var running = conductor.RunAsync();
        var done = await trashed;
        await conductor.StopAsync();
        await running;

        Assert.Equal("disk on fire", done.Failure!.Message);
        Assert.Equal(JobState.Trashed, (await _board.GetJobAsync(job.Id))!.State);
    }

    [Fact]
    public async Task RunAsync_FailingFlowUnderAbandon_GivesTheJobBackForAnotherTry()
    {
        var job = await PostAsync("fails");
        var conductor = NewConductor(onFailure: FlowFailureAction.Abandon);
        var abandoned = Next<JobAbandoned>(conductor);
        // Stop at the first abandon, or the conductor would claim the job again and again.
        using var _ = conductor.Notifications.Subscribe<JobAbandoned>(_ => conductor.StopAsync());

        var running = conductor.RunAsync();
        var done = await abandoned;
        await running.WaitAsync(Patience);

        Assert.Equal("disk on fire", done.Failure!.Message);
        var read = await _board.GetJobAsync(job.Id);
        Assert.Equal(JobState.Unclaimed, read!.State);
        Assert.True(read.ClaimCount >= 1);
    }

    [Fact]
    public async Task RunAsync_UnknownFlowFactory_TrashesTheJobAndNamesTheFactory()
    {
        var job = await PostAsync("no-such-factory");
        var conductor = NewConductor();
        var trashed = Next<JobTrashed>(conductor);

        var running = conductor.RunAsync();
        var done = await trashed;
        await conductor.StopAsync();
        await running;

        var notFound = Assert.IsType<NotFoundException>(done.Failure);
        Assert.Contains("'no-such-factory'", notFound.Message);
        Assert.Contains("'add-then-double'", notFound.Message);
        Assert.Equal(JobState.Trashed, (await _board.GetJobAsync(job.Id))!.State);
        Assert.Empty(_executed);
    }

    [Fact]
    public async Task RunAsync_InputsMissingFromTheStore_TrashesTheJobInsteadOfConsumingIt()
    {
        var job = await PostAsync("add-then-double", new { x = 2 });
        var conductor = NewConductor();
        var trashed = Next<JobTrashed>(conductor);

        var running = conductor.RunAsync();
        var done = await trashed;
        await conductor.StopAsync();
        await running;

        var missing = Assert.IsType<MissingDependenciesException>(done.Failure);
        Assert.Equal(["y"], missing.MissingParameterNames);
        Assert.Empty(_executed);
        Assert.Equal(JobState.Trashed, (await _board.GetJobAsync(job.Id))!.State);
    }

    [Fact]
    public async Task StopAsync_DuringARun_SuspendsTheFlowAbandonsTheJob_AndTheNextConductorResumesWithoutRerunningFinishedTasks()
    {
        var slowStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseSlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var flows = new FlowFactoryRegistry().Register("three-steps", () => new LinearFlow("three-steps")
        {
            FlowTask.Create("first", () => { _executed.Enqueue("first"); return 1; }, provides: "a"),
            FlowTask.Create("slow", async (int a) =>
            {
                _executed.Enqueue("slow");
                slowStarted.TrySetResult();
                await releaseSlow.Task; // ignores cancellation: a graceful stop lets running tasks finish
                return a + 1;
            }, provides: "b"),
            FlowTask.Create("last", (int b) => { _executed.Enqueue("last"); return b + 1; }, provides: "c"),
        });
        var job = await PostAsync("three-steps");
        var first = NewConductor("conductor-1", flows: flows);
        var abandoned = Next<JobAbandoned>(first);
        var running = first.RunAsync();
        await slowStarted.Task.WaitAsync(Patience);

        var stopping = first.StopAsync();
        await Task.Delay(100);
        Assert.False(stopping.IsCompleted); // waits for the running task
        releaseSlow.SetResult();
        await stopping.WaitAsync(Patience);
        await running;

        var gaveBack = await abandoned;
        Assert.Equal(job.Id, gaveBack.Job.Id);
        Assert.Equal(["first", "slow"], _executed);
        Assert.Equal(JobState.Unclaimed, (await _board.GetJobAsync(job.Id))!.State);
        var suspended = await _persistence.GetFlowDetailAsync(job.FlowDetailId);
        Assert.Equal(FlowState.Suspended, suspended!.State);
        Assert.Equal(AtomState.Success, suspended.FindAtom("slow")!.State);
        Assert.Equal(AtomState.Pending, suspended.FindAtom("last")!.State);

        var second = NewConductor("conductor-2", flows: flows);
        var secondEvents = new System.Collections.Concurrent.ConcurrentQueue<string>(); // says why, should a claim repeat
        using var recording = second.Notifications.SubscribeAll(e => secondEvents.Enqueue(e is JobOperationFailed f ? $"{f} ({f.Failure.Message})" : e is JobAbandoned a ? $"{a} ({a.Failure?.Message})" : e.ToString() ?? ""));
        var consumed = Next<JobConsumed>(second);
        var runningSecond = second.RunAsync();
        await consumed;
        await second.StopAsync();
        await runningSecond;

        Assert.Equal(["first", "slow", "last"], _executed);
        var finished = await _persistence.GetFlowDetailAsync(job.FlowDetailId);
        Assert.Equal(FlowState.Success, finished!.State);
        Assert.Equal(3, ((TaskDetail)finished.FindAtom("last")!).Result!.Value.GetInt32());
        var read = await _board.GetJobAsync(job.Id);
        Assert.True(("conductor-2", 2) == (read!.Owner, read.ClaimCount),
            $"owner {read.Owner}, {read.ClaimCount} claims; conductor-2 published: {string.Join(" | ", secondEvents)}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public async Task RunAsync_RunsAtMostMaxConcurrentJobsAtOnce(int maxConcurrentJobs)
    {
        int running = 0, peak = 0;
        var flows = new FlowFactoryRegistry().Register("hold", () => new LinearFlow("hold")
        {
            FlowTask.Create("hold", async () =>
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref peak, now);
                // Hold until every permitted job is in (or a short while, for the blocking conductor).
                for (var i = 0; i < 100 && Volatile.Read(ref running) < maxConcurrentJobs; i++) await Task.Delay(10);
                await Task.Delay(50);
                Interlocked.Decrement(ref running);
            }),
        });
        for (var i = 0; i < 6; i++) await PostAsync("hold");
        var conductor = NewConductor(maxConcurrentJobs: maxConcurrentJobs, flows: flows);
        var consumedCount = 0;
        var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var _ = conductor.Notifications.Subscribe<JobConsumed>(_ => { if (Interlocked.Increment(ref consumedCount) == 6) allDone.TrySetResult(); });

        var run = conductor.RunAsync();
        await allDone.Task.WaitAsync(Patience);
        await conductor.StopAsync();
        await run;

        Assert.Equal(maxConcurrentJobs, peak);
        Assert.Equal(6, (await _board.GetJobsAsync(JobState.Complete)).Count);
    }

    [Fact]
    public async Task RunAsync_JobPostedWhileIdle_IsPickedUpWithoutWaitingForTheTimeout()
    {
        var conductor = new Conductor(_board, _flows, _persistence, new ConductorOptions { Name = "idle", WaitTimeout = TimeSpan.FromMinutes(5) });
        _conductors.Add(conductor);
        var consumed = Next<JobConsumed>(conductor);
        var run = conductor.RunAsync();
        await Task.Delay(200);

        await PostAsync("add-then-double", new { x = 1, y = 1 });

        await consumed.WaitAsync(TimeSpan.FromSeconds(10));
        await conductor.StopAsync();
        await run;
    }

    [Fact]
    public async Task RunAsync_SecondCall_IsRefused()
    {
        var conductor = NewConductor();
        var run = conductor.RunAsync();

        await Assert.ThrowsAsync<InvalidStateException>(() => conductor.RunAsync());
        await conductor.StopAsync();
        await run;
    }

    [Fact]
    public void Constructor_InvalidOptions_AreRefusedNamingTheOption()
    {
        Assert.Contains("MaxConcurrentJobs", Assert.Throws<ArgumentOutOfRangeException>(() =>
            new Conductor(_board, _flows, _persistence, new ConductorOptions { Name = "c", MaxConcurrentJobs = 0 })).Message);
        Assert.Throws<ArgumentException>(() => new Conductor(_board, _flows, _persistence, new ConductorOptions { Name = " " }));
        Assert.Contains("WaitTimeout", Assert.Throws<ArgumentOutOfRangeException>(() =>
            new Conductor(_board, _flows, _persistence, new ConductorOptions { Name = "c", WaitTimeout = TimeSpan.Zero })).Message);
    }

    [Fact]
    public void Registry_DuplicateName_IsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => _flows.Register("fails", () => new LinearFlow("x")));
        Assert.Contains("'fails'", ex.Message);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }
}
