using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Jobs;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Conductors;

/// <summary>
/// Claims jobs from a board and runs each job's flow to the end under persistence (TaskFlow's conductors): one job at
/// a time when <see cref="ConductorOptions.MaxConcurrentJobs"/> is 1 (the blocking conductor), several otherwise.
/// </summary>
/// <remarks>
/// <para>Every run uses the job's flow detail id and logbook id, so a job that a dead conductor left behind resumes
/// where that conductor stopped: atoms already finished are not run again.</para>
/// <para>Outcomes: success → consume; the flow failed → <see cref="ConductorOptions.OnFlowFailure"/>; the flow could
/// not be built or validated (unknown factory, invalid flow, a flow that no longer matches its saved run, missing
/// inputs) → trash; persistence or board trouble → abandon (someone retries);
/// stopping → the engine is suspended (running tasks finish, nothing new starts) and the job abandoned; losing the
/// claim (its lease ran out, see <see cref="IJobBoard.GetClaimLostToken"/>) → the engine is suspended the same way; a
/// write the store refused because a newer claim owns the run → the run is cancelled and the job abandoned
/// (<see cref="JobWriteRefused"/>). Each outcome is published on <see cref="Notifications"/>.</para>
/// <para>Fencing: before reading a job's saved run the conductor takes ownership of its flow detail with the claim's
/// epoch (<see cref="Job.ClaimCount"/>, see <see cref="IFencedPersistenceBackend.TakeOwnershipAsync"/>), and the engine
/// saves through the returned backend, so the store refuses every write of a claim that a later claim replaced.</para>
/// </remarks>
public sealed class Conductor : IAsyncDisposable
{
    private static readonly TimeSpan BoardRetryDelay = TimeSpan.FromSeconds(1);

    private readonly IJobBoard _board;
    private readonly IFlowFactoryRegistry _flows;
    private readonly IFencedPersistenceBackend _persistence;
    private readonly ConductorOptions _options;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _started;
    private long _dispatched;

    /// <summary>Creates a conductor; call <see cref="RunAsync"/> to start it.</summary>
    /// <param name="board">Where jobs are claimed.</param>
    /// <param name="flows">Builds each job's flow from its factory name.</param>
    /// <param name="persistence">
    /// Where runs are saved, so a reclaimed job resumes. Not disposed by the conductor. It must fence the writes of
    /// replaced owners (<see cref="IFencedPersistenceBackend"/>, which every TaskFlow backend is).
    /// </param>
    /// <param name="options">Name, concurrency, failure handling, engine kind.</param>
    /// <exception cref="ArgumentException"><paramref name="persistence"/> is not an <see cref="IFencedPersistenceBackend"/>.</exception>
    public Conductor(IJobBoard board, IFlowFactoryRegistry flows, IPersistenceBackend persistence, ConductorOptions options)
    {
        ArgumentNullException.ThrowIfNull(board);
        ArgumentNullException.ThrowIfNull(flows);
        ArgumentNullException.ThrowIfNull(persistence);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _board = board;
        _flows = flows;
        // Without a fence, a conductor whose claim was lost could overwrite the run its successor finished (a save in
        // flight when the lease ran out lands later): refuse to run rather than weaken the guarantee silently.
        _persistence = persistence as IFencedPersistenceBackend ?? throw new ArgumentException(
            $"Conductor '{options.Name}' cannot run on {persistence.GetType().Name}: conductors need a persistence backend that fences the writes " +
            $"of an owner whose claim was replaced ({nameof(IFencedPersistenceBackend)}). Use one of TaskFlow's backends, implement " +
            $"{nameof(IFencedPersistenceBackend)}.{nameof(IFencedPersistenceBackend.TakeOwnershipAsync)}, or let a wrapper forward it to the backend it wraps.",
            nameof(persistence));
        _options = options;
    }

    /// <summary>The conductor's name, which is the owner name of its claims.</summary>
    public string Name => _options.Name;

    /// <summary>The options.</summary>
    public ConductorOptions Options => _options;

