using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Workers.Tests;

/// <summary>
/// The engine tests of test/TaskFlow.Tests/Engines/FlowEngineTests.cs that apply to remote execution, run with the
/// distributed executor (the parallel distributed engine, and the serial engine with the executor). Failures come back
/// over the wire without a live exception, so they surface as <see cref="WrappedFailureException"/> whose failure
/// names the original type, as in TaskFlow's worker-based engine.
/// </summary>
public sealed class DistributedEngineContractTests
{
    public static TheoryData<bool> Engines => new() { false, true };

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_FailureInLinearFlow_RevertsInReverseOrderAndRethrowsOriginalType(bool parallel)
    {
        await using var h = new DistributedHarness();
        var log = new List<string>();
        FlowTask Step(string name, bool fail = false) => FlowTask.Create(name,
            () => { lock (log) log.Add($"{name}.execute"); if (fail) throw new InvalidOperationException($"{name} failed"); return 1; },
            () => { lock (log) log.Add($"{name}.revert"); });
        var flow = new LinearFlow("f") { Step("a"), Step("b"), Step("c", fail: true) };
        var engine = await h.CreateAsync(flow, serial: !parallel);
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => engine.RunAsync());
        Assert.True(ex.Check<InvalidOperationException>());
        Assert.Equal("c failed", Assert.Single(ex.Failures).Message);
        Assert.Equal(["a.execute", "b.execute", "c.execute", "c.revert", "b.revert", "a.revert"], log);
        Assert.Equal(FlowState.Reverted, engine.State);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_TaskFailsTwiceUnderTimesRetry_Succeeds(bool parallel)
    {
        await using var h = new DistributedHarness();
        int calls = 0;
        var flow = new LinearFlow("f", new TimesRetry(3) { Name = "r" })
        {
            FlowTask.Create("flaky", () => ++calls < 3 ? throw new TimeoutException("flaky") : calls, provides: "value"),
        };
        var engine = await h.CreateAsync(flow, serial: !parallel);
        await engine.RunAsync();
        Assert.Equal(3, engine.Storage.Fetch<int>("value"));
        Assert.Equal(3, engine.Storage.GetRetryHistory("r").Count);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_RevertFails_EndsFailureAndThrowsRevertFailure(bool parallel)
    {
        await using var h = new DistributedHarness();
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("a", () => 1, new Action(() => throw new IOException("cannot undo"))),
            FlowTask.Create("b", new Func<int>(() => throw new InvalidOperationException("b failed"))),
        };
        var engine = await h.CreateAsync(flow, serial: !parallel);
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => engine.RunAsync());
        Assert.True(ex.Check<IOException>());
        Assert.Equal("cannot undo", Assert.Single(ex.Failures).Message);
        Assert.Equal(FlowState.Failure, engine.State);
        Assert.Equal(AtomState.RevertFailure, engine.Storage.GetAtomState("a"));
    }

    [Fact]
    public async Task RunAsync_TwoParallelFailures_ThrowsWrappedFailureWithBoth()
    {
        await using var h = new DistributedHarness();
        var gate = new Barrier(2);
        var flow = new UnorderedFlow("u")
        {
            FlowTask.Create("x", new Func<int>(() => { gate.SignalAndWait(TimeSpan.FromSeconds(5)); throw new InvalidOperationException("x failed"); })),
            FlowTask.Create("y", new Func<int>(() => { gate.SignalAndWait(TimeSpan.FromSeconds(5)); throw new ArgumentException("y failed"); })),
        };
        var engine = await h.CreateAsync(flow);
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => engine.RunAsync());
        Assert.Equal(["x failed", "y failed"], ex.Failures.Select(f => f.Message).Order());
        Assert.True(ex.Check<ArgumentException>() && ex.Check<InvalidOperationException>());
    }

    [Fact]
    public async Task RunAsync_Suspended_RunningAtomFinishesThenResumeCompletes()
    {
        await using var h = new DistributedHarness();
        FlowEngine? engine = null;
        var ran = new List<string>();
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("a", () => { ran.Add("a"); engine!.Suspend(); return 1; }),
            FlowTask.Create("b", () => { ran.Add("b"); return 2; }),
        };
        engine = await h.CreateAsync(flow, serial: true);
        await engine.RunAsync();
        Assert.Equal(FlowState.Suspended, engine.State);
        Assert.Equal(["a"], ran);
        await engine.RunAsync();
        Assert.Equal(FlowState.Success, engine.State);
        Assert.Equal(["a", "b"], ran);
    }

    [Fact]
    public async Task RunAsync_TaskObservesCancellation_IsLeftToRunAgainNotReverted()
    {
        await using var h = new DistributedHarness();
        using var cts = new CancellationTokenSource();
        int reverts = 0, attempts = 0;
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("slow", async (CancellationToken ct) =>
            {
                if (Interlocked.Increment(ref attempts) == 1) { cts.Cancel(); await Task.Delay(Timeout.Infinite, ct); }
                return attempts;
            }, () => reverts++),
        };
        var engine = await h.CreateAsync(flow);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.RunAsync(cts.Token));
        Assert.Equal(0, reverts);
        Assert.Equal(AtomState.Running, engine.Storage.GetAtomState("slow"));
        await engine.RunAsync();
        Assert.Equal(2, ArgumentConverter.Convert<int>(engine.Storage.GetResult("slow"), "slow", "result"));
    }

    [Fact]
    public async Task RunAsync_DistributedEngine_RunsIndependentTasksConcurrentlyUpToTheLimit()
    {
        await using var h = new DistributedHarness();
        int running = 0, peak = 0;
        var flow = new UnorderedFlow("u");
        for (int i = 0; i < 8; i++)
            flow.Add(FlowTask.Create($"t{i}", async () =>
            {
                var now = Interlocked.Increment(ref running);
                int seen;
                while ((seen = Volatile.Read(ref peak)) < now && Interlocked.CompareExchange(ref peak, now, seen) != seen) { }
                await Task.Delay(100);
                Interlocked.Decrement(ref running);
            }));
        var engine = await h.CreateAsync(flow, engine: new EngineOptions { MaxDegreeOfParallelism = 4 });
        await engine.RunAsync();
        Assert.Equal(4, peak);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task ReportProgress_OnTheWorker_ReachesTheEnginesNotificationsInOrder(bool parallel)
    {
        await using var h = new DistributedHarness();
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("p", (TaskContext context) => { context.ReportProgress(0.3, "third"); context.ReportProgress(0.6); context.ReportProgress(2.0); return 1; }),
        };
        var engine = await h.CreateAsync(flow, serial: !parallel);
        var progress = new List<(double, object?)>();
        using var _ = engine.Notifications.Subscribe<TaskProgressChanged>(e => { lock (progress) progress.Add((e.Progress, e.Details)); });
        await engine.RunAsync();
        Assert.Equal([(0.3, "third"), (0.6, null), (1.0, null)], progress);
    }

    [Fact]
    public async Task Storage_StoreShadowsAtomResults_AndInjectBeatsStore_AcrossTheWire()
    {
        await using var h = new DistributedHarness();
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("p", () => 100, provides: "x"),
            FlowTask.Create("c1", (int x) => x, provides: "seen1"),
            new InjectingTask { Name = "c2", Provides = "seen2", Inject = new Dictionary<string, object?> { ["x"] = 7 } },
            FlowTask.Create("pair", (int x) => new[] { x, x + 1 }, provides: ProvidesSpec.Positional("first", "second")),
            FlowTask.Create("record", (int second) => new Point(second, "n"), provides: "point"),
            FlowTask.Create("use", (Point point) => $"{point.X}:{point.Name}", provides: "text"),
        };
        var engine = await h.CreateAsync(flow, engine: new EngineOptions { Store = { ["x"] = 1 } });
        await engine.RunAsync();
        Assert.Equal(1, engine.Storage.Fetch<int>("seen1"));
        Assert.Equal(7, engine.Storage.Fetch<int>("seen2"));
        Assert.Equal(2, engine.Storage.Fetch<int>("second"));
        Assert.Equal(new Point(2, "n"), engine.Storage.Fetch<Point>("point"));
        Assert.Equal("2:n", engine.Storage.Fetch<string>("text"));
    }

    public sealed record Point(int X, string Name);

    private sealed class InjectingTask : FlowTask
    {
        public int Execute(int x) => x;
    }
}
