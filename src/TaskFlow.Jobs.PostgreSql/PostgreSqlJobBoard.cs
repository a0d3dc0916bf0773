using System.Collections.Concurrent;
using System.Data;
using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using TaskFlow.Failures;

namespace TaskFlow.Jobs.PostgreSql;

/// <summary>
/// A job board on PostgreSQL, shared by any number of hosts. Jobs are rows of one table; <see cref="ClaimNextAsync"/>
/// takes the first claimable row with <c>SELECT … FOR UPDATE SKIP LOCKED</c>, so concurrent claimers never wait on
/// each other. A claim carries a lease that this board renews on a heartbeat while it holds the claim; when the
/// process dies the lease runs out and the job is claimable again. A trigger sends <c>NOTIFY</c> whenever a job
/// becomes unclaimed, and <see cref="WaitForJobsAsync"/> sleeps on <c>LISTEN</c> (and on the next lease expiry) rather
/// than polling.
/// </summary>
/// <remarks>
/// Lease times come from the database server's clock, so hosts with skewed clocks agree. Create one board per process
/// and share it: it holds one listening connection and one heartbeat.
/// </remarks>
public sealed class PostgreSqlJobBoard : IJobBoard
{
    /// <summary>The schema version this code writes and the newest it reads.</summary>
    public const int SchemaVersion = 1;

    private const string Columns =
        "id, name, flow_factory, factory_arguments::text, store::text, logbook_id, flow_detail_id, priority, created_at, " +
        "CASE WHEN state = 'claimed' AND lease_expires_at <= now() THEN 'unclaimed' ELSE state END, owner, claim_count";

    private const string Claimable = "(state = 'unclaimed' OR (state = 'claimed' AND lease_expires_at <= now()))";

    private readonly PostgreSqlJobBoardOptions _options;
    private readonly NpgsqlDataSource _dataSource;
    private readonly string _q;
    private readonly string _channel;
    private readonly string _display;
    private readonly ConcurrentDictionary<Guid, HeldClaim> _heldClaims = new();
    private readonly CancellationTokenSource _disposing = new();
    private readonly Lock _gate = new();
    private Task? _schemaTask;
    private Task? _listenerLoop;
    private Task? _heartbeatLoop;
    private TaskCompletionSource _listening = NewSignal();
    private TaskCompletionSource _woken = NewSignal();
    private int _disposed;

