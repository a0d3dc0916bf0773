using System.Globalization;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Notifications;
using TaskFlow.States;

namespace TaskFlow.Listeners;

/// <summary>
/// Records everything an engine publishes, in order (TaskFlow's <c>CaptureListener</c>), for tests and debugging.
/// <see cref="Values"/> spells each event as TaskFlow's capture does: <c>flow.f RUNNING</c>, <c>task.t SUCCESS(5)</c>,
/// <c>retry.r RETRYING</c>, <c>task.t PROGRESS(0.5)</c>.
/// </summary>
public sealed class CapturingListener : FlowListener
{
    private readonly Lock _gate = new();
    private readonly List<object> _events = [];
    private readonly List<string> _values = [];
    private readonly List<(Exception Exception, object Notification)> _subscriberFailures = [];

    /// <summary>Whether <see cref="Values"/> show results and failures, e.g. <c>a.t SUCCESS(5)</c>. Default true.</summary>
    public bool CaptureResults { get; init; } = true;

    /// <summary>Whether progress events are captured. Default true.</summary>
    public bool CaptureProgress { get; init; } = true;

    /// <summary>Every captured event in publication order: <see cref="FlowStateChanged"/>, <see cref="AtomStateChanged"/> and <see cref="TaskProgressChanged"/> values.</summary>
    public IReadOnlyList<object> Events
    {
        get { lock (_gate) return _events.ToArray(); }
    }

    /// <summary>The captured events as text, in publication order.</summary>
    public IReadOnlyList<string> Values
    {
        get { lock (_gate) return _values.ToArray(); }
    }

    /// <summary>The flow state changes.</summary>
    public IReadOnlyList<FlowStateChanged> FlowStates => Of<FlowStateChanged>();

    /// <summary>The atom state changes (tasks and retry controllers).</summary>
    public IReadOnlyList<AtomStateChanged> AtomStates => Of<AtomStateChanged>();

    /// <summary>The progress reports.</summary>
    public IReadOnlyList<TaskProgressChanged> Progress => Of<TaskProgressChanged>();

    /// <summary>Exceptions other subscribers of the engine threw, with the event each was handling.</summary>
    public IReadOnlyList<(Exception Exception, object Notification)> SubscriberFailures
    {
        get { lock (_gate) return _subscriberFailures.ToArray(); }
    }

    /// <summary>Forgets everything captured so far.</summary>
    public void Clear()
    {
        lock (_gate)
        {
            _events.Clear();
            _values.Clear();
            _subscriberFailures.Clear();
        }
    }

    private T[] Of<T>()
    {
        lock (_gate) return _events.OfType<T>().ToArray();
    }

    /// <inheritdoc />
    protected override void OnFlowStateChanged(FlowEngine engine, in FlowStateChanged e) =>
        Record(e, $"{e.FlowName}.f {e.State.ToTaskFlowName()}");

    /// <inheritdoc />
    protected override void OnAtomStateChanged(FlowEngine engine, in AtomStateChanged e)
    {
        var text = $"{e.AtomName}.{(e.Kind == AtomKind.Retry ? 'r' : 't')} {e.State.ToTaskFlowName()}";
        if (CaptureResults && e.State is AtomState.Success or AtomState.Failure or AtomState.Reverted or AtomState.RevertFailure)
            text += $"({Describe(e.Result)})";
        Record(e, text);
    }

    /// <inheritdoc />
    protected override void OnTaskProgressChanged(FlowEngine engine, in TaskProgressChanged e)
    {
        if (CaptureProgress) Record(e, $"{e.AtomName}.t PROGRESS({e.Progress.ToString(CultureInfo.InvariantCulture)})");
    }

    /// <inheritdoc />
    protected override void OnSubscriberFailed(FlowEngine engine, Exception exception, object notification)
    {
        lock (_gate) _subscriberFailures.Add((exception, notification));
    }

    private void Record(object e, string text)
    {
        lock (_gate)
        {
            _events.Add(e);
            _values.Add(text);
        }
    }

    private static string Describe(object? result) => result switch
    {
        null => "None",
        Failure f => $"{f.ExceptionTypeName}: {f.Message}",
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => result.ToString() ?? "",
    };
}
