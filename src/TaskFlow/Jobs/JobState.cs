namespace TaskFlow.Jobs;

/// <summary>Where a job is in its life on a board (TaskFlow's job states, plus trashed).</summary>
/// <remarks>
/// <c>Unclaimed ⇄ Claimed → Complete</c>, and <c>Claimed → Trashed</c>. On a board with leases, a claim whose lease
/// ran out reads as <see cref="Unclaimed"/> again: its owner is gone and anyone may claim it.
/// </remarks>
public enum JobState
{
    /// <summary>Posted (or abandoned, or its claim's lease ran out) and waiting for an owner.</summary>
    Unclaimed,
    /// <summary>An owner holds it and is running it.</summary>
    Claimed,
    /// <summary>Its owner consumed it: done for good.</summary>
    Complete,
    /// <summary>Its owner trashed it: put aside, never run again.</summary>
    Trashed,
}

/// <summary>How urgent a job is; boards hand out higher priorities first, then older jobs first.</summary>
public enum JobPriority
{
    /// <summary>Lowest.</summary>
    VeryLow = -2,
    /// <summary>Below normal.</summary>
    Low = -1,
    /// <summary>The default.</summary>
    Normal = 0,
    /// <summary>Above normal.</summary>
    High = 1,
    /// <summary>Highest.</summary>
    VeryHigh = 2,
}
