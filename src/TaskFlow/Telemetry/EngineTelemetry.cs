using System.Diagnostics;
using System.Diagnostics.Metrics;
using TaskFlow.Engines;
using TaskFlow.Engines.Compilation;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.States;

namespace TaskFlow.Telemetry;

/// <summary>
/// OpenTelemetry for engine runs, built on the engine's notifications: an engine calls <see cref="AttachIfListening"/>
/// once per run, and only when an <see cref="ActivityListener"/> or a <see cref="MeterListener"/> listens does a
/// subscriber get attached, so a run that nobody observes pays one check and nothing per atom.
/// </summary>
internal static class EngineTelemetry
{
    private static readonly string? Version = typeof(EngineTelemetry).Assembly.GetName().Version?.ToString();

    internal static readonly ActivitySource Source = new(TaskFlowTelemetry.ActivitySourceName, Version);
    internal static readonly Meter Meter = new(TaskFlowTelemetry.MeterName, Version);

    internal static readonly Histogram<double> AtomDuration = Meter.CreateHistogram<double>(
        TaskFlowTelemetry.AtomDurationInstrument, unit: "s", description: "How long atom executes and reverts take.");
    internal static readonly Counter<long> Transitions = Meter.CreateCounter<long>(
        TaskFlowTelemetry.TransitionsInstrument, unit: "{transition}", description: "Atom state changes.");
    internal static readonly Counter<long> Retries = Meter.CreateCounter<long>(
        TaskFlowTelemetry.RetriesInstrument, unit: "{retry}", description: "Subflow retries decided by retry controllers.");
    internal static readonly UpDownCounter<long> RunningAtoms = Meter.CreateUpDownCounter<long>(
        TaskFlowTelemetry.RunningAtomsInstrument, unit: "{atom}", description: "Atoms executing or reverting now.");

    private static bool MetricsEnabled => AtomDuration.Enabled || Transitions.Enabled || Retries.Enabled || RunningAtoms.Enabled;

    /// <summary>
    /// Starts recording <paramref name="engine"/>'s run (spans and metrics) when anything listens to the
    /// <c>TaskFlow</c> source or meter; returns null, having subscribed nothing, when nothing does. Dispose the result
    /// when the run ends: spans still open are ended then.
    /// </summary>
    internal static IDisposable? AttachIfListening(FlowEngine engine)
    {
        bool tracing = Source.HasListeners();
        bool metrics = MetricsEnabled;
        if (!tracing && !metrics) return null;
        return new RunRecorder(engine, tracing, metrics);
    }

    /// <summary>Records one run. Events arrive on the engine's loop, flow events also from <c>Suspend</c> callers: all under one lock.</summary>
    private sealed class RunRecorder : IDisposable
    {
        private readonly FlowEngine _engine;
        private readonly CompiledFlow _compiled;
        private readonly TimeProvider _clock;
        private readonly bool _tracing;
        private readonly bool _metrics;
        private readonly string _flowName;
        private readonly Lock _gate = new();
        private readonly IDisposable _flowSubscription;
        private readonly IDisposable _atomSubscription;

        // Per atom node: the open span of its current call and when that call started (for the histogram).
        private readonly Activity?[] _atomSpans;
        private readonly long[] _callStarted;
        private readonly AtomAction?[] _callAction;
        private readonly Dictionary<ScopeNode, FlowSpan> _flowSpans = new(ReferenceEqualityComparer.Instance);
        private Activity? _root;
        private bool _finished;

        private enum AtomAction : byte { Execute, Revert, Retry }

        private sealed class FlowSpan(Activity activity)
        {
            public Activity Activity { get; } = activity;
            public DateTimeOffset LastActivity { get; set; } = activity.StartTimeUtc;
            public Failure? Failure { get; set; }
        }

        public RunRecorder(FlowEngine engine, bool tracing, bool metrics)
        {
            _engine = engine;
            _compiled = engine.Compiled;
            _clock = engine.Options.TimeProvider;
            _tracing = tracing;
            _metrics = metrics;
            _flowName = engine.Flow.Name;
            _atomSpans = new Activity?[_compiled.NodeCount];
            _callStarted = new long[_compiled.NodeCount];
            _callAction = new AtomAction?[_compiled.NodeCount];
            _flowSubscription = engine.Notifications.Subscribe<FlowStateChanged>(OnFlowStateChanged);
            _atomSubscription = engine.Notifications.Subscribe<AtomStateChanged>(OnAtomStateChanged);
        }

        private void OnFlowStateChanged(FlowStateChanged e)
        {
            lock (_gate)
            {
                if (_finished) return;
                switch (e.State)
                {
                    case FlowState.Running when _tracing && _root is null:
                        // The caller's current activity (if any) becomes the parent: a run inside a request is part of its trace.
                        _root = Start($"flow {_flowName}", default, useCurrentAsParent: true);
                        _root?.SetTag(TaskFlowTelemetry.FlowNameTag, _flowName);
                        break;
                    case FlowState.Success or FlowState.Failure or FlowState.Reverted or FlowState.Suspended:
                        Finish(e.State);
                        break;
                }
            }
        }

