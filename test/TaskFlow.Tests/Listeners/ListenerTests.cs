using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Listeners;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;
using TaskFlow.TestUtilities;

namespace TaskFlow.Tests.Listeners;

public sealed class ListenerTests
{
    public static TheoryData<bool> Engines => new() { false, true };

    private static FlowEngine Create(Flow flow, bool parallel, EngineOptions? options = null) =>
        parallel ? FlowEngine.CreateParallel(flow, options) : FlowEngine.CreateSerial(flow, options);

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task TimingListener_FailingLinearFlow_MeasuresEveryExecuteAndRevertWithTheEngineClock(bool parallel)
    {
        var clock = new ManualClock();
        var start = clock.GetUtcNow();
        var flow = new LinearFlow("timed")
        {
            FlowTask.Create("a", () => { clock.Advance(TimeSpan.FromSeconds(2)); return 1; }, () => clock.Advance(TimeSpan.FromSeconds(1))),
            FlowTask.Create("b", new Func<int>(() => { clock.Advance(TimeSpan.FromSeconds(3)); throw new InvalidOperationException("b failed"); })),
        };
        var engine = Create(flow, parallel, new EngineOptions { TimeProvider = clock });
        var listener = new TimingListener();
        var measured = new List<AtomTiming>();
        listener.Measured += measured.Add;
        using (listener.Attach(engine))
            await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());

        Assert.Equal(
        [
            new AtomTiming("timed", "a", AtomKind.Task, AtomAction.Execute, AtomState.Success, start, TimeSpan.FromSeconds(2)),
            new AtomTiming("timed", "b", AtomKind.Task, AtomAction.Execute, AtomState.Failure, start.AddSeconds(2), TimeSpan.FromSeconds(3)),
            new AtomTiming("timed", "b", AtomKind.Task, AtomAction.Revert, AtomState.Reverted, start.AddSeconds(5), TimeSpan.Zero),
            new AtomTiming("timed", "a", AtomKind.Task, AtomAction.Revert, AtomState.Reverted, start.AddSeconds(5), TimeSpan.FromSeconds(1)),
        ], listener.Timings);
        Assert.Equal(listener.Timings, measured);
        Assert.Equal(TimeSpan.FromSeconds(2), listener.GetDuration("a"));
        Assert.Null(listener.GetDuration("b")); // b never executed successfully
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task CapturingListener_RetriedSubflow_RecordsFlowTaskRetryAndProgressInOrder(bool parallel)
    {
        int calls = 0;
        var flow = new LinearFlow("outer", new TimesRetry(3) { Name = "r" })
        {
            FlowTask.Create("flaky", (TaskContext context) =>
            {
                context.ReportProgress(0.25 * (calls + 1));
                if (++calls < 2) throw new TimeoutException("try again");
                return calls;
            }),
        };
        var engine = Create(flow, parallel);
        var capture = new CapturingListener();
        using (capture.Attach(engine)) await engine.RunAsync();

        Assert.Equal(
        [
            "outer.f RUNNING",
            "r.r RUNNING", "r.r SUCCESS(1)",
            "flaky.t RUNNING", "flaky.t PROGRESS(0.25)", "flaky.t FAILURE(System.TimeoutException: try again)",
            "flaky.t REVERTING", "flaky.t REVERTED(None)",
            "r.r RETRYING", "flaky.t PENDING", "r.r RUNNING", "r.r SUCCESS(2)",
            "flaky.t RUNNING", "flaky.t PROGRESS(0.5)", "flaky.t SUCCESS(2)",
            "outer.f SUCCESS",
        ], capture.Values);
        Assert.Equal([FlowState.Running, FlowState.Success], capture.FlowStates.Select(e => e.State));
        Assert.Equal(2, capture.Progress.Count);
        Assert.Equal(capture.Values.Count, capture.Events.Count);
        Assert.Equal(["r.r RUNNING", "r.r SUCCESS(1)", "r.r RETRYING", "r.r RUNNING", "r.r SUCCESS(2)"], capture.Values.Where(v => v.StartsWith("r.r ", StringComparison.Ordinal)));
        Assert.All(capture.AtomStates.Where(e => e.AtomName == "r"), e => Assert.Equal(AtomKind.Retry, e.Kind));
    }

    [Fact]
    public async Task ConsoleListener_FailingFlow_WritesOneReadableLinePerEvent()
    {
        var flow = new LinearFlow("create")
        {
            FlowTask.Create("db", (TaskContext c) => { c.ReportProgress(0.25, "row"); return "vol-1"; }, () => { }),
            FlowTask.Create("backend", new Func<int>(() => throw new IOException("disk full"))),
        };
        var engine = FlowEngine.CreateSerial(flow);
        var output = new StringWriter();
        using (new ConsoleListener(output) { ShowProgress = true, ShowFlowName = true }.Attach(engine))
            await Assert.ThrowsAsync<IOException>(() => engine.RunAsync());

        Assert.Equal(
        [
            "[create] flow 'create' RUNNING (was PENDING)",
            "[create] task 'db' RUNNING (was PENDING)",
            "[create] task 'db' progress 25% row",
            "[create] task 'db' SUCCESS (was RUNNING) result: vol-1",
            "[create] task 'backend' RUNNING (was PENDING)",
            "[create] task 'backend' FAILURE (was RUNNING) failure: System.IO.IOException: disk full",
            "[create] task 'backend' REVERTING (was FAILURE)",
            "[create] task 'backend' REVERTED (was REVERTING)",
            "[create] task 'db' REVERTING (was SUCCESS)",
            "[create] task 'db' REVERTED (was REVERTING)",
            "[create] flow 'create' REVERTED (was RUNNING)",
        ], output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task Attach_DisposedHandle_DetachesFromLaterRuns()
    {
        var flow = new LinearFlow("twice") { FlowTask.Create("a", () => 1) };
        var engine = FlowEngine.CreateSerial(flow);
        var capture = new CapturingListener();
        using (capture.Attach(engine)) await engine.RunAsync();
        int afterFirstRun = capture.Values.Count;
        Assert.True(afterFirstRun > 0);

        engine.Reset();
        await engine.RunAsync();
        Assert.Equal(afterFirstRun, capture.Values.Count);
        Assert.False(engine.Notifications.HasSubscribers<AtomStateChanged>());
    }

    [Fact]
    public async Task Listener_AnotherSubscriberThrows_RunSucceedsAndListenerSeesTheFailure()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", () => 1, provides: "x") };
        var engine = FlowEngine.CreateSerial(flow);
        var capture = new CapturingListener();
        using var attached = capture.Attach(engine);
        using var bad = engine.Notifications.SubscribeAtomState(AtomState.Success, _ => throw new FormatException("bad subscriber"));
        await engine.RunAsync();

        Assert.Equal(1, engine.Storage.Fetch<int>("x"));
        var (exception, notification) = Assert.Single(capture.SubscriberFailures);
        Assert.IsType<FormatException>(exception);
        Assert.Equal("a", Assert.IsType<AtomStateChanged>(notification).AtomName);
        Assert.Contains("a.t SUCCESS(1)", capture.Values); // the listener itself still got the event
    }
}
