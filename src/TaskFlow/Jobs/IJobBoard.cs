using TaskFlow.Failures;

namespace TaskFlow.Jobs;

/// <summary>
/// A shared board where whole flows are posted as jobs and claimed by conductors (TaskFlow's <c>JobBoard</c>).
/// Every implementation passes the same contract suite.
/// </summary>
/// <remarks>
/// <para>A claim is exclusive: <see cref="ClaimAsync"/> and <see cref="ClaimNextAsync"/> never hand one job to two
/// owners at once. Only the current owner may <see cref="ConsumeAsync"/>, <see cref="AbandonAsync"/> or
/// <see cref="TrashAsync"/>; another owner gets <see cref="JobFailureException"/>, and a job that is not claimed (or
/// does not exist) gives <see cref="NotFoundException"/>.</para>
/// <para>Every claim is numbered: the claimed job's <see cref="Job.ClaimCount"/> is the claim's epoch. A snapshot that
/// shows the claim (<see cref="Job.State"/> <see cref="JobState.Claimed"/> by the same owner, as the claim methods
/// return it) names that claim, and consume, abandon and trash with it succeed only while that very claim is current,
/// checked in the same statement as the change: a later claim of the job, even by the same owner name, refuses them
/// with <see cref="JobFailureException"/>. A snapshot that shows no claim (as posted, or read while unclaimed) is
/// checked by owner name only.</para>
/// <para>Boards shared by several processes give claims a lease that the board renews while its process lives;
/// when the process dies the lease runs out and the job is claimable again (its old owner's consume or abandon then
/// fails with <see cref="JobFailureException"/>). Owners are plain names: give each process its own.</para>
/// </remarks>
public interface IJobBoard : IAsyncDisposable
{
    /// <summary>The board's name (several boards may share one store).</summary>
    string Name { get; }

    /// <summary>Posts a new, unclaimed job and wakes anyone waiting in <see cref="WaitForJobsAsync"/>.</summary>
    /// <exception cref="ArgumentException">The posting is invalid.</exception>
    Task<Job> PostAsync(JobPosting posting, CancellationToken cancellationToken = default);

