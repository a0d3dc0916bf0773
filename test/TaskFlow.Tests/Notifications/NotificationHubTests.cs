using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Tests.Notifications;

public sealed class NotificationHubTests
{
    [Fact]
    public async Task SubscribeAll_ReceivesEveryEventTypeInOrder()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", (TaskContext c) => { c.ReportProgress(0.5); return 1; }) };
        var engine = FlowEngine.CreateSerial(flow);
        var all = new List<object>();
        using (engine.Notifications.SubscribeAll(all.Add)) await engine.RunAsync();

        Assert.Equal(
        [
            new FlowStateChanged("f", FlowState.Running, FlowState.Pending),
            new AtomStateChanged("a", AtomKind.Task, AtomState.Running, AtomState.Pending, null),
            new TaskProgressChanged("a", 0.5, null),
            new AtomStateChanged("a", AtomKind.Task, AtomState.Success, AtomState.Running, 1),
            new FlowStateChanged("f", FlowState.Success, FlowState.Running),
        ], all);
        Assert.False(engine.Notifications.HasSubscribers<TaskProgressChanged>());
    }

    [Fact]
    public async Task SubscribeAtomState_PerStateAndPerKind_SeeOnlyTheirEvents()
    {
        int calls = 0;
        var flow = new LinearFlow("f", new TimesRetry(2) { Name = "r" })
        {
            FlowTask.Create("t", () => ++calls < 2 ? throw new TimeoutException() : calls),
        };
        var engine = FlowEngine.CreateSerial(flow);
        var successes = new List<string>();
        var retrySuccesses = new List<string>();
        var flowEnds = new List<FlowState>();
        using var a = engine.Notifications.SubscribeAtomState(AtomState.Success, e => successes.Add(e.AtomName));
        using var b = engine.Notifications.SubscribeAtomState(AtomKind.Retry, AtomState.Success, e => retrySuccesses.Add(e.AtomName));
        using var c = engine.Notifications.SubscribeFlowState(FlowState.Success, e => flowEnds.Add(e.State));
        await engine.RunAsync();

        Assert.Equal(["r", "r", "t"], successes);
        Assert.Equal(["r", "r"], retrySuccesses);
        Assert.Equal([FlowState.Success], flowEnds);
    }

    [Fact]
    public async Task Publish_SubscriberThrows_OtherSubscribersStillRunAndFailureIsReported()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", () => 1) };
        var engine = FlowEngine.CreateSerial(flow);
        var seen = new List<string>();
        var failures = new List<Exception>();
        engine.Notifications.SubscriberFailed += (ex, _) => failures.Add(ex);
        using var first = engine.Notifications.Subscribe<AtomStateChanged>(_ => throw new InvalidOperationException("first"));
        using var second = engine.Notifications.Subscribe<AtomStateChanged>(e => seen.Add(e.State.ToTaskFlowName()));
        await engine.RunAsync();

        Assert.Equal(["RUNNING", "SUCCESS"], seen);
        Assert.Equal(2, failures.Count);
        Assert.All(failures, f => Assert.Equal("first", f.Message));
    }

    [Fact]
    public void ReportProgress_ManySmallSteps_DeliversZeroOneAndChangesOfAtLeastTheDelta()
    {
        var delivered = new List<(double Progress, object? Details)>();
        var context = TaskContext.Create("t", progress: (p, d) => delivered.Add((p, d)));
        for (int i = 0; i <= 1000; i++) context.ReportProgress(i / 1000.0);
        context.ReportProgress(1.0);          // a repeated 1 is still delivered: "done" is never swallowed
        context.ReportProgress(0.9995, "x");  // new details go through even without a big enough change
        context.ReportProgress(0.9996, "x");  // same details, tiny change: dropped

        var values = delivered.Select(d => d.Progress).ToList();
        Assert.Equal(0.0, values[0]);
        Assert.Equal(1.0, values[^3]);
        Assert.Equal(1.0, values[^2]);
        Assert.Equal((0.9995, (object?)"x"), delivered[^1]);
        var steps = values.Take(values.Count - 3).ToList(); // 0 .. first 1
        for (int i = 1; i < steps.Count - 1; i++) Assert.True(steps[i] - steps[i - 1] >= TaskContext.ProgressDelta - 1e-12, $"step {i}: {steps[i - 1]} -> {steps[i]}");
        Assert.InRange(values.Count, 100, 105);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReportProgress_SameValueInANewCall_IsDeliveredAgain(bool parallel)
    {
        int calls = 0;
        var flow = new LinearFlow("f", new TimesRetry(3) { Name = "r" })
        {
            FlowTask.Create("t", (TaskContext c) =>
            {
                c.ReportProgress(0.5);
                c.ReportProgress(0.5); // same call, no change: dropped
                if (++calls < 3) throw new InvalidOperationException("again");
            }),
        };
        var engine = parallel ? FlowEngine.CreateParallel(flow) : FlowEngine.CreateSerial(flow);
        var delivered = new List<double>();
        using (engine.Notifications.Subscribe<TaskProgressChanged>(e => { lock (delivered) delivered.Add(e.Progress); }))
            await engine.RunAsync();
        Assert.Equal(3, calls);
        Assert.Equal([0.5, 0.5, 0.5], delivered.Where(p => p == 0.5)); // each new call starts from nothing delivered
    }

    [Fact]
    public void ReportProgress_OutOfRange_IsClampedAndNaNIsRefused()
    {
        var delivered = new List<double>();
        var context = TaskContext.Create("t", progress: (p, _) => delivered.Add(p));
        context.ReportProgress(-3);
        context.ReportProgress(7);
        Assert.Equal([0.0, 1.0], delivered);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => context.ReportProgress(double.NaN));
        Assert.Equal("progress", ex.ParamName);
    }
}
