namespace TaskFlow.Engines;

/// <summary>Options for an engine run.</summary>
public sealed class EngineOptions
{
    /// <summary>Flow-level inputs (TaskFlow's <c>store=</c>): available to every atom, and they beat atom results.</summary>
    public IDictionary<string, object?> Store { get; init; } = new Dictionary<string, object?>(StringComparer.Ordinal);

    /// <summary>
    /// How many tasks the parallel engine runs at once; -1 for no limit. The default, processors + 1, is TaskFlow's
    /// worker count; raise it for I/O-bound async tasks. Ignored by the serial engine.
    /// </summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount + 1;

    /// <summary>The clock for timings.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
