using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Tests.Engines;

public sealed class FlowEngineTests
{
    public static TheoryData<bool> Engines => new() { false, true };

    private static FlowEngine Create(Flow flow, bool parallel, EngineOptions? options = null) =>
        parallel ? FlowEngine.CreateParallel(flow, options) : FlowEngine.CreateSerial(flow, options);

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_FailureInLinearFlow_RevertsInReverseOrderAndRethrowsOriginal(bool parallel)
    {
        var log = new List<string>();
        FlowTask Step(string name, bool fail = false) => FlowTask.Create(name,
            () => { lock (log) log.Add($"{name}.execute"); if (fail) throw new InvalidOperationException($"{name} failed"); return 1; },
            () => { lock (log) log.Add($"{name}.revert"); });
        var flow = new LinearFlow("f") { Step("a"), Step("b"), Step("c", fail: true) };
        var engine = Create(flow, parallel);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());
        Assert.Equal("c failed", ex.Message);
        Assert.Contains(nameof(FlowEngineTests), ex.StackTrace); // the original stack is kept
        Assert.Equal(["a.execute", "b.execute", "c.execute", "c.revert", "b.revert", "a.revert"], log);
        Assert.Equal(FlowState.Reverted, engine.State);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_TaskFailsTwiceUnderTimesRetry_Succeeds(bool parallel)
    {
        int calls = 0;
        var flow = new LinearFlow("f", new TimesRetry(3) { Name = "r" })
        {
            FlowTask.Create("flaky", () => ++calls < 3 ? throw new TimeoutException("flaky") : calls, provides: "value"),
        };
        var engine = Create(flow, parallel);
        await engine.RunAsync();
        Assert.Equal(3, engine.Storage.Fetch<int>("value"));
        Assert.Equal(3, engine.Storage.GetRetryHistory("r").Count);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_RevertFails_EndsFailureAndThrowsRevertFailure(bool parallel)
    {
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("a", () => 1, new Action(() => throw new IOException("cannot undo"))),
            FlowTask.Create("b", new Func<int>(() => throw new InvalidOperationException("b failed"))),
        };
        var engine = Create(flow, parallel);
        var ex = await Assert.ThrowsAsync<IOException>(() => engine.RunAsync());
        Assert.Equal("cannot undo", ex.Message);
        Assert.Equal(FlowState.Failure, engine.State);
        Assert.Equal(AtomState.RevertFailure, engine.Storage.GetAtomState("a"));
    }