    /// <summary>The job with this id as it is now, or null when the board has no such job.</summary>
    Task<Job?> GetJobAsync(Guid jobId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The jobs in <paramref name="state"/> (all jobs when null), higher priority first, then oldest first (the order
    /// TaskFlow documents; its ZooKeeper and Redis boards actually yield the reverse priority order).
    /// </summary>
    Task<IReadOnlyList<Job>> GetJobsAsync(JobState? state = null, CancellationToken cancellationToken = default);

    /// <summary>Who holds the claim on the job now; null when nobody does.</summary>
    /// <exception cref="NotFoundException">The board has no such job.</exception>
    Task<string?> FindOwnerAsync(Job job, CancellationToken cancellationToken = default);

    /// <summary>Claims the job for <paramref name="owner"/> and returns it as claimed.</summary>
    /// <exception cref="UnclaimableJobException">Someone holds the claim already (the same owner included).</exception>
    /// <exception cref="NotFoundException">The job does not exist or is already complete or trashed.</exception>
    /// <exception cref="ArgumentException">The owner is empty.</exception>
    Task<Job> ClaimAsync(Job job, string owner, CancellationToken cancellationToken = default);

    /// <summary>
    /// Claims the first claimable job in board order (priority, then age) for <paramref name="owner"/>, skipping jobs
    /// that another claimer is taking at this instant; null when nothing is claimable.
    /// </summary>
    /// <exception cref="ArgumentException">The owner is empty.</exception>
    Task<Job?> ClaimNextAsync(string owner, CancellationToken cancellationToken = default);

    /// <summary>Marks the owner's claimed job <see cref="JobState.Complete"/>; it is never handed out again.</summary>
    /// <exception cref="JobFailureException">Another owner holds the claim, or the owner's claim was lost.</exception>
    /// <exception cref="NotFoundException">The job is not claimed, or does not exist.</exception>
    Task ConsumeAsync(Job job, string owner, CancellationToken cancellationToken = default);

    /// <summary>Releases the owner's claim; the job is unclaimed again and waiting claimers are woken.</summary>
    /// <exception cref="JobFailureException">Another owner holds the claim, or the owner's claim was lost.</exception>
    /// <exception cref="NotFoundException">The job is not claimed, or does not exist.</exception>
    Task AbandonAsync(Job job, string owner, CancellationToken cancellationToken = default);

    /// <summary>Moves the owner's claimed job to <see cref="JobState.Trashed"/>: kept for inspection, never run again.</summary>
    /// <exception cref="JobFailureException">Another owner holds the claim, or the owner's claim was lost.</exception>
    /// <exception cref="NotFoundException">The job is not claimed, or does not exist.</exception>
    Task TrashAsync(Job job, string owner, CancellationToken cancellationToken = default);

    /// <summary>
    /// A token that is cancelled when <paramref name="owner"/>'s claim on <paramref name="job"/>, made through this board
    /// instance, is lost: its lease ran out before it could be renewed, so someone else may be running the job now. Stop
    /// working on the job when it fires. Boards without leases never cancel it. The token is already cancelled when this
    /// board instance does not hold such a claim.
    /// </summary>
    CancellationToken GetClaimLostToken(Job job, string owner);

    /// <summary>
    /// Waits until some job is claimable, without polling: true as soon as one is (at once if one already is), false
    /// when <paramref name="timeout"/> passes first. A true result is a hint, not a reservation: another claimer may
    /// take the job first.
    /// </summary>
    /// <param name="timeout">How long to wait at most; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</param>
    /// <param name="cancellationToken">Cancels the wait with <see cref="OperationCanceledException"/>.</param>
    Task<bool> WaitForJobsAsync(TimeSpan timeout, CancellationToken cancellationToken = default);
}

/// <summary>Checks shared by the board implementations.</summary>
public static class JobBoardArguments
{
    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="owner"/> is a usable owner name.</summary>
    public static void ValidateOwner(string owner)
    {
        ArgumentNullException.ThrowIfNull(owner);
        if (string.IsNullOrWhiteSpace(owner)) throw new ArgumentException("A job owner's name must not be empty.", nameof(owner));
        if (owner.Contains('\0')) throw new ArgumentException("A job owner's name must not contain NUL characters.", nameof(owner));
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> unless <paramref name="timeout"/> is non-negative or infinite.</summary>
    public static void ValidateTimeout(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A wait timeout must be zero or more, or Timeout.InfiniteTimeSpan.");
    }

    /// <summary>
    /// The claim epoch <paramref name="job"/> names for <paramref name="owner"/>: its <see cref="Job.ClaimCount"/> when the
    /// snapshot shows the job claimed by that owner, 0 (check the owner only) otherwise. Boards refuse an owner-only
    /// operation whose epoch is not 0 and not the job's current claim count.
    /// </summary>
    public static int ClaimEpoch(Job job, string owner)
    {
        ArgumentNullException.ThrowIfNull(job);
        return job.State == JobState.Claimed && job.Owner == owner ? job.ClaimCount : 0;
    }

    /// <summary>The exception for an owner-only operation by <paramref name="owner"/> with a claim (epoch <paramref name="heldEpoch"/>) that a later claim replaced.</summary>
    public static JobFailureException Superseded(string boardName, Job job, string operation, string owner, int heldEpoch, int currentEpoch, string? holder) =>
        new($"Job '{job.Name}' ({job.Id}) on board '{boardName}': the claim of '{owner}' at epoch {heldEpoch} was lost and the job was claimed again " +
            $"(epoch {currentEpoch}{(holder is null ? "" : $", by '{holder}'")}); it cannot {operation} the job with the old claim.");

    /// <summary>The exception for an owner-only operation on a job in the wrong state or held by someone else.</summary>
    public static Exception NotOwned(string boardName, Job job, string operation, string owner, JobState? state, string? holder) => state switch
    {
        null => new NotFoundException($"Job board '{boardName}' has no job {job.Id} ('{job.Name}') to {operation}."),
        JobState.Claimed when holder != owner =>
            new JobFailureException($"Job '{job.Name}' ({job.Id}) on board '{boardName}' is claimed by '{holder}', not '{owner}'; only the owner may {operation} it."),
        JobState.Claimed => new JobFailureException($"Job '{job.Name}' ({job.Id}) on board '{boardName}': '{owner}' cannot {operation} it."),
        _ when holder == owner && state == JobState.Unclaimed =>
            new JobFailureException($"Job '{job.Name}' ({job.Id}) on board '{boardName}': the claim of '{owner}' was lost (its lease ran out); it cannot {operation} the job any more."),
        _ => new NotFoundException($"Job '{job.Name}' ({job.Id}) on board '{boardName}' is {state.Value.ToString().ToLowerInvariant()}, not claimed; there is no claim to {operation}."),
    };
}
