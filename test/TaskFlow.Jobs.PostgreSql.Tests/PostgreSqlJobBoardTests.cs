using System.Diagnostics;
using TaskFlow.Failures;
using TaskFlow.TestUtilities;

namespace TaskFlow.Jobs.PostgreSql.Tests;

public sealed class PostgreSqlJobBoardTests : JobBoardContract
{
    private readonly string _schema = PostgresTestServer.NewSchemaName();
    private string? _connectionString;

    private PostgreSqlJobBoard Open(TimeSpan? lease = null, TimeSpan? heartbeat = null, string board = "tests") => new(new PostgreSqlJobBoardOptions
    {
        ConnectionString = _connectionString!,
        Schema = _schema,
        BoardName = board,
        LeaseDuration = lease ?? TimeSpan.FromSeconds(30),
        HeartbeatInterval = heartbeat ?? TimeSpan.FromSeconds(10),
    });

    protected override Task<IJobBoard?> CreateBoardAsync()
    {
        _connectionString = PostgresTestServer.ConnectionString;
        return Task.FromResult(_connectionString is null ? null : (IJobBoard?)Open());
    }

    protected override Task<IJobBoard> OpenSameBoardAsync() => Task.FromResult<IJobBoard>(Open());

    protected override Task DestroyStoreAsync() =>
        _connectionString is null ? Task.CompletedTask : PostgresTestServer.DropSchemaAsync(_connectionString, _schema);

    // ------------------------------------------------------------------ leases

    [Fact]
    public Task ClaimOfADeadHost_BecomesClaimableAfterTheLease_AndTheOldOwnerCanNoLongerFinishIt() => RunAsync(async _ =>
    {
        var lease = TimeSpan.FromMilliseconds(1200);
        var dead = Open(lease, TimeSpan.FromMilliseconds(300));
        var job = await dead.PostAsync(Posting());
        var claimed = await dead.ClaimNextAsync("host-a");
        Assert.Equal(job.Id, claimed!.Id);
        await dead.DisposeAsync(); // the process dies: no more heartbeats
        await using var alive = Open(lease, TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAsync<UnclaimableJobException>(() => alive.ClaimAsync(job, "host-b"));
        Assert.Null(await alive.ClaimNextAsync("host-b"));
        await Task.Delay(lease + TimeSpan.FromMilliseconds(300));
        Assert.Equal(JobState.Unclaimed, (await alive.GetJobAsync(job.Id))!.State);
        Assert.Null(await alive.FindOwnerAsync(job));
        var reclaimed = await alive.ClaimNextAsync("host-b");

        Assert.Equal(job.Id, reclaimed!.Id);
        Assert.Equal(2, reclaimed.ClaimCount);
        await using var restartedA = Open(lease, TimeSpan.FromMilliseconds(300));
        var consume = await Assert.ThrowsAsync<JobFailureException>(() => restartedA.ConsumeAsync(job, "host-a"));
        Assert.Contains("host-b", consume.Message);
        await Assert.ThrowsAsync<JobFailureException>(() => restartedA.AbandonAsync(job, "host-a"));
        await alive.ConsumeAsync(reclaimed, "host-b");
    });

    [Fact]
    public Task ExpiredClaimNobodyTookYet_CannotBeFinishedByItsOldOwner() => RunAsync(async _ =>
    {
        var lease = TimeSpan.FromMilliseconds(800);
        var dead = Open(lease, TimeSpan.FromMilliseconds(200));
        var job = await dead.ClaimAsync(await dead.PostAsync(Posting()), "host-a");
        await dead.DisposeAsync();
        await Task.Delay(lease + TimeSpan.FromMilliseconds(300));
        await using var restarted = Open(lease, TimeSpan.FromMilliseconds(200));

        var ex = await Assert.ThrowsAsync<JobFailureException>(() => restarted.ConsumeAsync(job, "host-a"));

        Assert.Contains("lease", ex.Message);
        Assert.Equal(JobState.Unclaimed, (await restarted.GetJobAsync(job.Id))!.State);
    });

    [Fact]
    public Task ClaimHeldLongerThanTheLease_IsKeptAliveByTheHeartbeat() => RunAsync(async _ =>
    {
        // The local lease is 0.9 of the lease from when a renewal was sent: a 1 s lease left a renewal 0.65 s to come
        // back, which a loaded 2-core machine running the whole suite missed once. 2 s leaves 1.6 s.
        var lease = TimeSpan.FromMilliseconds(2000);
        await using var holder = Open(lease, TimeSpan.FromMilliseconds(200));
        await using var other = Open(lease, TimeSpan.FromMilliseconds(200));
        var job = await holder.ClaimAsync(await holder.PostAsync(Posting()), "host-a");
        var lost = holder.GetClaimLostToken(job, "host-a");
        var failures = new List<Exception>();
        holder.HeartbeatFailed += failures.Add;

        await Task.Delay(lease * 2.5);

        Assert.Empty(failures);

        Assert.False(lost.IsCancellationRequested, "the local lease ran out although the heartbeat renewed the claim");
        Assert.Equal(1, holder.HeldClaimCount);
        Assert.Null(await other.ClaimNextAsync("host-b"));
        Assert.Equal("host-a", await other.FindOwnerAsync(job));
        await holder.ConsumeAsync(job, "host-a");
        Assert.Equal(0, holder.HeldClaimCount);
    });

    [Fact]
    public Task WaitForJobsAsync_ClaimOfADeadHost_WakesWhenTheLeaseRunsOut() => RunAsync(async _ =>
    {
        var lease = TimeSpan.FromMilliseconds(1500);
        var dead = Open(lease, TimeSpan.FromMilliseconds(300));
        await dead.ClaimAsync(await dead.PostAsync(Posting()), "host-a");
        await dead.DisposeAsync();
        await using var waiter = Open(lease, TimeSpan.FromMilliseconds(300));
        var clock = Stopwatch.StartNew();

        Assert.True(await waiter.WaitForJobsAsync(TimeSpan.FromSeconds(30)));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"woke after {clock.Elapsed}");
        Assert.NotNull(await waiter.ClaimNextAsync("host-b"));
    });

