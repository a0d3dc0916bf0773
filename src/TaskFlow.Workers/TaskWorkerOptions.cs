namespace TaskFlow.Workers;

/// <summary>Options of a <see cref="TaskWorker"/>.</summary>
public sealed class TaskWorkerOptions
{
    /// <summary>The topic whose requests the worker takes (TaskFlow's worker topic). Engines send a task to a topic whose workers advertise it.</summary>
    public string Topic { get; init; } = "taskflow";

    /// <summary>This worker's id, unique per process start; it appears in heartbeats, responses and logs.</summary>
    public string WorkerId { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>How many requests run at once (and how many the transport may hand over unacknowledged).</summary>
    public int MaxConcurrency { get; init; } = Environment.ProcessorCount;

    /// <summary>How often the worker announces itself. Engines presume it lost after a few silent intervals.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Requests larger than this are rejected unread.</summary>
    public int MaxMessageBytes { get; init; } = WorkerProtocol.DefaultMaxMessageBytes;

    /// <summary>The clock for heartbeats.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(Topic)) throw new ArgumentException("TaskWorkerOptions.Topic must be a non-empty topic name.", nameof(Topic));
        if (string.IsNullOrWhiteSpace(WorkerId)) throw new ArgumentException("TaskWorkerOptions.WorkerId must be non-empty.", nameof(WorkerId));
        if (MaxConcurrency < 1) throw new ArgumentOutOfRangeException(nameof(MaxConcurrency), MaxConcurrency, "TaskWorkerOptions.MaxConcurrency must be at least 1.");
        if (HeartbeatInterval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(HeartbeatInterval), HeartbeatInterval, "TaskWorkerOptions.HeartbeatInterval must be positive.");
        if (MaxMessageBytes < 1024) throw new ArgumentOutOfRangeException(nameof(MaxMessageBytes), MaxMessageBytes, "TaskWorkerOptions.MaxMessageBytes must be at least 1024.");
    }
}
