using System.Text.Json;
using TaskFlow.Failures;

namespace TaskFlow.Workers;

/// <summary>What a request asks a worker to do with a task.</summary>
public enum TaskAction
{
    /// <summary>Run the task's execute.</summary>
    Execute,

    /// <summary>Run the task's revert.</summary>
    Revert,
}

/// <summary>The state a worker reports for a request.</summary>
public enum ResponseState
{
    /// <summary>The worker accepted the request and started the task.</summary>
    Running,

    /// <summary>The task reported progress.</summary>
    Progress,

    /// <summary>The task finished; the response carries its result.</summary>
    Success,

    /// <summary>The task (or the worker, for a request it cannot serve) failed; the response carries the failure.</summary>
    Failure,
}

/// <summary>A message of the worker protocol (see <see cref="WorkerProtocol"/>). Every message carries the protocol version.</summary>
public abstract record WorkerMessage;

/// <summary>An engine asks a worker to run one task's execute or revert.</summary>
/// <param name="Id">The request id; responses carry it back.</param>
/// <param name="TaskName">The name the worker registered the task under (looked up in its registry, never instantiated from the wire).</param>
/// <param name="AtomName">The atom's name in the engine's flow.</param>
/// <param name="Action">Execute or revert.</param>
/// <param name="Arguments">The bound arguments by parameter name, as JSON.</param>
/// <param name="ReplyTo">The transport address responses go to.</param>
public sealed record TaskRequest(string Id, string TaskName, string AtomName, TaskAction Action, IReadOnlyDictionary<string, JsonElement> Arguments, string ReplyTo) : WorkerMessage
{
    /// <summary>For a revert: what execute produced, as JSON (null when it failed or returned null).</summary>
    public JsonElement? Result { get; init; }

    /// <summary>For a revert: the failure execute raised, when it failed.</summary>
    public Failure? ResultFailure { get; init; }

    /// <summary>For a revert: every execute failure recorded in the flow, by atom name.</summary>
    public IReadOnlyDictionary<string, Failure> FlowFailures { get; init; } = EmptyFailures;

    /// <summary>How long the task may run once started; the worker cancels it after that. Null: no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>
    /// The instant (by the engine's clock) after which no worker may start the request: a worker refuses it unrun, and
    /// the engine, once this instant plus its clock-skew margin has passed without a RUNNING, knows it never ran.
    /// Null (requests from older engines): no deadline.
    /// </summary>
    internal DateTimeOffset? Deadline { get; init; }

    internal static readonly IReadOnlyDictionary<string, Failure> EmptyFailures = new Dictionary<string, Failure>(StringComparer.Ordinal);
}

/// <summary>A worker's answer to a request: accepted (running), progress, or the final result or failure.</summary>
/// <param name="Id">The request id.</param>
/// <param name="State">What happened.</param>
/// <param name="WorkerId">The worker that sends it.</param>
public sealed record TaskResponse(string Id, ResponseState State, string WorkerId) : WorkerMessage
{
    /// <summary>For <see cref="ResponseState.Success"/>: the task's result as JSON (null for a null result).</summary>
    public JsonElement? Result { get; init; }

    /// <summary>For <see cref="ResponseState.Failure"/>: what failed.</summary>
    public Failure? Failure { get; init; }

    /// <summary>For <see cref="ResponseState.Progress"/>: the progress between 0 and 1.</summary>
    public double Progress { get; init; }

    /// <summary>For <see cref="ResponseState.Progress"/>: the details the task gave, as JSON.</summary>
    public JsonElement? Details { get; init; }

    /// <summary>
    /// For <see cref="ResponseState.Failure"/>: set when the worker refused the request without running any of the
    /// task's code, and never will (it expired, was withdrawn, or its RUNNING could not be sent); the reason, one of
    /// the <see cref="Refusals"/>. Null for a failure of the task itself.
    /// </summary>
    internal string? Refused { get; init; }
}

/// <summary>Why a worker refused a request unrun (<see cref="TaskResponse.Refused"/>).</summary>
internal static class Refusals
{
    /// <summary>The request's deadline had passed when the worker could have started it.</summary>
    public const string Expired = "expired";

    /// <summary>The engine withdrew the request (a <see cref="CancelRequest"/>) before it started.</summary>
    public const string Withdrawn = "withdrawn";

    /// <summary>The worker could not tell the engine it started (RUNNING was not confirmed), so it did not start.</summary>
    public const string NotAnnounced = "not_announced";
}

/// <summary>
/// An engine withdraws a request (on the notification channel, so every worker hears it): a worker holding it unstarted
/// refuses it and says so (the acknowledgement); a worker that receives it later refuses it too; a worker running it
/// cancels the task's token. Workers remember the id until <see cref="Deadline"/> has long passed.
/// </summary>
/// <param name="Id">The request id.</param>
internal sealed record CancelRequest(string Id) : WorkerMessage
{
    /// <summary>The request's deadline, if it has one.</summary>
    public DateTimeOffset? Deadline { get; init; }
}

/// <summary>
/// A worker's heartbeat: who it is, the topic it consumes and the task names it runs. Workers send one when they
/// start, every heartbeat interval, in answer to a <see cref="DiscoveryRequest"/>, and (with <see cref="Leaving"/>)
/// when they stop.
/// </summary>
/// <param name="WorkerId">The worker's unique id (one per process and start).</param>
/// <param name="Topic">The topic whose requests it consumes.</param>
/// <param name="Tasks">The task names it can run.</param>
/// <param name="HeartbeatInterval">How often it sends a heartbeat.</param>
public sealed record WorkerNotification(string WorkerId, string Topic, IReadOnlyList<string> Tasks, TimeSpan HeartbeatInterval) : WorkerMessage
{
    /// <summary>The worker is stopping: stop sending it requests.</summary>
    public bool Leaving { get; init; }
}

/// <summary>An engine asks every worker to announce itself now, instead of at its next heartbeat.</summary>
public sealed record DiscoveryRequest : WorkerMessage;

/// <summary>A received message was rejected: malformed, oversized, of an unknown version or of the wrong shape.</summary>
public sealed class WorkerProtocolException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public WorkerProtocolException(string message, Exception? innerException = null) : base(message, innerException) { }
}
