using TaskFlow.Jobs;

namespace TaskFlow.Conductors;

/// <summary>A conductor claimed a job and is about to run it.</summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Job">The job as claimed.</param>
public readonly record struct JobClaimed(string Conductor, Job Job);

/// <summary>A conductor consumed a job: its flow ended (successfully, or failed under <see cref="FlowFailureAction.Consume"/>).</summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Job">The job.</param>
/// <param name="Failure">The flow's failure when it did not succeed; null on success.</param>
public readonly record struct JobConsumed(string Conductor, Job Job, Exception? Failure);

/// <summary>A conductor gave a job back to the board (stopped, storage failure, or failure under <see cref="FlowFailureAction.Abandon"/>).</summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Job">The job.</param>
/// <param name="Reason">Why, for people.</param>
/// <param name="Failure">The exception behind it, if any.</param>
public readonly record struct JobAbandoned(string Conductor, Job Job, string Reason, Exception? Failure);

/// <summary>A conductor trashed a job (its flow could not be built, or failed under <see cref="FlowFailureAction.Trash"/>).</summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Job">The job.</param>
/// <param name="Failure">The exception behind it.</param>
public readonly record struct JobTrashed(string Conductor, Job Job, Exception? Failure);

/// <summary>
/// A conductor could not finish its part for a job: the consume, abandon or trash was refused (most often because
/// the claim was lost to an expired lease and someone else now runs the job) or the board was unreachable.
/// </summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Job">The job.</param>
/// <param name="Operation">"consume", "abandon" or "trash".</param>
/// <param name="Failure">The board's exception.</param>
public readonly record struct JobOperationFailed(string Conductor, Job Job, string Operation, Exception Failure);

/// <summary>A conductor could not claim from, or wait on, its board; it retries after <paramref name="RetryIn"/>.</summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Failure">The board's exception.</param>
/// <param name="RetryIn">How long the conductor waits before trying again.</param>
public readonly record struct BoardUnavailable(string Conductor, Exception Failure, TimeSpan RetryIn);

/// <summary>
/// The store refused a write a conductor made for a job, because a newer claim of the job owns its flow detail now
/// (the conductor's claim was lost, typically to an expired lease during a stall or a partition, and someone else
/// resumed the run). The conductor stops the job: its engine run is cancelled and it tries to abandon the job (which the
/// board refuses when the claim is gone, reported by <see cref="JobOperationFailed"/>).
/// </summary>
/// <param name="Conductor">The conductor's name.</param>
/// <param name="Job">The job as this conductor claimed it.</param>
/// <param name="Refusal">The store's refusal: which write, the token the conductor held, the current owner.</param>
public readonly record struct JobWriteRefused(string Conductor, Job Job, Persistence.StaleOwnerException Refusal)
{
    /// <summary>The write that was refused, e.g. "save atom details" or "take ownership".</summary>
    public string Write => Refusal.Operation;

    /// <summary>The epoch (claim count) of the conductor's claim.</summary>
    public long HeldEpoch => Refusal.Token.Epoch;

    /// <summary>The epoch of the flow detail's current owner; null when none is stored (the flow detail was deleted).</summary>
    public long? CurrentEpoch => Refusal.Current?.Epoch;

    /// <summary>The name of the flow detail's current owner; null when none is stored.</summary>
    public string? CurrentOwner => Refusal.Current?.Owner;
}