    /// <summary>
    /// Where <see cref="JobClaimed"/>, <see cref="JobConsumed"/>, <see cref="JobAbandoned"/>, <see cref="JobTrashed"/>,
    /// <see cref="JobOperationFailed"/>, <see cref="JobWriteRefused"/> and <see cref="BoardUnavailable"/> are published.
    /// </summary>
    public NotificationHub Notifications { get; } = new();

    /// <summary>How many jobs this conductor has claimed and started so far.</summary>
    public long DispatchedCount => Interlocked.Read(ref _dispatched);

    /// <summary>
    /// Claims and runs jobs until <paramref name="cancellationToken"/> is cancelled or <see cref="StopAsync"/> is
    /// called; then suspends the running flows, abandons their jobs, and returns once every dispatch has ended.
    /// A conductor runs once.
    /// </summary>
    /// <exception cref="InvalidStateException">The conductor was started before.</exception>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _started, 1) == 1)
            throw new InvalidStateException($"Conductor '{Name}' was already started; a conductor runs once.");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        var token = stop.Token;
        using var slots = new SemaphoreSlim(_options.MaxConcurrentJobs);
        var dispatches = new List<Task>();
        try
        {
            while (!token.IsCancellationRequested)
            {
                await slots.WaitAsync(token).ConfigureAwait(false);
                Job? job = null;
                try
                {
                    // Not cancelled by a stop: a claim the server made must reach a dispatch, which then abandons it at
                    // once, rather than be left to wait out its lease.
                    job = await _board.ClaimNextAsync(Name, CancellationToken.None).ConfigureAwait(false);
                    if (job is null)
                        await _board.WaitForJobsAsync(_options.WaitTimeout, token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !token.IsCancellationRequested)
                {
                    Notifications.Publish(new BoardUnavailable(Name, ex, BoardRetryDelay));
                    await Task.Delay(BoardRetryDelay, token).ConfigureAwait(false);
                }
                finally
                {
                    if (job is null) slots.Release();
                }
                if (job is null) continue;

                Interlocked.Increment(ref _dispatched);
                Notifications.Publish(new JobClaimed(Name, job));
                dispatches.RemoveAll(t => t.IsCompleted);
                dispatches.Add(DispatchAndReleaseAsync(job, slots, token));
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Stopping: fall through and wait for the dispatches, which suspend and abandon on the same token.
        }
        finally
        {
            await Task.WhenAll(dispatches).ConfigureAwait(false);
            _stopped.TrySetResult();
        }
    }

    /// <summary>
    /// Asks the conductor to stop (running flows are suspended and their jobs abandoned) and waits until
    /// <see cref="RunAsync"/> has returned, or until <paramref name="cancellationToken"/> gives up waiting.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        // Synchronously, so the run loop's linked token is cancelled before this returns: no new claim after a stop.
        _stopping.Cancel();
        if (Volatile.Read(ref _started) == 0) return;
        await _stopped.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops the conductor (see <see cref="StopAsync"/>).</summary>
    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    /// <inheritdoc />
    public override string ToString() => $"Conductor {{ Name = {Name}, Board = {_board.Name} }}";

    private async Task DispatchAndReleaseAsync(Job job, SemaphoreSlim slots, CancellationToken token)
    {
        try
        {
            await Task.Yield();
            await DispatchAsync(job, token).ConfigureAwait(false);
        }
        finally
        {
            slots.Release();
        }
    }

    /// <summary>A job's factory arguments as the registry takes them: a JSON object's members by name, or null.</summary>
    /// <exception cref="FlowDefinitionException">The arguments are JSON but not an object; the job cannot run.</exception>
    private static IReadOnlyDictionary<string, System.Text.Json.JsonElement>? FactoryArgumentsOf(Job job) => job.FactoryArguments switch
    {
        null => null,
        { ValueKind: System.Text.Json.JsonValueKind.Null } => null,
        { ValueKind: System.Text.Json.JsonValueKind.Object } args => args.EnumerateObject().ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal),
        { } args => throw new FlowDefinitionException($"{job} has factory arguments of kind {args.ValueKind}; flow factories take a JSON object (arguments by name)."),
    };

