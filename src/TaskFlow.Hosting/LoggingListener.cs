using Microsoft.Extensions.Logging;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Listeners;
using TaskFlow.Notifications;
using TaskFlow.States;

namespace TaskFlow.Hosting;

/// <summary>
/// Logs engine runs through <see cref="ILogger"/> (TaskFlow's logging listeners) with source-generated messages and
/// stable event ids, so log queries and alerts can rely on them:
/// <list type="table">
/// <item><term>1000 FlowStateChanged</term><description>Information: the flow moved to a new state.</description></item>
/// <item><term>1001 AtomStateChanged</term><description>Debug: a task or retry moved to a new state.</description></item>
/// <item><term>1002 AtomFailed</term><description>Warning: an atom's execute failed (with its exception when local).</description></item>
/// <item><term>1003 AtomRevertFailed</term><description>Error: an atom's revert failed; the flow ends FAILURE.</description></item>
/// <item><term>1004 SubflowRetrying</term><description>Information: a retry controller runs its subflow again.</description></item>
/// <item><term>1005 TaskProgress</term><description>Trace: a task reported progress.</description></item>
/// <item><term>1006 SubscriberFailed</term><description>Error: another subscriber of the engine threw; the engine ignored it.</description></item>
/// </list>
/// Attach it to an engine with <see cref="FlowListener.Attach"/>; <c>AddTaskFlow()</c> registers one.
/// </summary>
public sealed partial class LoggingListener : FlowListener
{
    private readonly ILogger _logger;

    /// <summary>A listener that writes to <paramref name="logger"/>.</summary>
    public LoggingListener(ILogger<LoggingListener> logger)
    {
        ArgumentNullException.ThrowIfNull(logger);
        _logger = logger;
    }

    /// <inheritdoc />
    protected override void OnFlowStateChanged(FlowEngine engine, in FlowStateChanged e) =>
        FlowStateChanged(_logger, e.FlowName, e.State.ToTaskFlowName(), e.OldState.ToTaskFlowName());

    /// <inheritdoc />
    protected override void OnAtomStateChanged(FlowEngine engine, in AtomStateChanged e)
    {
        var kind = e.Kind == AtomKind.Retry ? "retry" : "task";
        switch (e.State)
        {
            case AtomState.Failure:
            {
                var failure = e.Result as Failure;
                AtomFailed(_logger, kind, e.AtomName, engine.Flow.Name, failure?.ExceptionTypeName, failure?.Message, failure?.Exception);
                break;
            }
            case AtomState.RevertFailure:
            {
                var failure = e.Result as Failure;
                AtomRevertFailed(_logger, kind, e.AtomName, engine.Flow.Name, failure?.ExceptionTypeName, failure?.Message, failure?.Exception);
                break;
            }
            case AtomState.Retrying:
                SubflowRetrying(_logger, e.AtomName, engine.Flow.Name);
                break;
            default:
                AtomStateChanged(_logger, kind, e.AtomName, engine.Flow.Name, e.State.ToTaskFlowName(), e.OldState.ToTaskFlowName());
                break;
        }
    }

    /// <inheritdoc />
    protected override void OnTaskProgressChanged(FlowEngine engine, in TaskProgressChanged e) =>
        TaskProgress(_logger, e.AtomName, engine.Flow.Name, e.Progress);

    /// <inheritdoc />
    protected override void OnSubscriberFailed(FlowEngine engine, Exception exception, object notification) =>
        SubscriberFailed(_logger, engine.Flow.Name, notification.GetType().Name, exception);

    [LoggerMessage(EventId = 1000, EventName = "FlowStateChanged", Level = LogLevel.Information,
        Message = "Flow {FlowName} is {State} (was {OldState})")]
    private static partial void FlowStateChanged(ILogger logger, string flowName, string state, string oldState);

    [LoggerMessage(EventId = 1001, EventName = "AtomStateChanged", Level = LogLevel.Debug,
        Message = "{AtomKind} {AtomName} of flow {FlowName} is {State} (was {OldState})")]
    private static partial void AtomStateChanged(ILogger logger, string atomKind, string atomName, string flowName, string state, string oldState);

    [LoggerMessage(EventId = 1002, EventName = "AtomFailed", Level = LogLevel.Warning,
        Message = "{AtomKind} {AtomName} of flow {FlowName} failed: {FailureType}: {FailureMessage}")]
    private static partial void AtomFailed(ILogger logger, string atomKind, string atomName, string flowName, string? failureType, string? failureMessage, Exception? exception);

    [LoggerMessage(EventId = 1003, EventName = "AtomRevertFailed", Level = LogLevel.Error,
        Message = "{AtomKind} {AtomName} of flow {FlowName} could not be reverted: {FailureType}: {FailureMessage}")]
    private static partial void AtomRevertFailed(ILogger logger, string atomKind, string atomName, string flowName, string? failureType, string? failureMessage, Exception? exception);

    [LoggerMessage(EventId = 1004, EventName = "SubflowRetrying", Level = LogLevel.Information,
        Message = "Retry {AtomName} of flow {FlowName} runs its subflow again")]
    private static partial void SubflowRetrying(ILogger logger, string atomName, string flowName);

    [LoggerMessage(EventId = 1005, EventName = "TaskProgress", Level = LogLevel.Trace,
        Message = "Task {AtomName} of flow {FlowName} progress {Progress:P0}")]
    private static partial void TaskProgress(ILogger logger, string atomName, string flowName, double progress);

    [LoggerMessage(EventId = 1006, EventName = "SubscriberFailed", Level = LogLevel.Error,
        Message = "A subscriber of flow {FlowName} threw while handling {EventType}; the engine ignored it")]
    private static partial void SubscriberFailed(ILogger logger, string flowName, string eventType, Exception exception);
}