    [Fact]
    public Task GetClaimLostToken_LeaseRanOutBeforeTheHeartbeat_IsCancelledByTheNextHeartbeat() => RunAsync(async _ =>
    {
        await using var holder = Open(TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(200));
        var job = await holder.ClaimAsync(await holder.PostAsync(Posting()), "host-a");
        var lost = holder.GetClaimLostToken(job, "host-a");
        await Task.Delay(500);
        Assert.False(lost.IsCancellationRequested);

        // As if the host stalled past its lease: the heartbeat must notice and give the claim up.
        await PostgresTestServer.ExecuteAsync(_connectionString!, $"UPDATE \"{_schema}\".jobs SET lease_expires_at = now() - interval '1 second'");

        await Task.Delay(TimeSpan.FromSeconds(5), lost).ContinueWith(_ => { });
        Assert.True(lost.IsCancellationRequested);
        Assert.Equal(0, holder.HeldClaimCount);
        await Assert.ThrowsAsync<JobFailureException>(() => holder.ConsumeAsync(job, "host-a"));
    });

    [Fact]
    public Task GetClaimLostToken_NoRenewal_FiresBeforeTheServerCouldHandTheJobToAnyoneElse() => RunAsync(async _ =>
    {
        var lease = TimeSpan.FromSeconds(2);
        var holder = Open(lease, TimeSpan.FromMilliseconds(500));
        var job = await holder.PostAsync(Posting());
        var clock = Stopwatch.StartNew();
        var claimed = await holder.ClaimAsync(job, "host-a");
        var lost = holder.GetClaimLostToken(claimed, "host-a");
        await holder.DisposeAsync(); // no heartbeat will renew it

        await Task.Delay(TimeSpan.FromSeconds(10), lost).ContinueWith(_ => { });

        Assert.True(lost.IsCancellationRequested);
        // Armed for nine tenths of the lease, counted from before the claim was sent: never later than the server.
        Assert.InRange(clock.Elapsed, lease * 0.9 - TimeSpan.FromMilliseconds(50), lease * 3);
    });

    // ------------------------------------------------------------------ boards, schema