    [Fact]
    public async Task RunAsync_TwoParallelFailures_ThrowsWrappedFailureWithBoth()
    {
        var gate = new Barrier(2);
        var flow = new UnorderedFlow("u")
        {
            FlowTask.Create("a", new Func<int>(() => { gate.SignalAndWait(TimeSpan.FromSeconds(5)); throw new InvalidOperationException("a"); })),
            FlowTask.Create("b", new Func<int>(() => { gate.SignalAndWait(TimeSpan.FromSeconds(5)); throw new ArgumentException("b"); })),
        };
        var engine = FlowEngine.CreateParallel(flow, new EngineOptions { MaxDegreeOfParallelism = 2 });
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => engine.RunAsync());
        Assert.Equal(2, ex.Failures.Count);
        Assert.True(ex.Check<InvalidOperationException>());
        Assert.True(ex.Check<ArgumentException>());
    }

    [Fact]
    public void Validate_MissingRequirements_ListsEveryOneInOneMessage()
    {
        var flow = new LinearFlow("create")
        {
            FlowTask.Create("a", (string volume_id) => volume_id),
            FlowTask.Create("b", (int size, string zone) => size),
        };
        var engine = FlowEngine.CreateSerial(flow);
        var ex = Assert.Throws<MissingDependenciesException>(() => engine.Validate());
        Assert.Equal(["size", "volume_id", "zone"], ex.MissingParameterNames);
        Assert.Contains("'volume_id' (needed by 'a'.execute)", ex.Message);
        Assert.Contains("'zone' (needed by 'b'.execute)", ex.Message);
        Assert.Equal(FlowState.Pending, engine.State);
    }

    [Fact]
    public async Task Validate_IsCheckedAgainWhenTheStoreChanges_AndARunAfterAValidateUsesItsAnswer()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", (int size) => size * 2, provides: "doubled") };
        var engine = FlowEngine.CreateSerial(flow);
        Assert.Throws<MissingDependenciesException>(() => engine.Validate());
        Assert.Throws<MissingDependenciesException>(() => engine.Validate()); // a failed check is never remembered
        engine.Storage.Inject([new("size", 21)]);
        engine.Validate();
        engine.Validate();
        await engine.RunAsync();
        Assert.Equal(42, engine.Storage.Fetch<int>("doubled"));
    }

    [Fact]
    public async Task RunAsync_ProviderAfterConsumer_IsNotVisible()
    {
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("consumer", (int x) => x),
            FlowTask.Create("provider", () => 1, provides: "x"),
        };
        await Assert.ThrowsAsync<MissingDependenciesException>(() => FlowEngine.CreateSerial(flow).RunAsync());
    }

    [Fact]
    public async Task Suspend_DuringRun_RunningAtomFinishesThenResumeCompletes()
    {
        FlowEngine? engine = null;
        var ran = new List<string>();
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("a", () => { ran.Add("a"); engine!.Suspend(); return 1; }),
            FlowTask.Create("b", () => { ran.Add("b"); return 2; }),
        };
        engine = FlowEngine.CreateSerial(flow);
        await engine.RunAsync();
        Assert.Equal(FlowState.Suspended, engine.State);
        Assert.Equal(["a"], ran);
        Assert.Equal(AtomState.Pending, engine.Storage.GetAtomState("b"));

        await engine.RunAsync();
        Assert.Equal(FlowState.Success, engine.State);
        Assert.Equal(["a", "b"], ran);
    }

    [Fact]
    public async Task RunAsync_Cancelled_SuspendsThenThrowsAndCanContinue()
    {
        using var cts = new CancellationTokenSource();
        int bRuns = 0;
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("a", () => { cts.Cancel(); return 1; }),
            FlowTask.Create("b", () => ++bRuns),
        };
        var engine = FlowEngine.CreateSerial(flow);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.RunAsync(cts.Token));
        Assert.Equal(FlowState.Suspended, engine.State);
        Assert.Equal(0, bRuns);
        await engine.RunAsync();
        Assert.Equal(1, bRuns);
        Assert.Equal(FlowState.Success, engine.State);
    }

    [Fact]
    public async Task RunAsync_TaskObservesCancellation_IsLeftToRunAgainNotReverted()
    {
        using var cts = new CancellationTokenSource();
        int reverts = 0;
        int attempts = 0;
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("slow", async (CancellationToken ct) =>
            {
                if (++attempts == 1) { cts.Cancel(); await Task.Delay(Timeout.Infinite, ct); }
                return attempts;
            }, () => reverts++),
        };
        var engine = FlowEngine.CreateParallel(flow);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.RunAsync(cts.Token));
        Assert.Equal(0, reverts);
        Assert.Equal(AtomState.Running, engine.Storage.GetAtomState("slow"));
        await engine.RunAsync();
        Assert.Equal(2, engine.Storage.GetResult("slow"));
    }

    [Fact]
    public async Task RunAsync_ParallelEngine_RunsIndependentTasksConcurrently()
    {
        int running = 0, peak = 0;
        var flow = new UnorderedFlow("u");
        for (int i = 0; i < 8; i++)
            flow.Add(FlowTask.Create($"t{i}", async () =>
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref peak, now);
                await Task.Delay(50);
                Interlocked.Decrement(ref running);
            }));
        await FlowEngine.CreateParallel(flow, new EngineOptions { MaxDegreeOfParallelism = 4 }).RunAsync();
        Assert.Equal(4, peak);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current) { }
    }

    [Fact]
    public async Task RunIterAsync_EmptyFlow_YieldsTaskFlowsStates()
    {
        var engine = FlowEngine.CreateSerial(new LinearFlow("empty"));
        var states = new List<EngineState>();
        await foreach (var s in engine.RunIterAsync()) states.Add(s);
        Assert.Equal([EngineState.Resuming, EngineState.Scheduling, EngineState.Waiting, EngineState.Analyzing, EngineState.Success], states);
    }

    [Fact]
    public async Task RunAsync_ConcurrentRunOfOneEngine_Throws()
    {
        var release = new TaskCompletionSource();
        var flow = new LinearFlow("f") { FlowTask.Create("wait", async () => await release.Task) };
        var engine = FlowEngine.CreateParallel(flow);
        var first = engine.RunAsync();
        await Assert.ThrowsAsync<InvalidStateException>(() => engine.RunAsync());
        release.SetResult();
        await first;
    }

    [Fact]
    public async Task Notifications_ReportEveryAtomTransition_AndAThrowingSubscriberIsIsolated()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", () => 1) };
        var engine = FlowEngine.CreateSerial(flow);
        var seen = new List<string>();
        Exception? reported = null;
        engine.Notifications.SubscriberFailed += (e, _) => reported = e;
        using var bad = engine.Notifications.Subscribe<AtomStateChanged>(_ => throw new InvalidOperationException("subscriber bug"));
        using var good = engine.Notifications.Subscribe<AtomStateChanged>(e => seen.Add($"{e.AtomName} {e.State}"));
        using var flowSub = engine.Notifications.SubscribeFlowState(FlowState.Success, e => seen.Add($"flow {e.State}"));
        await engine.RunAsync();
        Assert.Equal(["a Running", "a Success", "flow Success"], seen);
        Assert.IsType<InvalidOperationException>(reported);
    }

    [Fact]
    public async Task Notifications_Unsubscribe_StopsDelivery()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", () => 1), FlowTask.Create("b", () => 2) };
        var engine = FlowEngine.CreateSerial(flow);
        var seen = new List<string>();
        IDisposable? sub = null;
        sub = engine.Notifications.Subscribe<AtomStateChanged>(e => { seen.Add(e.AtomName); sub!.Dispose(); });
        await engine.RunAsync();
        Assert.Equal(["a"], seen);
    }

    [Fact]
    public async Task ReportProgress_ReachesNotifications()
    {
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("p", (TaskContext context) => { context.ReportProgress(0.5, "half"); context.ReportProgress(2.0); }),
        };
        var engine = FlowEngine.CreateSerial(flow);
        var progress = new List<double>();
        using var _ = engine.Notifications.Subscribe<TaskProgressChanged>(e => progress.Add(e.Progress));
        await engine.RunAsync();
        Assert.Equal([0.5, 1.0], progress);
    }

    [Fact]
    public void Transitions_IllegalTaskMove_ThrowsInvalidState()
    {
        Assert.True(Transitions.IsValidTaskTransition(AtomState.Pending, AtomState.Running));
        Assert.False(Transitions.IsValidTaskTransition(AtomState.Pending, AtomState.Reverting));
        Assert.False(Transitions.IsValidTaskTransition(AtomState.Success, AtomState.Retrying));
        Assert.True(Transitions.IsValidRetryTransition(AtomState.Success, AtomState.Retrying));
        var ex = Assert.Throws<InvalidStateException>(() => Transitions.EnsureTaskTransition("t", AtomState.RevertFailure, AtomState.Pending));
        Assert.Contains("'t'", ex.Message);
        Assert.Null(Transitions.CheckFlowTransition(FlowState.Success, FlowState.Suspending));
        Assert.False(Transitions.CheckFlowTransition(FlowState.Pending, FlowState.Success));
    }

    [Fact]
    public async Task Storage_StoreShadowsAtomResults_AndInjectBeatsStore()
    {
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("p", () => 100, provides: "x"),
            FlowTask.Create("c1", (int x) => x, provides: "seen1"),
            new InjectingTask { Name = "c2", Provides = "seen2", Inject = new Dictionary<string, object?> { ["x"] = 7 } },
        };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["x"] = 1 } });
        await engine.RunAsync();
        Assert.Equal(1, engine.Storage.Fetch<int>("seen1"));
        Assert.Equal(7, engine.Storage.Fetch<int>("seen2"));
        var all = engine.Storage.FetchAll();
        Assert.Equal(2, Assert.IsAssignableFrom<IReadOnlyList<object?>>(all["x"]).Count);
        Assert.False(engine.Storage.TryFetch<int>("nothing", out _));
    }

    private sealed class InjectingTask : FlowTask
    {
        public int Execute(int x) => x;
    }
}
