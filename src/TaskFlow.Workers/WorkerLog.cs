using Microsoft.Extensions.Logging;

namespace TaskFlow.Workers;

/// <summary>The log messages of workers and the distributed executor (source-generated, no allocation when disabled).</summary>
internal static partial class WorkerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "Worker {WorkerId} rejected a message on topic {Topic}: {Reason}")]
    public static partial void RejectedRequest(ILogger logger, string workerId, string topic, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Worker {WorkerId} has no task named {TaskName} (request {RequestId}); replying FAILURE")]
    public static partial void UnknownTask(ILogger logger, string workerId, string taskName, string requestId);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Worker {WorkerId} runs {Action} of task {TaskName} for atom {AtomName} (request {RequestId})")]
    public static partial void Running(ILogger logger, string workerId, TaskAction action, string taskName, string atomName, string requestId);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Worker {WorkerId} could not send {What} for request {RequestId}")]
    public static partial void SendFailed(ILogger logger, Exception exception, string workerId, string what, string requestId);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Worker {WorkerId} could not send its heartbeat")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception, string workerId);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Worker {WorkerId} started on topic {Topic} with {TaskCount} task(s), up to {MaxConcurrency} at once")]
    public static partial void Started(ILogger logger, string workerId, string topic, int taskCount, int maxConcurrency);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "Worker {WorkerId} stopped")]
    public static partial void Stopped(ILogger logger, string workerId);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "Worker {WorkerId} ignored a {Type} message on the notification channel")]
    public static partial void IgnoredNotification(ILogger logger, string workerId, string type);

    [LoggerMessage(EventId = 9, Level = LogLevel.Information, Message = "Worker {WorkerId} refused request {RequestId} for task {TaskName} without running it ({Reason})")]
    public static partial void Refused(ILogger logger, string workerId, string requestId, string taskName, string reason);

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "Engine rejected a message: {Reason}")]
    public static partial void EngineRejected(ILogger logger, string reason);

    [LoggerMessage(EventId = 21, Level = LogLevel.Debug, Message = "Ignored a {State} response for request {RequestId} from worker {WorkerId}: the request is already finished or unknown")]
    public static partial void LateResponse(ILogger logger, string state, string requestId, string workerId);

    [LoggerMessage(EventId = 22, Level = LogLevel.Warning, Message = "Request {RequestId} for task {TaskName}: {Reason}")]
    public static partial void RequestFailed(ILogger logger, string requestId, string taskName, string reason);

    [LoggerMessage(EventId = 23, Level = LogLevel.Warning, Message = "Worker {WorkerId} (topic {Topic}) is presumed lost: no heartbeat for {Silence}")]
    public static partial void WorkerLost(ILogger logger, string workerId, string topic, TimeSpan silence);

    [LoggerMessage(EventId = 24, Level = LogLevel.Information, Message = "Revert of atom {AtomName} is sent again (attempt {Attempt}) because {Reason}")]
    public static partial void RevertResent(ILogger logger, string atomName, int attempt, string reason);

    [LoggerMessage(EventId = 25, Level = LogLevel.Warning, Message = "Engine could not send a discovery request")]
    public static partial void DiscoveryFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 26, Level = LogLevel.Warning, Message = "Request {RequestId} for task {TaskName}: {Reason}")]
    public static partial void RequestUnsettled(ILogger logger, string requestId, string taskName, string reason);

    [LoggerMessage(EventId = 27, Level = LogLevel.Warning, Message = "Engine could not send the withdrawal of request {RequestId}")]
    public static partial void WithdrawalFailed(ILogger logger, Exception exception, string requestId);

    [LoggerMessage(EventId = 28, Level = LogLevel.Warning, Message = "Request {RequestId} could not be sent to topic {Topic}; it may still be queued, so it is treated as sent")]
    public static partial void SendUncertain(ILogger logger, Exception exception, string requestId, string topic);
}