    private async Task DispatchAsync(Job job, CancellationToken token)
    {
        // Losing the claim (a lease that ran out) suspends the run like a stop does, and stops its writes to the flow
        // detail: someone else may own the job now.
        var claimLost = _board.GetClaimLostToken(job, Name);
        if (job.ClaimCount < 1)
        {
            await FinishAsync(job, JobState.Unclaimed, "the board gave the claim no epoch",
                new InvalidOperationException($"{job}: board '{_board.Name}' returned the claim with ClaimCount {job.ClaimCount}; conductors fence their writes with the claim count, which must be 1 or more.")).ConfigureAwait(false);
            return;
        }
        // Fired by the first write the store refuses (a newer claim owns the run): it stops the whole run.
        using var refused = new CancellationTokenSource();
        ClaimFencedPersistence? persistence = null;
        FlowEngine engine;
        try
        {
            // Ownership first, then the read: whatever an earlier owner still writes after this is refused, and what it
            // wrote before is what we read.
            var owned = await _persistence.TakeOwnershipAsync(job.FlowDetailId, new FencingToken(Name, job.ClaimCount), token).ConfigureAwait(false);
            persistence = new ClaimFencedPersistence(owned, job, claimLost, refused);
            var stored = await persistence.GetFlowDetailAsync(job.FlowDetailId, token).ConfigureAwait(false);
            var flow = _flows.Create(job.FlowFactory, FactoryArgumentsOf(job));
            var engineOptions = new EngineOptions
            {
                Persistence = persistence,
                FlowDetailId = job.FlowDetailId,
                LogBookId = job.LogBookId,
                Store = job.Store.ToDictionary(p => p.Key, p => (object?)p.Value, StringComparer.Ordinal),
                MaxDegreeOfParallelism = _options.MaxDegreeOfParallelism,
            };
            engine = _options.Engine == ConductorEngine.Parallel
                ? FlowEngine.CreateParallel(flow, engineOptions)
                : FlowEngine.CreateSerial(flow, engineOptions);
            engine.Compile();

            // A previous owner finished the run but died before telling the board: act on the stored outcome instead
            // of running again (a REVERTED run would otherwise be reset and run from the start).
            if (stored?.State == FlowState.Success)
            {
                await FinishAsync(job, JobState.Complete, null, null).ConfigureAwait(false);
                return;
            }
            if (stored?.State is FlowState.Reverted or FlowState.Failure && _options.OnFlowFailure != FlowFailureAction.Abandon)
            {
                await OnFlowFailedAsync(job, new JobFailureException(
                    $"{job}: its flow detail {job.FlowDetailId} already ended {stored.State.ToString().ToUpperInvariant()} under an earlier owner.")).ConfigureAwait(false);
                return;
            }

            // Loads (or creates) the saved run and checks the flow against it and the store: a job that fails here
            // can never run, whatever conductor claims it.
            await engine.PrepareAsync(token).ConfigureAwait(false);
            engine.Validate();
        }
        catch (Exception ex) when (RefusalOf(ex, persistence) is { } stale)
        {
            await StopRefusedAsync(job, stale).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            await FinishAsync(job, JobState.Unclaimed, "the conductor is stopping", null).ConfigureAwait(false);
            return;
        }
        catch (PersistenceException ex)
        {
            await FinishAsync(job, JobState.Unclaimed, "its saved run could not be read or created", ex).ConfigureAwait(false);
            return;
        }
        catch (Exception ex)
        {
            // The job itself is unusable (unknown factory, a flow that does not compile or does not match its saved run,
            // inputs missing from the store): running it again cannot help.
            await FinishAsync(job, JobState.Trashed, null, ex).ConfigureAwait(false);
            return;
        }

        using var runToken = CancellationTokenSource.CreateLinkedTokenSource(token, claimLost, refused.Token);
        try
        {
            await engine.RunAsync(runToken.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (RefusalOf(ex, persistence) is { } stale)
        {
            await StopRefusedAsync(job, stale).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            await FinishAsync(job, JobState.Unclaimed, "the conductor is stopping; the flow was suspended", null).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (claimLost.IsCancellationRequested)
        {
            // The board refuses the abandon (the claim is gone) and says so through JobOperationFailed.
            await FinishAsync(job, JobState.Unclaimed, "the claim was lost; the flow was suspended", null).ConfigureAwait(false);
            return;
        }
        catch (Exception ex) when (ex is PersistenceException or JobFailureException)
        {
            // Not the flow's outcome but the infrastructure's (or a lost claim): the run is not over, let someone run it again.
            var reason = claimLost.IsCancellationRequested ? "the claim was lost; the flow was suspended" : "the run could not be saved";
            await FinishAsync(job, JobState.Unclaimed, reason, ex).ConfigureAwait(false);
            return;
        }
        catch (Exception ex)
        {
            await OnFlowFailedAsync(job, ex).ConfigureAwait(false);
            return;
        }
        if (persistence.Refusal is { } late)
        {
            await StopRefusedAsync(job, late).ConfigureAwait(false);
            return;
        }
        await FinishAsync(job, JobState.Complete, null, null).ConfigureAwait(false);
    }

    /// <summary>The store's refusal behind <paramref name="failure"/> (itself, or the first the job's persistence saw, however the engine wrapped it).</summary>
    private static StaleOwnerException? RefusalOf(Exception failure, ClaimFencedPersistence? persistence) =>
        failure as StaleOwnerException ?? persistence?.Refusal;

    /// <summary>A newer claim owns the run: say so, and hand the job back (the board refuses when the claim is gone, which is fine).</summary>
    private Task StopRefusedAsync(Job job, StaleOwnerException refusal)
    {
        Notifications.Publish(new JobWriteRefused(Name, job, refusal));
        return FinishAsync(job, JobState.Unclaimed,
            $"the store refused '{refusal.Operation}' at epoch {refusal.Token.Epoch}: {(refusal.Current is { } current ? $"{current} owns the run now" : "no owner is stored any more")}",
            refusal);
    }

    private Task OnFlowFailedAsync(Job job, Exception failure) => _options.OnFlowFailure switch
    {
        FlowFailureAction.Abandon => FinishAsync(job, JobState.Unclaimed, "its flow failed", failure),
        FlowFailureAction.Trash => FinishAsync(job, JobState.Trashed, null, failure),
        _ => FinishAsync(job, JobState.Complete, null, failure),
    };

    // Board calls here are not cancelled by stopping: a stopping conductor must still hand its jobs back.
    private async Task FinishAsync(Job job, JobState outcome, string? reason, Exception? failure)
    {
        var operation = outcome switch { JobState.Complete => "consume", JobState.Trashed => "trash", _ => "abandon" };
        try
        {
            switch (outcome)
            {
                case JobState.Complete:
                    await _board.ConsumeAsync(job, Name, CancellationToken.None).ConfigureAwait(false);
                    Notifications.Publish(new JobConsumed(Name, job, failure));
                    break;
                case JobState.Trashed:
                    await _board.TrashAsync(job, Name, CancellationToken.None).ConfigureAwait(false);
                    Notifications.Publish(new JobTrashed(Name, job, failure));
                    break;
                default:
                    await _board.AbandonAsync(job, Name, CancellationToken.None).ConfigureAwait(false);
                    Notifications.Publish(new JobAbandoned(Name, job, reason ?? "abandoned", failure));
                    break;
            }
        }
        catch (Exception ex)
        {
            // Most often the claim was lost (lease ran out) and another conductor owns the job now; otherwise the
            // board is unreachable and the lease will hand the job to someone else. Either way nothing more to do here.
            Notifications.Publish(new JobOperationFailed(Name, job, operation, ex));
        }
    }
}
