using Microsoft.Extensions.Logging;
using TaskFlow.Atoms;
using TaskFlow.Engines;

namespace TaskFlow.Workers;

/// <summary>Options of an engine that runs its tasks on remote workers (<see cref="DistributedFlowEngine"/>).</summary>
public sealed class DistributedEngineOptions
{
    /// <summary>The transport to the workers. The engine does not dispose it; one transport serves many engines.</summary>
    public required IWorkerTransport Transport { get; init; }

    /// <summary>The ordinary engine options (store, persistence, parallelism, clock). Leave their <see cref="EngineOptions.Executor"/> unset.</summary>
    public EngineOptions Engine { get; init; } = new();

    /// <summary>The topics tasks may be sent to; null (the default) allows any topic whose live workers advertise the task.</summary>
    public IReadOnlyList<string>? Topics { get; init; }

    /// <summary>
    /// The name a task is requested under, which a worker must have registered (<see cref="TaskWorker.AddTask(string, Func{FlowTask})"/>).
    /// The default is the task's type full name, what <see cref="TaskWorker.AddTask{TTask}"/> registers; use
    /// <see cref="ByAtomName"/> for workers that register tasks under their atom names.
    /// </summary>
    public Func<FlowTask, string> TaskName { get; init; } = ByTypeName;

    /// <summary>
    /// How long a request may wait to be started by a worker (no live worker advertises the task yet, or its topic's
    /// workers are all busy) before it fails with <see cref="Failures.WorkerTimeoutException"/>; TaskFlow's
    /// <c>transition_timeout</c>, 60 s by default. The request carries the resulting deadline: the broker drops it then,
    /// and a worker refuses it unrun. A request that was sent fails only once it can no longer start: when a worker
    /// refuses it, or at the deadline plus <see cref="ClockSkewMargin"/> (so its task's revert never races a late start).
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How far the engine allows workers' clocks to run behind its own (plus the time a RUNNING reply takes to arrive):
    /// a request that no worker has reported RUNNING by its deadline is treated as not run only once the deadline plus
    /// this margin has passed, unless a worker refuses it first (the usual case: the engine withdraws it at the
    /// deadline, and the worker holding it answers at once). 5 s by default; keep the hosts' clocks synchronized (NTP) to
    /// well within it.
    /// </summary>
    public TimeSpan ClockSkewMargin { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a task may run once a worker started it; null (the default) for no limit. The worker cancels the task's
    /// token then; the engine also asks the worker to cancel it, and waits for the worker to report that it ended (or
    /// to be presumed lost, see <see cref="WorkerExpiry"/>) before it fails or reverts the task, so a revert never runs
    /// while its execute may still be running on a live worker.
    /// </summary>
    public TimeSpan? ExecutionTimeout { get; init; }

    /// <summary>
    /// How long a worker may stay silent before it is presumed lost, failing the requests it was running (they then
    /// revert, or retry under a retry controller). Null (the default) is three of the worker's own heartbeat intervals.
    /// </summary>
    public TimeSpan? WorkerExpiry { get; init; }

    /// <summary>
    /// How many times a revert whose worker was lost (or that no worker started in time) is sent again before the revert fails. Reverts
    /// must be idempotent, as in TaskFlow (a resumed flow may revert a task again). Executes are never sent again: a lost
    /// execute fails, and the flow's retry controller decides.
    /// </summary>
    public int RevertResends { get; init; } = 3;

    /// <summary>Responses larger than this are rejected unread.</summary>
    public int MaxMessageBytes { get; init; } = WorkerProtocol.DefaultMaxMessageBytes;

    /// <summary>Where rejected messages, lost workers and timeouts are logged.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Requests a task under its type's full name (the default).</summary>
    public static string ByTypeName(FlowTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        return task.GetType().FullName ?? task.GetType().Name;
    }

    /// <summary>Requests a task under its atom name.</summary>
    public static string ByAtomName(FlowTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        return task.Name;
    }

    internal void Validate()
    {
        if (Transport is null) throw new ArgumentException("DistributedEngineOptions.Transport is required.", nameof(Transport));
        ArgumentNullException.ThrowIfNull(Engine, nameof(Engine));
        ArgumentNullException.ThrowIfNull(TaskName, nameof(TaskName));
        if (RequestTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(RequestTimeout), RequestTimeout, "DistributedEngineOptions.RequestTimeout must be positive.");
        if (ClockSkewMargin < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ClockSkewMargin), ClockSkewMargin, "DistributedEngineOptions.ClockSkewMargin must not be negative.");
        if (ExecutionTimeout is { } e && e <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ExecutionTimeout), e, "DistributedEngineOptions.ExecutionTimeout must be positive or null.");
        if (WorkerExpiry is { } x && x <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(WorkerExpiry), x, "DistributedEngineOptions.WorkerExpiry must be positive or null.");
        if (RevertResends < 0) throw new ArgumentOutOfRangeException(nameof(RevertResends), RevertResends, "DistributedEngineOptions.RevertResends must not be negative.");
        if (Topics is { Count: 0 }) throw new ArgumentException("DistributedEngineOptions.Topics is empty; give at least one topic, or null for any.", nameof(Topics));
    }
}
