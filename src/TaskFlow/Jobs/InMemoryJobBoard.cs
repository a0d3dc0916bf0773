using TaskFlow.Failures;

namespace TaskFlow.Jobs;

/// <summary>
/// A job board in this process's memory: for tests and for a single process that wants conductor semantics without a
/// server. Thread-safe. Claims have no lease: they last until consumed, abandoned or trashed, since an owner cannot
/// die without the board dying with it. Claim epochs are checked as on every board: consume, abandon and trash with a
/// snapshot of an earlier claim are refused once the job was claimed again.
/// </summary>
public sealed class InMemoryJobBoard : IJobBoard
{
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, Entry> _jobs = [];
    private readonly TimeProvider _clock;
    private long _sequence;
    // Completed (and replaced) by every change that may make a job claimable; waiters take the current one under the lock.
    private TaskCompletionSource _claimableChanged = NewSignal();
    private bool _disposed;

    /// <summary>Creates an empty board.</summary>
    /// <param name="name">The board's name.</param>
    /// <param name="timeProvider">The clock for job creation times; <see cref="TimeProvider.System"/> when null.</param>
    public InMemoryJobBoard(string name = "default", TimeProvider? timeProvider = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        _clock = timeProvider ?? TimeProvider.System;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public Task<Job> PostAsync(JobPosting posting, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(posting);
        cancellationToken.ThrowIfCancellationRequested();
        var now = _clock.GetUtcNow();
        var job = posting.ToJob(Guid.CreateVersion7(now), now);
        lock (_gate)
        {
            ThrowIfDisposed();
            _jobs.Add(job.Id, new Entry(job, ++_sequence));
            SignalLocked();
        }
        return Task.FromResult(job);
    }

    /// <inheritdoc />
    public Task<Job?> GetJobAsync(Guid jobId, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            return Task.FromResult(_jobs.TryGetValue(jobId, out var entry) ? entry.Job : null);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<Job>> GetJobsAsync(JobState? state = null, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            IReadOnlyList<Job> jobs = InBoardOrder(_jobs.Values.Where(e => state is null || e.Job.State == state)).Select(e => e.Job).ToArray();
            return Task.FromResult(jobs);
        }
    }

    /// <inheritdoc />
    public Task<string?> FindOwnerAsync(Job job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!_jobs.TryGetValue(job.Id, out var entry))
                throw new NotFoundException($"Job board '{Name}' has no job {job.Id} ('{job.Name}').");
            return Task.FromResult(entry.Job.State == JobState.Claimed ? entry.Job.Owner : null);
        }
    }

    /// <inheritdoc />
    public Task<Job> ClaimAsync(Job job, string owner, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        JobBoardArguments.ValidateOwner(owner);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!_jobs.TryGetValue(job.Id, out var entry))
                throw new NotFoundException($"Job board '{Name}' has no job {job.Id} ('{job.Name}') to claim.");
            return Task.FromResult(entry.Job.State switch
            {
                JobState.Unclaimed => ClaimLocked(entry, owner),
                JobState.Claimed => throw new UnclaimableJobException(
                    $"Job '{job.Name}' ({job.Id}) on board '{Name}' is already claimed by '{entry.Job.Owner}'."),
                _ => throw new NotFoundException(
                    $"Job '{job.Name}' ({job.Id}) on board '{Name}' is {entry.Job.State.ToString().ToLowerInvariant()}; it cannot be claimed."),
            });
        }
    }

    /// <inheritdoc />
    public Task<Job?> ClaimNextAsync(string owner, CancellationToken cancellationToken = default)
    {
        JobBoardArguments.ValidateOwner(owner);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            var next = InBoardOrder(_jobs.Values.Where(e => e.Job.State == JobState.Unclaimed)).FirstOrDefault();
            return Task.FromResult(next is null ? null : ClaimLocked(next, owner));
        }
    }

    /// <inheritdoc />
    public Task ConsumeAsync(Job job, string owner, CancellationToken cancellationToken = default) =>
        Finish(job, owner, "consume", JobState.Complete);

    /// <inheritdoc />
    public Task TrashAsync(Job job, string owner, CancellationToken cancellationToken = default) =>
        Finish(job, owner, "trash", JobState.Trashed);

    /// <inheritdoc />
    public Task AbandonAsync(Job job, string owner, CancellationToken cancellationToken = default) =>
        Finish(job, owner, "abandon", JobState.Unclaimed);

    /// <inheritdoc />
    /// <remarks>Claims on this board never expire: the token is never cancelled while the claim is held.</remarks>
    public CancellationToken GetClaimLostToken(Job job, string owner)
    {
        ArgumentNullException.ThrowIfNull(job);
        var epoch = JobBoardArguments.ClaimEpoch(job, owner);
        lock (_gate)
            return _jobs.TryGetValue(job.Id, out var entry) && entry.Job.State == JobState.Claimed && entry.Job.Owner == owner
                   && (epoch == 0 || entry.Job.ClaimCount == epoch)
                ? CancellationToken.None
                : new CancellationToken(canceled: true);
    }

    /// <inheritdoc />
    public async Task<bool> WaitForJobsAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        JobBoardArguments.ValidateTimeout(timeout);
        Task changed;
        lock (_gate)
        {
            ThrowIfDisposed();
            if (_jobs.Values.Any(e => e.Job.State == JobState.Unclaimed)) return true;
            if (timeout == TimeSpan.Zero) return false;
            changed = _claimableChanged.Task;
        }
        try
        {
            await changed.WaitAsync(timeout, _clock, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return false;
        }
        // The signal fires for every post and abandon; the job may already be taken, which callers must expect anyway.
        lock (_gate) return !_disposed && _jobs.Values.Any(e => e.Job.State == JobState.Unclaimed);
    }

    /// <summary>Wakes every waiter (with false) and refuses further use.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _disposed = true;
            SignalLocked();
        }
        return ValueTask.CompletedTask;
    }

    private Task Finish(Job job, string owner, string operation, JobState newState)
    {
        ArgumentNullException.ThrowIfNull(job);
        JobBoardArguments.ValidateOwner(owner);
        var epoch = JobBoardArguments.ClaimEpoch(job, owner);
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!_jobs.TryGetValue(job.Id, out var entry))
                throw JobBoardArguments.NotOwned(Name, job, operation, owner, null, null);
            if (epoch != 0 && entry.Job.ClaimCount != epoch)
                throw JobBoardArguments.Superseded(Name, job, operation, owner, epoch, entry.Job.ClaimCount, entry.Job.State == JobState.Claimed ? entry.Job.Owner : null);
            if (entry.Job.State != JobState.Claimed || entry.Job.Owner != owner)
                throw JobBoardArguments.NotOwned(Name, job, operation, owner, entry.Job.State, entry.Job.State == JobState.Claimed ? entry.Job.Owner : null);
            entry.Job = entry.Job with { State = newState, Owner = newState == JobState.Unclaimed ? null : owner };
            if (newState == JobState.Unclaimed) SignalLocked();
        }
        return Task.CompletedTask;
    }

    private Job ClaimLocked(Entry entry, string owner)
    {
        entry.Job = entry.Job with { State = JobState.Claimed, Owner = owner, ClaimCount = entry.Job.ClaimCount + 1 };
        return entry.Job;
    }

    private static IEnumerable<Entry> InBoardOrder(IEnumerable<Entry> entries) =>
        entries.OrderByDescending(e => e.Job.Priority).ThenBy(e => e.Job.CreatedAt).ThenBy(e => e.Sequence);

    private void SignalLocked()
    {
        _claimableChanged.TrySetResult();
        _claimableChanged = NewSignal();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <inheritdoc />
    public override string ToString() => $"InMemoryJobBoard {{ Name = {Name} }}";

    private sealed class Entry(Job job, long sequence)
    {
        public Job Job { get; set; } = job;
        public long Sequence { get; } = sequence;
    }
}