        private void OnAtomStateChanged(AtomStateChanged e)
        {
            if (!_compiled.NodeByAtomName.TryGetValue(e.AtomName, out int node)) return;
            lock (_gate)
            {
                if (_finished) return;
                var kind = e.Kind == AtomKind.Retry ? "retry" : "task";
                if (_metrics)
                    Transitions.Add(1, new TagList
                    {
                        { TaskFlowTelemetry.FlowNameTag, _flowName },
                        { TaskFlowTelemetry.AtomKindTag, kind },
                        { TaskFlowTelemetry.AtomStateTag, e.State.ToTaskFlowName() },
                    });
                // A retry span ends when its controller runs again (right after the subflow was reset).
                if (_callAction[node] == AtomAction.Retry) EndCall(node, e, kind, failure: null);
                switch (e.State)
                {
                    case AtomState.Running:
                        BeginCall(node, e.AtomName, kind, AtomAction.Execute);
                        break;
                    case AtomState.Reverting:
                        BeginCall(node, e.AtomName, kind, AtomAction.Revert);
                        break;
                    case AtomState.Retrying:
                        if (_metrics)
                            Retries.Add(1, new TagList { { TaskFlowTelemetry.FlowNameTag, _flowName }, { TaskFlowTelemetry.AtomNameTag, e.AtomName } });
                        BeginCall(node, e.AtomName, kind, AtomAction.Retry);
                        break;
                    case AtomState.Success or AtomState.Failure or AtomState.Reverted or AtomState.RevertFailure:
                        if (_callAction[node] is not null) EndCall(node, e, kind, e.Result as Failure);
                        break;
                }
            }
        }

        private void BeginCall(int node, string atomName, string kind, AtomAction action)
        {
            // A call left open (its end was never published) is closed before a new one starts.
            if (_callAction[node] is not null) EndOpenCall(node);
            _callAction[node] = action;
            _callStarted[node] = _clock.GetTimestamp();
            var actionName = ActionName(action);
            if (_metrics && action != AtomAction.Retry)
                RunningAtoms.Add(1, new TagList { { TaskFlowTelemetry.FlowNameTag, _flowName }, { TaskFlowTelemetry.AtomKindTag, kind }, { TaskFlowTelemetry.AtomActionTag, actionName } });
            if (_root is null) return;
            var parent = FlowSpanOf(_compiled.ScopeOfNode[node].Parent!);
            var span = Start($"{actionName} {atomName}", parent.Activity.Context, useCurrentAsParent: false);
            if (span is null) return;
            span.SetTag(TaskFlowTelemetry.FlowNameTag, _flowName);
            span.SetTag(TaskFlowTelemetry.AtomNameTag, atomName);
            span.SetTag(TaskFlowTelemetry.AtomKindTag, kind);
            span.SetTag(TaskFlowTelemetry.AtomActionTag, actionName);
            if (action == AtomAction.Retry)
            {
                int attempts = _engine.Storage.GetRetryHistory(atomName).Count;
                span.SetTag(TaskFlowTelemetry.RetryAttemptTag, attempts);
                parent.Activity.AddEvent(new ActivityEvent("retry", _clock.GetUtcNow(), new ActivityTagsCollection
                {
                    [TaskFlowTelemetry.AtomNameTag] = atomName,
                    [TaskFlowTelemetry.RetryAttemptTag] = attempts,
                }));
            }
            _atomSpans[node] = span;
        }

        private void EndCall(int node, in AtomStateChanged e, string kind, Failure? failure)
        {
            var action = _callAction[node]!.Value;
            _callAction[node] = null;
            var actionName = ActionName(action);
            if (_metrics && action != AtomAction.Retry)
            {
                RunningAtoms.Add(-1, new TagList { { TaskFlowTelemetry.FlowNameTag, _flowName }, { TaskFlowTelemetry.AtomKindTag, kind }, { TaskFlowTelemetry.AtomActionTag, actionName } });
                AtomDuration.Record(_clock.GetElapsedTime(_callStarted[node]).TotalSeconds, new TagList
                {
                    { TaskFlowTelemetry.FlowNameTag, _flowName },
                    { TaskFlowTelemetry.AtomNameTag, e.AtomName },
                    { TaskFlowTelemetry.AtomKindTag, kind },
                    { TaskFlowTelemetry.AtomActionTag, actionName },
                    { TaskFlowTelemetry.AtomStateTag, e.State.ToTaskFlowName() },
                });
            }
            var span = _atomSpans[node];
            if (span is null) return;
            _atomSpans[node] = null;
            if (action != AtomAction.Retry) span.SetTag(TaskFlowTelemetry.AtomStateTag, e.State.ToTaskFlowName());
            if (failure is not null) MarkFailed(span, failure);
            var now = _clock.GetUtcNow();
            Stop(span, now);
            for (var scope = _compiled.ScopeOfNode[node].Parent; scope is not null; scope = scope.Parent)
            {
                if (!_flowSpans.TryGetValue(scope, out var flowSpan)) continue;
                flowSpan.LastActivity = now;
                if (failure is not null) flowSpan.Failure ??= failure;
            }
        }

