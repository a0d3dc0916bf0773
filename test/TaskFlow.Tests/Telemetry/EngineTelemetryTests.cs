using System.Diagnostics;
using System.Diagnostics.Metrics;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Listeners;
using TaskFlow.Retries;
using TaskFlow.States;
using TaskFlow.Telemetry;

namespace TaskFlow.Tests.Telemetry;

/// <summary>The source and meter are process-wide: these tests run one at a time and only look at their own flow's signals.</summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

[Collection(nameof(TelemetryCollection))]
public sealed class EngineTelemetryTests
{
    public static TheoryData<bool> Engines => new() { false, true };

    private static FlowEngine Create(Flow flow, bool parallel) =>
        parallel ? FlowEngine.CreateParallel(flow) : FlowEngine.CreateSerial(flow);

    /// <summary>Collects the spans of one flow (by its unique root name) while alive.</summary>
    private sealed class SpanCollector : IDisposable
    {
        private readonly ActivityListener _listener;
        private readonly List<Activity> _spans = [];

        public SpanCollector(string flowName)
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = s => s.Name == TaskFlowTelemetry.ActivitySourceName,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a =>
                {
                    if (a.GetTagItem(TaskFlowTelemetry.FlowNameTag) as string == flowName)
                        lock (_spans) _spans.Add(a);
                },
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public IReadOnlyList<Activity> Spans
        {
            get { lock (_spans) return _spans.ToArray(); }
        }

        public void Dispose() => _listener.Dispose();
    }

