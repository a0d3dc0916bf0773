namespace TaskFlow.Telemetry;

/// <summary>
/// The names TaskFlow's OpenTelemetry signals use, for <c>AddSource</c>/<c>AddMeter</c> and for queries. Spans and
/// instruments come from the in-box <see cref="System.Diagnostics.ActivitySource"/> and
/// <see cref="System.Diagnostics.Metrics.Meter"/>; an engine records them only while something listens.
/// </summary>
public static class TaskFlowTelemetry
{
    /// <summary>The <see cref="System.Diagnostics.ActivitySource"/> name: <c>TaskFlow</c>.</summary>
    public const string ActivitySourceName = "TaskFlow";

    /// <summary>The <see cref="System.Diagnostics.Metrics.Meter"/> name: <c>TaskFlow</c>.</summary>
    public const string MeterName = "TaskFlow";

    /// <summary>Histogram of atom call durations, in seconds (tags: flow, atom name, kind, action, state).</summary>
    public const string AtomDurationInstrument = "taskflow.atom.duration";

    /// <summary>Counter of atom state changes (tags: flow, kind, state).</summary>
    public const string TransitionsInstrument = "taskflow.atom.transitions";

    /// <summary>Counter of subflow retries decided by retry controllers (tags: flow, atom name).</summary>
    public const string RetriesInstrument = "taskflow.atom.retries";

    /// <summary>Up-down counter of atoms executing or reverting right now (tags: flow, kind, action).</summary>
    public const string RunningAtomsInstrument = "taskflow.atoms.running";

    /// <summary>Tag on every span and measurement: the name of the flow the engine runs (the root flow).</summary>
    public const string FlowNameTag = "taskflow.flow.name";

    /// <summary>Tag on the span of a nested flow: that flow's name.</summary>
    public const string SubflowNameTag = "taskflow.subflow.name";

    /// <summary>Tag on flow spans: the flow's final state (TaskFlow's spelling, e.g. <c>REVERTED</c>).</summary>
    public const string FlowStateTag = "taskflow.flow.state";

    /// <summary>Tag: the atom's name.</summary>
    public const string AtomNameTag = "taskflow.atom.name";

    /// <summary>Tag: <c>task</c> or <c>retry</c>.</summary>
    public const string AtomKindTag = "taskflow.atom.kind";

    /// <summary>Tag: <c>execute</c>, <c>revert</c> or <c>retry</c>.</summary>
    public const string AtomActionTag = "taskflow.atom.action";

    /// <summary>Tag: the state an atom call ended in, or that a transition entered (e.g. <c>REVERT_FAILURE</c>).</summary>
    public const string AtomStateTag = "taskflow.atom.state";

    /// <summary>Tag on retry spans: how many attempts the retry controller had recorded when it decided to retry.</summary>
    public const string RetryAttemptTag = "taskflow.retry.attempt";

    /// <summary>OpenTelemetry's tag for the type of a failure (the exception's full type name).</summary>
    public const string ErrorTypeTag = "error.type";
}
