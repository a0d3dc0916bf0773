namespace TaskFlow.Conductors;

/// <summary>What a conductor does with a job whose flow failed (was reverted, or failed to revert).</summary>
public enum FlowFailureAction
{
    /// <summary>Consume the job: the failure is the job's outcome (TaskFlow's behaviour, and the default).</summary>
    Consume,
    /// <summary>Abandon the job so another conductor (or this one) runs it again.</summary>
    Abandon,
    /// <summary>Trash the job: kept on the board for inspection, never run again.</summary>
    Trash,
}

/// <summary>Which engine a conductor runs flows on.</summary>
public enum ConductorEngine
{
    /// <summary><see cref="Engines.FlowEngine.CreateSerial"/>.</summary>
    Serial,
    /// <summary><see cref="Engines.FlowEngine.CreateParallel"/> with <see cref="ConductorOptions.MaxDegreeOfParallelism"/>.</summary>
    Parallel,
}

/// <summary>Options of a <see cref="Conductor"/>.</summary>
public sealed class ConductorOptions
{
    /// <summary>The conductor's name: the owner name it claims jobs under. Give every conductor process its own.</summary>
    public required string Name { get; init; }

    /// <summary>
    /// How many jobs the conductor runs at once. 1 (the default) is TaskFlow's blocking conductor: claim, run to the end,
    /// then claim the next; more is its non-blocking conductor.
    /// </summary>
    public int MaxConcurrentJobs { get; init; } = 1;

    /// <summary>
    /// How long one wait for claimable jobs lasts before the conductor checks the board again. Boards wake waiters as
    /// soon as a job is posted or abandoned, so this is only a safety net. Default 5 seconds.
    /// </summary>
    public TimeSpan WaitTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>What to do with a job whose flow failed. Default <see cref="FlowFailureAction.Consume"/> (TaskFlow's).</summary>
    public FlowFailureAction OnFlowFailure { get; init; } = FlowFailureAction.Consume;

    /// <summary>The engine kind. Default <see cref="ConductorEngine.Serial"/>.</summary>
    public ConductorEngine Engine { get; init; } = ConductorEngine.Serial;

    /// <summary>For <see cref="ConductorEngine.Parallel"/>: how many tasks of one flow run at once (-1 for no limit). Default processors + 1.</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount + 1;

    internal void Validate()
    {
        Jobs.JobBoardArguments.ValidateOwner(Name);
        if (MaxConcurrentJobs < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrentJobs), MaxConcurrentJobs, $"Conductor '{Name}': MaxConcurrentJobs must be at least 1.");
        if (WaitTimeout <= TimeSpan.Zero && WaitTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(WaitTimeout), WaitTimeout, $"Conductor '{Name}': WaitTimeout must be positive.");
        if (!Enum.IsDefined(OnFlowFailure))
            throw new ArgumentOutOfRangeException(nameof(OnFlowFailure), OnFlowFailure, $"Conductor '{Name}': unknown OnFlowFailure value.");
        if (!Enum.IsDefined(Engine))
            throw new ArgumentOutOfRangeException(nameof(Engine), Engine, $"Conductor '{Name}': unknown Engine value.");
        if (MaxDegreeOfParallelism == 0 || MaxDegreeOfParallelism < -1)
            throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), MaxDegreeOfParallelism, $"Conductor '{Name}': MaxDegreeOfParallelism must be positive, or -1 for no limit.");
    }
}