    [Fact]
    public Task BoardsSharingASchema_SeeOnlyTheirOwnJobs() => RunAsync(async board =>
    {
        await using var other = Open(board: "other");
        await board.PostAsync(Posting("mine"));
        await other.PostAsync(Posting("theirs"));

        Assert.Equal(["mine"], (await board.GetJobsAsync()).Select(j => j.Name));
        Assert.Equal("theirs", (await other.ClaimNextAsync("x"))!.Name);
        Assert.Null(await other.ClaimNextAsync("x"));
    });

    [Fact]
    public Task EnsureSchemaAsync_TablesFromANewerVersion_AreRefusedWithAClearMessage() => RunAsync(async board =>
    {
        await ((PostgreSqlJobBoard)board).EnsureSchemaAsync();
        await PostgresTestServer.ExecuteAsync(_connectionString!, $"UPDATE \"{_schema}\".jobs_schema_version SET version = @v", ("v", PostgreSqlJobBoard.SchemaVersion + 1));
        await using var newer = Open();

        var ex = await Assert.ThrowsAsync<JobFailureException>(() => newer.GetJobsAsync());

        Assert.Contains($"schema version {PostgreSqlJobBoard.SchemaVersion + 1}", ex.Message);
        Assert.Contains("upgrade TaskFlow.Jobs.PostgreSql", ex.Message);
        Assert.Contains(_schema, ex.Message);
    });

    [Fact]
    public Task EnsureSchemaAsync_ManyHostsAtOnce_CreateTheTablesOnce() => RunAsync(async _ =>
    {
        var boards = Enumerable.Range(0, 5).Select(_ => Open()).ToArray();
        try
        {
            await Task.WhenAll(boards.Select(b => b.EnsureSchemaAsync()));
            Assert.Empty(await boards[0].GetJobsAsync());
        }
        finally
        {
            foreach (var b in boards) await b.DisposeAsync();
        }
    });
}

/// <summary>Tests that need no server, or deliberately a wrong one.</summary>
public sealed class PostgreSqlJobBoardOptionsTests
{
    [Fact]
    public async Task ToString_NeverShowsThePassword()
    {
        var options = new PostgreSqlJobBoardOptions { ConnectionString = "Host=db;Username=app;Password=s3cr3t-pw;Database=app" };
        await using var board = new PostgreSqlJobBoard(options);

        Assert.DoesNotContain("s3cr3t-pw", options.ToString());
        Assert.Contains("Host=db", options.ToString());
        Assert.DoesNotContain("s3cr3t-pw", board.ToString());
    }

    [Theory]
    [InlineData("Public")]
    [InlineData("x; DROP TABLE y")]
    [InlineData("")]
    public void Constructor_UnsafeSchemaName_IsRefused(string schema)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions { ConnectionString = "Host=db", Schema = schema }));
        Assert.Contains("schema name", ex.Message);
    }

    [Fact]
    public void Constructor_HeartbeatNotShorterThanTheLease_IsRefused()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions
        {
            ConnectionString = "Host=db",
            LeaseDuration = TimeSpan.FromSeconds(5),
            HeartbeatInterval = TimeSpan.FromSeconds(5),
        }));
        Assert.Contains("HeartbeatInterval", ex.Message);
    }

    [Fact]
    public void Constructor_BrokenConnectionString_IsRefusedWithoutThePassword()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions { ConnectionString = "Host=db;Password=s3cr3t-pw;Bogus Keyword=1" }));
        Assert.DoesNotContain("s3cr3t-pw", ex.ToString());
    }

    [Fact]
    public async Task UnreachableServer_FailsWithJobFailureWithoutThePassword()
    {
        // Port 9 (discard) on loopback: nothing listens there.
        await using var board = new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions
        {
            ConnectionString = "Host=127.0.0.1;Port=9;Username=app;Password=s3cr3t-pw;Database=app;Timeout=2",
        });

        var ex = await Assert.ThrowsAsync<JobFailureException>(() => board.ClaimNextAsync("me"));
        var wait = await Assert.ThrowsAsync<JobFailureException>(() => board.WaitForJobsAsync(TimeSpan.FromSeconds(5)));

        foreach (var e in new Exception[] { ex, wait })
            for (Exception? inner = e; inner is not null; inner = inner.InnerException)
                Assert.DoesNotContain("s3cr3t-pw", inner.ToString());
        Assert.Contains("127.0.0.1:9", ex.Message);
    }
}
