using System.Globalization;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Notifications;
using TaskFlow.States;

namespace TaskFlow.Listeners;

/// <summary>
/// Writes one human-readable line per event to a <see cref="TextWriter"/> (TaskFlow's printing listener), e.g.
/// <c>task 'create_db' SUCCESS (was RUNNING) result: vol-1</c>. Lines are written whole under a lock, so runs of a
/// parallel engine never interleave inside a line.
/// </summary>
public sealed class ConsoleListener : FlowListener
{
    private readonly TextWriter _writer;
    private readonly Lock _gate = new();

    /// <summary>A listener writing to <paramref name="writer"/>, or to <see cref="Console.Out"/> when null.</summary>
    public ConsoleListener(TextWriter? writer = null) => _writer = writer ?? Console.Out;

    /// <summary>Whether results and failure messages are written. Default true.</summary>
    public bool ShowResults { get; init; } = true;

    /// <summary>Whether progress reports are written. Default false (they can be many).</summary>
    public bool ShowProgress { get; init; }

    /// <summary>Whether lines name the flow the engine runs, e.g. <c>[create-volume] task 'a' RUNNING</c>. Default false.</summary>
    public bool ShowFlowName { get; init; }

    /// <inheritdoc />
    protected override void OnFlowStateChanged(FlowEngine engine, in FlowStateChanged e) =>
        Write(engine, $"flow '{e.FlowName}' {e.State.ToTaskFlowName()} (was {e.OldState.ToTaskFlowName()})");

    /// <inheritdoc />
    protected override void OnAtomStateChanged(FlowEngine engine, in AtomStateChanged e)
    {
        var kind = e.Kind == AtomKind.Retry ? "retry" : "task";
        var line = $"{kind} '{e.AtomName}' {e.State.ToTaskFlowName()} (was {e.OldState.ToTaskFlowName()})";
        if (ShowResults)
        {
            if (e.Result is Failure f) line += $" failure: {f.ExceptionTypeName}: {f.Message}";
            else if (e.State is AtomState.Success && e.Result is not null) line += $" result: {Format(e.Result)}";
        }
        Write(engine, line);
    }

    /// <inheritdoc />
    protected override void OnTaskProgressChanged(FlowEngine engine, in TaskProgressChanged e)
    {
        if (!ShowProgress) return;
        var line = $"task '{e.AtomName}' progress {(e.Progress * 100).ToString("0", CultureInfo.InvariantCulture)}%";
        if (e.Details is not null) line += $" {Format(e.Details)}";
        Write(engine, line);
    }

    /// <inheritdoc />
    protected override void OnSubscriberFailed(FlowEngine engine, Exception exception, object notification) =>
        Write(engine, $"subscriber failed on {notification.GetType().Name}: {exception.GetType().Name}: {exception.Message}");

    private void Write(FlowEngine engine, string line)
    {
        if (ShowFlowName) line = $"[{engine.Flow.Name}] {line}";
        lock (_gate) _writer.WriteLine(line);
    }

    private static string Format(object value) =>
        value is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : value.ToString() ?? "";
}
