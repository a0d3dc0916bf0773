namespace TaskFlow.Engines;

/// <summary>Options for an engine run.</summary>
public sealed class EngineOptions
{
    /// <summary>Flow-level inputs (TaskFlow's <c>store=</c>): available to every atom, and they beat atom results.</summary>
    public IDictionary<string, object?> Store { get; init; } = new Dictionary<string, object?>(StringComparer.Ordinal);

    /// <summary>How many tasks the parallel engine runs at once (default: the number of processors). Ignored by the serial engine.</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>The clock for timings.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