    /// <summary>Creates a board; tables are created or upgraded on first use (or by <see cref="EnsureSchemaAsync"/>).</summary>
    /// <exception cref="ArgumentException">The options are invalid (the message never contains the password).</exception>
    public PostgreSqlJobBoard(PostgreSqlJobBoardOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(options.ConnectionString);
        }
        catch (ArgumentException ex)
        {
            // The provider's message names the keyword at fault, never the password's value.
            throw new ArgumentException($"The PostgreSQL connection string is invalid: {ex.Message}", nameof(options));
        }
        _options = options;
        _q = $"\"{options.Schema}\"";
        // One channel per schema (channel names are identifiers: at most 63 bytes); the payload names the board.
        _channel = ("taskflow_jobs_" + options.Schema)[..Math.Min(63, 14 + options.Schema.Length)];
        _display = $"PostgreSQL job board '{options.BoardName}' (schema '{options.Schema}' in database '{builder.Database}' on {builder.Host}:{builder.Port})";
        _dataSource = new NpgsqlDataSourceBuilder(options.ConnectionString).Build();
    }

    /// <inheritdoc />
    public string Name => _options.BoardName;

    /// <summary>The options (their <see cref="PostgreSqlJobBoardOptions.ToString"/> hides the password).</summary>
    public PostgreSqlJobBoardOptions Options => _options;

    /// <summary>
    /// Raised (on the heartbeat's thread) when renewing the leases failed; the heartbeat tries again on its next tick.
    /// For logging: the claims themselves are given up through <see cref="GetClaimLostToken"/> if renewals keep failing.
    /// </summary>
    public event Action<Exception>? HeartbeatFailed;

    /// <summary>How many claims this board instance is renewing right now.</summary>
    public int HeldClaimCount => _heldClaims.Count;

    /// <summary>
    /// Creates the schema and tables, or upgrades them, under an advisory lock so hosts may start together.
    /// </summary>
    /// <exception cref="JobFailureException">The tables were written by a newer version, or the server is unreachable.</exception>
    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default)
    {
        Task task;
        lock (_gate)
        {
            if (_schemaTask is null || _schemaTask.IsFaulted || _schemaTask.IsCanceled) _schemaTask = MigrateAsync();
            task = _schemaTask;
        }
        return task.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<Job> PostAsync(JobPosting posting, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(posting);
        var job = posting.ToJob(Guid.CreateVersion7(), DateTimeOffset.UtcNow);
        return await RunAsync("post a job", async connection =>
        {
            await using var cmd = Command(connection,
                $"""
                INSERT INTO {_q}.jobs (board, id, name, flow_factory, factory_arguments, store, logbook_id, flow_detail_id, priority, created_at, state, claim_count)
                VALUES (@board, @id, @name, @factory, CAST(@args AS jsonb), CAST(@store AS jsonb), @logbook, @flow, @priority, clock_timestamp(), 'unclaimed', 0)
                RETURNING {Columns}
                """);
            cmd.Parameters.AddWithValue("id", job.Id);
            cmd.Parameters.AddWithValue("name", job.Name);
            cmd.Parameters.AddWithValue("factory", job.FlowFactory);
            cmd.Parameters.Add(new NpgsqlParameter("args", NpgsqlDbType.Text) { Value = job.FactoryArguments is { } a ? a.GetRawText() : DBNull.Value });
            cmd.Parameters.AddWithValue("store", JsonSerializer.Serialize(job.Store));
            cmd.Parameters.AddWithValue("logbook", job.LogBookId);
            cmd.Parameters.AddWithValue("flow", job.FlowDetailId);
            cmd.Parameters.AddWithValue("priority", (int)job.Priority);
            return (await ReadJobsAsync(cmd, cancellationToken).ConfigureAwait(false))[0];
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<Job?> GetJobAsync(Guid jobId, CancellationToken cancellationToken = default) =>
        RunAsync("read a job", connection => FindAsync(connection, jobId, cancellationToken), cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<Job>> GetJobsAsync(JobState? state = null, CancellationToken cancellationToken = default) =>
        RunAsync("list jobs", async connection =>
        {
            var filter = state switch
            {
                null => "",
                JobState.Unclaimed => $" AND {Claimable}",
                JobState.Claimed => " AND state = 'claimed' AND lease_expires_at > now()",
                _ => $" AND state = '{StateText(state.Value)}'",
            };
            await using var cmd = Command(connection, $"SELECT {Columns} FROM {_q}.jobs WHERE board = @board{filter} ORDER BY priority DESC, created_at, seq");
            IReadOnlyList<Job> jobs = await ReadJobsAsync(cmd, cancellationToken).ConfigureAwait(false);
            return jobs;
        }, cancellationToken);

    /// <inheritdoc />
    public async Task<string?> FindOwnerAsync(Job job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        var current = await GetJobAsync(job.Id, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"{_display} has no job {job.Id} ('{job.Name}').");
        return current.State == JobState.Claimed ? current.Owner : null;
    }

    /// <inheritdoc />
    public async Task<Job> ClaimAsync(Job job, string owner, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        JobBoardArguments.ValidateOwner(owner);
        var sentAt = Stopwatch.GetTimestamp();
        var claimed = await RunAsync("claim a job", async connection =>
        {
            await using var cmd = Command(connection,
                $"""
                UPDATE {_q}.jobs SET state = 'claimed', owner = @owner, lease_expires_at = now() + @lease, claim_count = claim_count + 1
                WHERE board = @board AND id = @id AND {Claimable}
                RETURNING {Columns}
                """);
            cmd.Parameters.AddWithValue("owner", owner);
            cmd.Parameters.AddWithValue("lease", _options.LeaseDuration);
            cmd.Parameters.AddWithValue("id", job.Id);
            var rows = await ReadJobsAsync(cmd, cancellationToken).ConfigureAwait(false);
            return rows.Count == 1 ? rows[0] : null;
        }, cancellationToken).ConfigureAwait(false);
        if (claimed is not null) return Hold(claimed, sentAt);

        var current = await GetJobAsync(job.Id, cancellationToken).ConfigureAwait(false);
        throw current?.State switch
        {
            null => new NotFoundException($"{_display} has no job {job.Id} ('{job.Name}') to claim."),
            JobState.Claimed => new UnclaimableJobException($"Job '{job.Name}' ({job.Id}) on {_display} is already claimed by '{current.Owner}'."),
            JobState.Unclaimed => new UnclaimableJobException($"Job '{job.Name}' ({job.Id}) on {_display} was being claimed by someone else at the same moment."),
            _ => new NotFoundException($"Job '{job.Name}' ({job.Id}) on {_display} is {StateText(current.State)}; it cannot be claimed."),
        };
    }

    /// <inheritdoc />
    public async Task<Job?> ClaimNextAsync(string owner, CancellationToken cancellationToken = default)
    {
        JobBoardArguments.ValidateOwner(owner);
        var sentAt = Stopwatch.GetTimestamp();
        var claimed = await RunAsync("claim the next job", async connection =>
        {
            // SKIP LOCKED: a row another claimer is taking right now is passed over, not waited for.
            await using var cmd = Command(connection,
                $"""
                UPDATE {_q}.jobs AS j SET state = 'claimed', owner = @owner, lease_expires_at = now() + @lease, claim_count = j.claim_count + 1
                FROM (SELECT id AS next_id FROM {_q}.jobs WHERE board = @board AND {Claimable}
                      ORDER BY priority DESC, created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED) AS next
                WHERE j.id = next.next_id
                RETURNING {Columns}
                """);
            cmd.Parameters.AddWithValue("owner", owner);
            cmd.Parameters.AddWithValue("lease", _options.LeaseDuration);
            var rows = await ReadJobsAsync(cmd, cancellationToken).ConfigureAwait(false);
            return rows.Count == 1 ? rows[0] : null;
        }, cancellationToken).ConfigureAwait(false);
        return claimed is null ? null : Hold(claimed, sentAt);
    }

    /// <inheritdoc />
    public Task ConsumeAsync(Job job, string owner, CancellationToken cancellationToken = default) =>
        FinishAsync(job, owner, "consume", JobState.Complete, cancellationToken);

    /// <inheritdoc />
    public Task AbandonAsync(Job job, string owner, CancellationToken cancellationToken = default) =>
        FinishAsync(job, owner, "abandon", JobState.Unclaimed, cancellationToken);

    /// <inheritdoc />
    public Task TrashAsync(Job job, string owner, CancellationToken cancellationToken = default) =>
        FinishAsync(job, owner, "trash", JobState.Trashed, cancellationToken);

    /// <inheritdoc />
    public async Task<bool> WaitForJobsAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        JobBoardArguments.ValidateTimeout(timeout);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        var started = TimeProvider.System.GetTimestamp();
        TimeSpan Remaining() => timeout == Timeout.InfiniteTimeSpan ? Timeout.InfiniteTimeSpan : timeout - TimeProvider.System.GetElapsedTime(started);

        await ListeningAsync(timeout, cancellationToken).ConfigureAwait(false);
        while (true)
        {
            // Take the wake-up signal before looking, so a NOTIFY that lands between the look and the sleep still wakes us.
            var woken = Volatile.Read(ref _woken).Task;
            var (claimable, nextExpiry) = await RunAsync("look for claimable jobs", async connection =>
            {
                await using var cmd = Command(connection,
                    $"""
                    SELECT EXISTS (SELECT 1 FROM {_q}.jobs WHERE board = @board AND {Claimable}),
                           (SELECT min(lease_expires_at) - now() FROM {_q}.jobs WHERE board = @board AND state = 'claimed' AND lease_expires_at > now())
                    """);
                await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return (reader.GetBoolean(0), reader.IsDBNull(1) ? (TimeSpan?)null : reader.GetFieldValue<TimeSpan>(1));
            }, cancellationToken).ConfigureAwait(false);
            if (claimable) return true;

            var remaining = Remaining();
            if (remaining != Timeout.InfiniteTimeSpan && remaining <= TimeSpan.Zero) return false;
            // A claim whose lease runs out makes its job claimable without any NOTIFY: wake up for that too.
            var sleep = nextExpiry is { } expiry ? expiry + TimeSpan.FromMilliseconds(5) : Timeout.InfiniteTimeSpan;
            if (remaining != Timeout.InfiniteTimeSpan && (sleep == Timeout.InfiniteTimeSpan || remaining < sleep)) sleep = remaining;
            try
            {
                await woken.WaitAsync(sleep, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Look again: either a lease ran out or the caller's time is up (checked on the next pass).
            }
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        }
    }

    /// <summary>
    /// Stops the heartbeat and the listener and closes the connections. Claims still held are not released: their
    /// leases run out (abandon them first for an orderly hand-over).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        await _disposing.CancelAsync().ConfigureAwait(false);
        Task[] loops;
        // The schema task too: a migration still running after disposal could recreate tables someone just dropped.
        lock (_gate) loops = new[] { _listenerLoop, _heartbeatLoop, _schemaTask }.OfType<Task>().ToArray();
        try
        {
            await Task.WhenAll(loops).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Cancelled by the disposal, or failed earlier and already reported to whoever waited for it.
        }
        _woken.TrySetResult();
        await _dataSource.DisposeAsync().ConfigureAwait(false);
        _disposing.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"PostgreSqlJobBoard {{ {_display} }}";

    // ------------------------------------------------------------------ claims held by this instance

    private Job Hold(Job claimed, long sentAt)
    {
        var claim = HeldClaim.Create(claimed.Owner!, claimed.ClaimCount);
        ExtendLocalLease(claim, sentAt);
        _heldClaims[claimed.Id] = claim;
        lock (_gate)
        {
            if (_heartbeatLoop is null && Volatile.Read(ref _disposed) == 0)
                _heartbeatLoop = Task.Run(HeartbeatLoopAsync);
        }
        return claimed;
    }

    /// <inheritdoc />
    public CancellationToken GetClaimLostToken(Job job, string owner)
    {
        ArgumentNullException.ThrowIfNull(job);
        var epoch = JobBoardArguments.ClaimEpoch(job, owner);
        return _heldClaims.TryGetValue(job.Id, out var claim) && claim.Owner == owner && (epoch == 0 || claim.Epoch == epoch)
            ? claim.Lost.Token
            : new CancellationToken(canceled: true);
    }

    // epoch 0: whichever claim of the owner this instance holds; otherwise only that claim (a later claim stays held).
    private void Release(Guid jobId, string owner, int epoch, bool lost)
    {
        if (!_heldClaims.TryGetValue(jobId, out var claim) || claim.Owner != owner || (epoch != 0 && claim.Epoch != epoch) ||
            !_heldClaims.TryRemove(new KeyValuePair<Guid, HeldClaim>(jobId, claim))) return;
        claim.Deadline.Dispose(); // finished (or lost): the local lease timer has nothing left to say
        if (lost) claim.Lost.Cancel();

    }

    /// <summary>
    /// Arms the claim's lost token to fire when the lease may have run out as far as this process can tell: the lease
    /// counted from before the claim or renewal was sent (the server's count starts later), less a tenth for clocks
    /// that tick at slightly different rates. So the holder gives up before anyone else can claim the job.
    /// </summary>
    private void ExtendLocalLease(HeldClaim claim, long sentAt)
    {
        var left = _options.LeaseDuration - _options.LeaseDuration / 10 - Stopwatch.GetElapsedTime(sentAt);
        if (left > TimeSpan.Zero) claim.Deadline.Change(left, Timeout.InfiniteTimeSpan);
        else claim.Lost.Cancel();
    }

    private sealed record HeldClaim(string Owner, int Epoch, CancellationTokenSource Lost, Timer Deadline)
    {
        public static HeldClaim Create(string owner, int epoch)
        {
            var lost = new CancellationTokenSource();
            // A timer of its own, re-armed by every renewal: fires the lost token when the local lease runs out.
            var deadline = new Timer(static state => ((CancellationTokenSource)state!).Cancel(), lost, Timeout.Infinite, Timeout.Infinite);
            return new HeldClaim(owner, epoch, lost, deadline);
        }
    }

    private async Task HeartbeatLoopAsync()
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval);
        var token = _disposing.Token;
        try
        {
            while (await timer.WaitForNextTickAsync(token).ConfigureAwait(false))
            {
                // A claim whose local lease ran out is given up, not renewed: its holder has stopped (or is stopping)
                // work on it, and someone else may take it once the server's lease runs out too.
                var held = _heldClaims.Where(h => !h.Value.Lost.IsCancellationRequested).ToArray();
                if (held.Length == 0) continue;
                var sentAt = Stopwatch.GetTimestamp();
                try
                {
                    var renewed = await RunAsync("renew claim leases", async connection =>
                    {
                        await using var cmd = Command(connection,
                            $"""
                            UPDATE {_q}.jobs AS j SET lease_expires_at = now() + @lease
                            FROM unnest(@ids, @owners, @epochs) AS c(id, owner, epoch)
                            WHERE j.board = @board AND j.id = c.id AND j.owner = c.owner AND j.claim_count = c.epoch
                              AND j.state = 'claimed' AND j.lease_expires_at > now()
                            RETURNING j.id
                            """);
                        cmd.Parameters.AddWithValue("lease", _options.LeaseDuration);
                        cmd.Parameters.AddWithValue("ids", held.Select(h => h.Key).ToArray());
                        cmd.Parameters.AddWithValue("owners", held.Select(h => h.Value.Owner).ToArray());
                        // A claim is renewed only as the very claim it was: the same owner name claiming the job again
                        // elsewhere (a restarted process) is a newer epoch this heartbeat must not keep alive.
                        cmd.Parameters.AddWithValue("epochs", held.Select(h => h.Value.Epoch).ToArray());
                        var ids = new HashSet<Guid>();
                        await using var reader = await cmd.ExecuteReaderAsync(token).ConfigureAwait(false);
                        while (await reader.ReadAsync(token).ConfigureAwait(false)) ids.Add(reader.GetGuid(0));
                        return ids;
                    }, token).ConfigureAwait(false);
                    // Claims not renewed are gone (finished meanwhile, or lost to an expired lease): stop renewing them.
                    foreach (var (id, claim) in held)
                    {
                        if (renewed.Contains(id)) ExtendLocalLease(claim, sentAt);
                        else if (_heldClaims.TryRemove(new KeyValuePair<Guid, HeldClaim>(id, claim)))
                        {
                            await claim.Deadline.DisposeAsync().ConfigureAwait(false);
                            await claim.Lost.CancelAsync().ConfigureAwait(false);
                        }
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !token.IsCancellationRequested)
                {
                    // Most often the server is unreachable: try again on the next tick; if it stays away the leases run
                    // out (and the local lease fires first), the right outcome for a host that cannot reach the board.
                    try
                    {
                        HeartbeatFailed?.Invoke(ex);
                    }
                    catch
                    {
                        // A failing observer must not stop the heartbeat.
                    }
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }

    private async Task FinishAsync(Job job, string owner, string operation, JobState newState, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(job);
        JobBoardArguments.ValidateOwner(owner);
        var epoch = JobBoardArguments.ClaimEpoch(job, owner);
        var changed = await RunAsync($"{operation} a job", async connection =>
        {
            // The claim's epoch in the same statement: a snapshot of an earlier claim cannot finish a later one.
            await using var cmd = Command(connection,
                $"""
                UPDATE {_q}.jobs SET state = @state,
                    owner = CASE WHEN @state = 'unclaimed' THEN NULL ELSE owner END,
                    lease_expires_at = NULL,
                    finished_at = CASE WHEN @state = 'unclaimed' THEN NULL ELSE clock_timestamp() END
                WHERE board = @board AND id = @id AND state = 'claimed' AND owner = @owner AND lease_expires_at > now()
                  AND (@epoch = 0 OR claim_count = @epoch)
                """);
            cmd.Parameters.AddWithValue("state", StateText(newState));
            cmd.Parameters.AddWithValue("id", job.Id);
            cmd.Parameters.AddWithValue("owner", owner);
            cmd.Parameters.AddWithValue("epoch", epoch);
            return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
        }, cancellationToken).ConfigureAwait(false);
        if (changed)
        {
            Release(job.Id, owner, epoch, lost: false);
            return;
        }

        var (state, holder, count) = await RunAsync("read a job", async connection =>
        {
            await using var cmd = Command(connection, $"SELECT state, owner, lease_expires_at <= now(), claim_count FROM {_q}.jobs WHERE board = @board AND id = @id");
            cmd.Parameters.AddWithValue("id", job.Id);
            await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false)) return ((JobState?)null, (string?)null, 0);
            var stored = ParseState(reader.GetString(0));
            var expired = !reader.IsDBNull(2) && reader.GetBoolean(2);
            return (stored == JobState.Claimed && expired ? JobState.Unclaimed : stored, reader.IsDBNull(1) ? null : reader.GetString(1), reader.GetInt32(3));
        }, cancellationToken).ConfigureAwait(false);
        Release(job.Id, owner, epoch, lost: state != JobState.Claimed || holder != owner || (epoch != 0 && count != epoch));
        if (state is not null && epoch != 0 && count != epoch)
            throw JobBoardArguments.Superseded(_display, job, operation, owner, epoch, count, state == JobState.Claimed ? holder : null);
        throw JobBoardArguments.NotOwned(_display, job, operation, owner, state, holder);
    }

    // ------------------------------------------------------------------ LISTEN

    private Task ListeningAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        Task listening;
        lock (_gate)
        {
            _listenerLoop ??= Task.Run(ListenerLoopAsync);
            listening = _listening.Task;
        }
        return timeout == Timeout.InfiniteTimeSpan
            ? listening.WaitAsync(cancellationToken)
            : WaitListeningAsync(listening, timeout, cancellationToken);
    }

    private async Task WaitListeningAsync(Task listening, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await listening.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Still connecting: the look below works without it, and the timeout bounds the wait.
        }
    }

    private async Task ListenerLoopAsync()
    {
        var token = _disposing.Token;
        while (!token.IsCancellationRequested)
        {
            try
            {
                await EnsureSchemaAsync(token).ConfigureAwait(false);
                await using var connection = await _dataSource.OpenConnectionAsync(token).ConfigureAwait(false);
                connection.Notification += (_, e) =>
                {
                    if (e.Payload == _options.BoardName) Wake();
                };
                await using (var listen = new NpgsqlCommand($"LISTEN \"{_channel}\"", connection))
                    await listen.ExecuteNonQueryAsync(token).ConfigureAwait(false);
                lock (_gate) _listening.TrySetResult();
                // Notifications sent while we were not listening are lost: have every waiter look again.
                Wake();
                while (true) await connection.WaitAsync(token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                lock (_gate)
                {
                    _listening.TrySetException(new JobFailureException($"{_display}: could not listen for new jobs: {ex.Message}", ex));
                    _listening = NewSignal();
                }
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private void Wake() => Interlocked.Exchange(ref _woken, NewSignal()).TrySetResult();

    // ------------------------------------------------------------------ plumbing

    private async Task<T> RunAsync<T>(string operation, Func<NpgsqlConnection, Task<T>> body, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        await EnsureSchemaAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            return await body(connection).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
        {
            throw new JobFailureException($"{_display}: could not {operation}: {ex.Message}", ex);
        }
    }

    private NpgsqlCommand Command(NpgsqlConnection connection, string sql)
    {
        var cmd = new NpgsqlCommand(sql, connection);
        cmd.Parameters.AddWithValue("board", _options.BoardName);
        return cmd;
    }

    private async Task<Job?> FindAsync(NpgsqlConnection connection, Guid jobId, CancellationToken cancellationToken)
    {
        await using var cmd = Command(connection, $"SELECT {Columns} FROM {_q}.jobs WHERE board = @board AND id = @id");
        cmd.Parameters.AddWithValue("id", jobId);
        var rows = await ReadJobsAsync(cmd, cancellationToken).ConfigureAwait(false);
        return rows.Count == 1 ? rows[0] : null;
    }

    private async Task<List<Job>> ReadJobsAsync(NpgsqlCommand cmd, CancellationToken cancellationToken)
    {
        var jobs = new List<Job>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var id = reader.GetGuid(0);
            try
            {
                var state = ParseState(reader.GetString(9));
                jobs.Add(new Job
                {
                    Id = id,
                    Name = reader.GetString(1),
                    FlowFactory = reader.GetString(2),
                    FactoryArguments = reader.IsDBNull(3) ? null : ParseJson(reader.GetString(3)),
                    Store = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(reader.GetString(4))
                        ?? throw new JsonException("the store is the JSON null, not an object"),
                    LogBookId = reader.GetGuid(5),
                    FlowDetailId = reader.GetGuid(6),
                    Priority = (JobPriority)reader.GetInt32(7),
                    CreatedAt = reader.GetFieldValue<DateTimeOffset>(8),
                    State = state,
                    Owner = state == JobState.Unclaimed || reader.IsDBNull(10) ? null : reader.GetString(10),
                    ClaimCount = reader.GetInt32(11),
                });
            }
            catch (Exception ex) when (ex is JsonException or ArgumentException or InvalidDataException)
            {
                throw new JobFailureException($"{_display}: job {id} is stored in an unreadable form: {ex.Message}", ex);
            }
        }
        return jobs;
    }

    private static JsonElement ParseJson(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    private static string StateText(JobState state) => state switch
    {
        JobState.Unclaimed => "unclaimed",
        JobState.Claimed => "claimed",
        JobState.Complete => "complete",
        JobState.Trashed => "trashed",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "Unknown job state."),
    };

    private static JobState ParseState(string text) => text switch
    {
        "unclaimed" => JobState.Unclaimed,
        "claimed" => JobState.Claimed,
        "complete" => JobState.Complete,
        "trashed" => JobState.Trashed,
        _ => throw new InvalidDataException($"unknown job state '{text}'"),
    };

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    // ------------------------------------------------------------------ schema

    private string[] Migrations =>
    [
        // Version 1.
        $"""
        CREATE TABLE {_q}.jobs (
            board text NOT NULL,
            id uuid NOT NULL PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            name text NOT NULL,
            flow_factory text NOT NULL,
            factory_arguments jsonb NULL,
            store jsonb NOT NULL,
            logbook_id uuid NOT NULL,
            flow_detail_id uuid NOT NULL,
            priority int NOT NULL,
            created_at timestamptz NOT NULL,
            state text NOT NULL CHECK (state IN ('unclaimed', 'claimed', 'complete', 'trashed')),
            owner text NULL,
            lease_expires_at timestamptz NULL,
            claim_count int NOT NULL,
            finished_at timestamptz NULL,
            CHECK (state <> 'claimed' OR (owner IS NOT NULL AND lease_expires_at IS NOT NULL)));
        CREATE INDEX ix_jobs_claimable ON {_q}.jobs (board, priority DESC, created_at, seq) WHERE state IN ('unclaimed', 'claimed');
        CREATE INDEX ix_jobs_board_state ON {_q}.jobs (board, state);
        CREATE FUNCTION {_q}.jobs_notify_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{_channel}', NEW.board);
            RETURN NULL;
        END $$;
        CREATE TRIGGER jobs_claimable AFTER INSERT OR UPDATE OF state ON {_q}.jobs
            FOR EACH ROW WHEN (NEW.state = 'unclaimed') EXECUTE FUNCTION {_q}.jobs_notify_claimable();
        """,
    ];

    private async Task MigrateAsync()
    {
        var token = _disposing.Token;
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(token).ConfigureAwait(false);
            await using var tx = await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, token).ConfigureAwait(false);
            async Task ExecuteAsync(string sql, params (string Name, object Value)[] parameters)
            {
                await using var cmd = new NpgsqlCommand(sql, connection, tx);
                foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
                await cmd.ExecuteNonQueryAsync(token).ConfigureAwait(false);
            }
            // Hosts starting together: one migrates, the others wait and then see the result.
            await ExecuteAsync("SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))", ("key", "taskflow.jobs." + _options.Schema)).ConfigureAwait(false);
            await ExecuteAsync(
                $"CREATE SCHEMA IF NOT EXISTS {_q}; " +
                $"CREATE TABLE IF NOT EXISTS {_q}.jobs_schema_version (id int NOT NULL PRIMARY KEY CHECK (id = 1), version int NOT NULL)").ConfigureAwait(false);
            int version;
            await using (var read = new NpgsqlCommand($"SELECT version FROM {_q}.jobs_schema_version WHERE id = 1", connection, tx))
                version = await read.ExecuteScalarAsync(token).ConfigureAwait(false) is int v ? v : 0;
            if (version > SchemaVersion)
                throw new JobFailureException(
                    $"{_display}: the tables have schema version {version}, but this version of TaskFlow.Jobs.PostgreSql supports versions up to {SchemaVersion}. " +
                    "They were written by a newer TaskFlow; upgrade TaskFlow.Jobs.PostgreSql on this host. Nothing was changed.");
            for (var next = version + 1; next <= SchemaVersion; next++)
                await ExecuteAsync(Migrations[next - 1]).ConfigureAwait(false);
            if (version != SchemaVersion)
                await ExecuteAsync(
                    $"INSERT INTO {_q}.jobs_schema_version (id, version) VALUES (1, @v) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    ("v", SchemaVersion)).ConfigureAwait(false);
            await tx.CommitAsync(token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !token.IsCancellationRequested)
        {
            throw new JobFailureException($"{_display}: could not create or upgrade the job board tables: {ex.Message}", ex);
        }
    }
}