    /// <summary>A span tree rendered as indented lines: "name [status error.type]" with children in start order.</summary>
    private static List<string> Tree(IReadOnlyList<Activity> spans)
    {
        var lines = new List<string>();
        void Walk(Activity span, int depth)
        {
            var status = span.Status == ActivityStatusCode.Error ? $" [Error {span.GetTagItem(TaskFlowTelemetry.ErrorTypeTag)}]" : "";
            lines.Add(new string(' ', depth * 2) + span.DisplayName + status);
            foreach (var child in spans.Where(s => s.ParentSpanId == span.SpanId).OrderBy(s => s.StartTimeUtc).ThenBy(s => spans.ToList().IndexOf(s)))
                Walk(child, depth + 1);
        }
        foreach (var root in spans.Where(s => spans.All(p => p.SpanId != s.ParentSpanId))) Walk(root, 0);
        return lines;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RunAsync_NestedFlowWithFailureAndRevert_EmitsSpanTreeOfTheFlow(bool persisted)
    {
        var name = "outer-" + Guid.NewGuid().ToString("N");
        var flow = new LinearFlow(name)
        {
            FlowTask.Create("a", () => 1, () => { }),
            new LinearFlow("inner")
            {
                FlowTask.Create("b", () => 2, () => { }),
                FlowTask.Create("c", new Func<int>(() => throw new InvalidOperationException("c failed"))),
            },
        };
        using var collector = new SpanCollector(name);
        using var caller = new ActivitySource("TaskFlow.Tests.Caller");
        using var callerListener = new ActivityListener { ShouldListenTo = s => s == caller, Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded };
        ActivitySource.AddActivityListener(callerListener);
        using (var request = caller.StartActivity("request"))
        {
            // With persistence, notifications wait until the change they report is saved: the tree must not change.
            var options = new EngineOptions { Persistence = persisted ? new global::TaskFlow.Persistence.InMemoryPersistenceBackend() : null };
            await Assert.ThrowsAsync<InvalidOperationException>(() => FlowEngine.CreateSerial(flow, options).RunAsync());
            Assert.Same(request, Activity.Current); // tracing never changes the caller's current activity
            var root = collector.Spans.Single(s => s.DisplayName == $"flow {name}");
            Assert.Equal(request!.SpanId, root.ParentSpanId); // the run is part of the caller's trace
        }

        var spans = collector.Spans;
        Assert.Equal(
        [
            $"flow {name} [Error System.InvalidOperationException]",
            "  execute a",
            "  flow inner [Error System.InvalidOperationException]",
            "    execute b",
            "    execute c [Error System.InvalidOperationException]",
            "    revert c",
            "    revert b",
            "  revert a",
        ], Tree(spans));
        Assert.Single(spans.Select(s => s.TraceId).Distinct());
        var c = spans.Single(s => s.DisplayName == "execute c");
        Assert.Equal("FAILURE", c.GetTagItem(TaskFlowTelemetry.AtomStateTag));
        Assert.Equal("c failed", c.StatusDescription);
        Assert.Contains(c.Events, e => e.Name == "exception");
        var revertB = spans.Single(s => s.DisplayName == "revert b");
        Assert.Equal(("b", "task", "revert", "REVERTED"),
            (revertB.GetTagItem(TaskFlowTelemetry.AtomNameTag), revertB.GetTagItem(TaskFlowTelemetry.AtomKindTag),
             revertB.GetTagItem(TaskFlowTelemetry.AtomActionTag), revertB.GetTagItem(TaskFlowTelemetry.AtomStateTag)));
        Assert.Equal("REVERTED", spans.Single(s => s.DisplayName == $"flow {name}").GetTagItem(TaskFlowTelemetry.FlowStateTag));
        // Every child lies within its parent's time.
        Assert.Equal("inner", spans.Single(s => s.DisplayName == "flow inner").GetTagItem(TaskFlowTelemetry.SubflowNameTag));
        foreach (var s in spans)
        {
            var parent = spans.SingleOrDefault(p => p.SpanId == s.ParentSpanId);
            if (parent is null) continue;
            Assert.InRange(s.StartTimeUtc, parent.StartTimeUtc, parent.StartTimeUtc + parent.Duration);
            Assert.InRange(s.StartTimeUtc + s.Duration, parent.StartTimeUtc, parent.StartTimeUtc + parent.Duration);
        }
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_RetriedNestedFlow_EmitsRetrySpansUnderTheRetriedFlowAndSucceeds(bool parallel)
    {
        var name = "retried-" + Guid.NewGuid().ToString("N");
        int calls = 0;
        var flow = new LinearFlow(name)
        {
            new UnorderedFlow("sub", new TimesRetry(3) { Name = "r" })
            {
                FlowTask.Create("flaky", () => ++calls < 3 ? throw new TimeoutException("again") : calls),
            },
        };
        using var collector = new SpanCollector(name);
        await Create(flow, parallel).RunAsync();

        var spans = collector.Spans;
        var sub = spans.Single(s => s.DisplayName == "flow sub");
        var retries = spans.Where(s => s.DisplayName == "retry r").ToList();
        Assert.Equal(2, retries.Count);
        Assert.All(retries, r => Assert.Equal(sub.SpanId, r.ParentSpanId));
        Assert.Equal([1, 2], retries.Select(r => (int)r.GetTagItem(TaskFlowTelemetry.RetryAttemptTag)!).Order());
        Assert.Equal(3, spans.Count(s => s.DisplayName == "execute flaky" && s.ParentSpanId == sub.SpanId));
        Assert.Equal(3, spans.Count(s => s.DisplayName == "execute r"));
        Assert.Equal(2, sub.Events.Count(e => e.Name == "retry"));
        Assert.All(spans.Where(s => s.DisplayName.StartsWith("flow ", StringComparison.Ordinal)), s => Assert.NotEqual(ActivityStatusCode.Error, s.Status));
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_WithMeterListener_RecordsTransitionsDurationsRetriesAndRunningAtoms(bool parallel)
    {
        var name = "metered-" + Guid.NewGuid().ToString("N");
        int calls = 0;
        var flow = new LinearFlow(name, new TimesRetry(3) { Name = "r" })
        {
            FlowTask.Create("first", () => 1, () => { }),
            FlowTask.Create("flaky", () => ++calls < 3 ? throw new TimeoutException("again") : calls),
        };
        var measurements = new List<(string Instrument, double Value, Dictionary<string, object?> Tags)>();
        using var meterListener = new MeterListener
        {
            InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == TaskFlowTelemetry.MeterName) l.EnableMeasurementEvents(instrument); },
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var dict = new Dictionary<string, object?>();
            foreach (var t in tags) dict[t.Key] = t.Value;
            if (dict.GetValueOrDefault(TaskFlowTelemetry.FlowNameTag) as string != name) return;
            lock (measurements) measurements.Add((instrument.Name, value, dict));
        }
        meterListener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        meterListener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        meterListener.Start();

        var engine = Create(flow, parallel);
        var capture = new CapturingListener { CaptureProgress = false };
        using (capture.Attach(engine)) await engine.RunAsync();

        var atomEvents = capture.AtomStates;
        var transitions = measurements.Where(m => m.Instrument == TaskFlowTelemetry.TransitionsInstrument).ToList();
        Assert.Equal(atomEvents.Count, transitions.Sum(m => m.Value));
        Assert.Equal(atomEvents.Count(e => e.State == AtomState.Reverted),
            transitions.Where(m => (string?)m.Tags[TaskFlowTelemetry.AtomStateTag] == "REVERTED").Sum(m => m.Value));

        var durations = measurements.Where(m => m.Instrument == TaskFlowTelemetry.AtomDurationInstrument).ToList();
        int calls_ = atomEvents.Count(e => e.State is AtomState.Running or AtomState.Reverting);
        Assert.Equal(calls_, durations.Count);
        Assert.All(durations, d => Assert.True(d.Value >= 0));
        Assert.Equal(3, durations.Count(d => (string?)d.Tags[TaskFlowTelemetry.AtomNameTag] == "flaky" && (string?)d.Tags[TaskFlowTelemetry.AtomActionTag] == "execute"));

        var retries = measurements.Where(m => m.Instrument == TaskFlowTelemetry.RetriesInstrument).ToList();
        Assert.Equal(2, retries.Sum(m => m.Value));
        Assert.All(retries, m => Assert.Equal("r", m.Tags[TaskFlowTelemetry.AtomNameTag]));

        var running = measurements.Where(m => m.Instrument == TaskFlowTelemetry.RunningAtomsInstrument).Select(m => m.Value).ToList();
        Assert.Equal(0, running.Sum());
        double level = 0, peak = 0;
        foreach (var delta in running) { level += delta; peak = Math.Max(peak, level); Assert.True(level >= 0); }
        Assert.Equal(1, peak); // a linear flow runs one atom at a time
    }

    [Fact]
    public void AttachIfListening_NobodyListens_ReturnsNullAndSubscribesNothing()
    {
        var engine = FlowEngine.CreateSerial(new LinearFlow("quiet") { FlowTask.Create("a", () => 1) });
        engine.Prepare();
        Assert.Null(EngineTelemetry.AttachIfListening(engine));
        Assert.False(engine.Notifications.HasSubscribers<global::TaskFlow.Notifications.AtomStateChanged>());
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++) Assert.Null(EngineTelemetry.AttachIfListening(engine));
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread()); // the unobserved run pays a check, not an allocation

        using var listener = new ActivityListener { ShouldListenTo = s => s.Name == TaskFlowTelemetry.ActivitySourceName, Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData };
        ActivitySource.AddActivityListener(listener);
        using var attached = EngineTelemetry.AttachIfListening(engine);
        Assert.NotNull(attached);
        Assert.True(engine.Notifications.HasSubscribers<global::TaskFlow.Notifications.AtomStateChanged>());
    }
}
