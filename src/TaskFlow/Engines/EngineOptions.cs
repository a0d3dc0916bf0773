using TaskFlow.Persistence;

namespace TaskFlow.Engines;

/// <summary>Options for an engine run. A record, so a copy with one change is <c>options with { Executor = … }</c>.</summary>
public sealed record EngineOptions
{
    /// <summary>
    /// Flow-level inputs (TaskFlow's <c>store=</c>): available to every atom, and they beat atom results. With
    /// <see cref="Persistence"/> they are saved with the flow detail (so they must serialize to JSON) and, on resume,
    /// laid over the saved store.
    /// </summary>
    public IDictionary<string, object?> Store { get; init; } = new Dictionary<string, object?>(StringComparer.Ordinal);

    /// <summary>
    /// How many tasks the parallel engine runs at once; -1 for no limit. The default, processors + 1, is TaskFlow's
    /// worker count; raise it for I/O-bound async tasks. Ignored by the serial engine.
    /// </summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount + 1;

    /// <summary>The clock for timings.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>
    /// Where every state change of the run is saved before the engine acts on it, so a killed process can resume.
    /// Null (the default) keeps the run in memory only. The engine does not dispose the backend.
    /// </summary>
    public IPersistenceBackend? Persistence { get; init; }

    /// <summary>
    /// The flow detail to run under <see cref="Persistence"/>: when it is stored, the run resumes it (finished atoms are
    /// not run again); when it is not, a new flow detail is created with this id. Null creates a new one with a fresh id.
    /// </summary>
    public Guid? FlowDetailId { get; init; }

    /// <summary>
    /// The logbook a new flow detail is created in; it is created (named after the flow) when it is not stored. Null
    /// creates a new logbook. Ignored when resuming.
    /// </summary>
    public Guid? LogBookId { get; init; }

    /// <summary>Where tasks run; null runs them in process. See <see cref="TaskExecutor"/>.</summary>
    public TaskExecutor? Executor { get; init; }
}