        /// <summary>Ends a call whose outcome never arrived (the run stopped under it): the span ends without a state.</summary>
        private void EndOpenCall(int node)
        {
            var action = _callAction[node]!.Value;
            _callAction[node] = null;
            if (_metrics && action != AtomAction.Retry)
            {
                var atom = _compiled.Atoms[node]!;
                var kind = atom is Retries.RetryController ? "retry" : "task";
                RunningAtoms.Add(-1, new TagList { { TaskFlowTelemetry.FlowNameTag, _flowName }, { TaskFlowTelemetry.AtomKindTag, kind }, { TaskFlowTelemetry.AtomActionTag, ActionName(action) } });
            }
            var span = _atomSpans[node];
            _atomSpans[node] = null;
            if (span is not null) Stop(span, _clock.GetUtcNow());
        }

        /// <summary>The span of the flow at <paramref name="scope"/>, started (with its enclosing flows) when first needed.</summary>
        private FlowSpan FlowSpanOf(ScopeNode scope)
        {
            if (_flowSpans.TryGetValue(scope, out var existing)) return existing;
            Activity? activity;
            if (scope.Parent is null)
            {
                activity = _root!;
            }
            else
            {
                var parent = FlowSpanOf(scope.Parent);
                var flow = (Flow)scope.Item;
                activity = Start($"flow {flow.Name}", parent.Activity.Context, useCurrentAsParent: false);
                // Sampled out: its atoms hang under the nearest sampled flow instead.
                if (activity is null) return parent;
                activity.SetTag(TaskFlowTelemetry.FlowNameTag, _flowName);
                activity.SetTag(TaskFlowTelemetry.SubflowNameTag, flow.Name);
            }
            var span = new FlowSpan(activity);
            _flowSpans[scope] = span;
            return span;
        }

        private void Finish(FlowState state)
        {
            if (_finished) return;
            _finished = true;
            for (int node = 0; node < _callAction.Length; node++)
                if (_callAction[node] is not null) EndOpenCall(node);
            if (_root is null) return;
            bool failed = state is FlowState.Failure or FlowState.Reverted;
            // Nested flows end with their last atom call; they are errors when the run failed because of something inside them.
            foreach (var (scope, span) in _flowSpans)
            {
                if (scope.Parent is null) continue;
                span.Activity.SetTag(TaskFlowTelemetry.FlowStateTag, state.ToTaskFlowName());
                if (failed && span.Failure is not null) MarkFailed(span.Activity, span.Failure);
                Stop(span.Activity, span.LastActivity);
            }
            _root.SetTag(TaskFlowTelemetry.FlowStateTag, state.ToTaskFlowName());
            if (failed)
            {
                var failure = FirstFailure();
                if (failure is not null) MarkFailed(_root, failure);
                else _root.SetStatus(ActivityStatusCode.Error, $"Flow ended {state.ToTaskFlowName()}.");
            }
            Stop(_root, _clock.GetUtcNow());
        }

        private Failure? FirstFailure()
        {
            var storage = _engine.Storage;
            foreach (var f in storage.GetRevertFailures().Values) return f;
            foreach (var f in storage.GetFailures().Values) return f;
            foreach (var span in _flowSpans.Values) if (span.Failure is not null) return span.Failure;
            return null;
        }

        private static void MarkFailed(Activity span, Failure failure)
        {
            span.SetTag(TaskFlowTelemetry.ErrorTypeTag, failure.ExceptionTypeName);
            span.SetStatus(ActivityStatusCode.Error, failure.Message);
            if (failure.Exception is { } exception) span.AddException(exception);
        }

        private static string ActionName(AtomAction action) => action switch
        {
            AtomAction.Execute => "execute",
            AtomAction.Revert => "revert",
            _ => "retry",
        };

        // Starting and stopping an activity sets Activity.Current on the calling thread (the engine's loop); the
        // engine's own context must not change because somebody traces, so it is put back.
        private Activity? Start(string name, ActivityContext parent, bool useCurrentAsParent)
        {
            var previous = Activity.Current;
            var activity = useCurrentAsParent
                ? Source.StartActivity(name, ActivityKind.Internal, parentContext: previous?.Context ?? default, startTime: _clock.GetUtcNow())
                : Source.StartActivity(name, ActivityKind.Internal, parent, startTime: _clock.GetUtcNow());
            Activity.Current = previous;
            return activity;
        }

        private static void Stop(Activity span, DateTimeOffset end)
        {
            var previous = Activity.Current;
            if (end.UtcDateTime > span.StartTimeUtc) span.SetEndTime(end.UtcDateTime);
            else span.SetEndTime(span.StartTimeUtc.AddTicks(1));
            span.Stop();
            Activity.Current = previous;
        }

        public void Dispose()
        {
            _flowSubscription.Dispose();
            _atomSubscription.Dispose();
            lock (_gate)
            {
                // A run abandoned by its consumer (or one that threw before its last state) still closes its spans.
                if (!_finished) Finish(_engine.State);
            }
        }
    }
}
