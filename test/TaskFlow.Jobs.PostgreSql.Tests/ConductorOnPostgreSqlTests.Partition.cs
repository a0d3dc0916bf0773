using System.Collections.Concurrent;
using TaskFlow.Atoms;
using TaskFlow.Conductors;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.States;
using TaskFlow.TestUtilities;

namespace TaskFlow.Jobs.PostgreSql.Tests;

/// <summary>
/// The review's finding 2, reproduced on real PostgreSQL: conductor A's connections (board and persistence) go through a
/// TCP proxy that partitions them just as A sends a save; A's lease runs out, B claims the job, resumes it, finishes and
/// consumes it; then the partition heals and A's buffered save reaches the server. The fence must refuse it.
/// </summary>
public sealed partial class ConductorOnPostgreSqlTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan PartitionPatience = TimeSpan.FromSeconds(45);

    private T Keep<T>(T disposable) where T : IAsyncDisposable
    {
        _disposables.Add(disposable);
        return disposable;
    }

    /// <summary>t1 → t2 → t3; t2's body calls <paramref name="inT2"/> (host A arms the partition there).</summary>
    private FlowFactoryRegistry Flows(string host, Action inT2) =>
        new FlowFactoryRegistry().Register("steps", () => new LinearFlow("steps")
        {
            FlowTask.Create("t1", () => { _executed.Enqueue($"{host}:t1"); return 1; }, provides: "a"),
            FlowTask.Create("t2", (int a) => { _executed.Enqueue($"{host}:t2"); inT2(); return a + 1; }, provides: "b"),
            FlowTask.Create("t3", (int b) => { _executed.Enqueue($"{host}:t3"); return b + 1; }, provides: "c"),
        });

    private (PostgreSqlJobBoard Board, Conductor Conductor, Task Running) Host(string name, string connectionString, Action inT2)
    {
        var persistence = Keep(new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connectionString, Schema = _schema }));
        var board = Keep(new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions
        {
            ConnectionString = connectionString,
            Schema = _schema,
            LeaseDuration = Lease,
            HeartbeatInterval = TimeSpan.FromMilliseconds(400),
        }));
        var conductor = Keep(new Conductor(board, Flows(name, inT2), persistence, new ConductorOptions { Name = name, WaitTimeout = TimeSpan.FromSeconds(1) }));
        return (board, conductor, conductor.RunAsync());
    }

    [Fact]
    public async Task ConductorPartitionedMidSave_ItsBufferedSaveArrivesAfterTheSuccessorConsumed_AndIsRefused()
    {
        if (_connectionString is null) return;
        var server = new Npgsql.NpgsqlConnectionStringBuilder(_connectionString);
        var proxy = Keep(new TcpPartitionProxy(server.Host!, server.Port));
        await using (var setup = new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions { ConnectionString = _connectionString, Schema = _schema }))
            await setup.PostAsync(new JobPosting { Name = "steps", FlowFactory = "steps" });
        await using (var setup = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = _connectionString, Schema = _schema }))
            await setup.EnsureSchemaAsync();

        // A: the next save that marks an atom RUNNING (t3's, right after t2 returns) is where the network goes.
        var a = Host("host-a", proxy.Rewrite(_connectionString), () => proxy.ArmOnMarker("\"state\":\"RUNNING\""));
        var refused = new TaskCompletionSource<JobWriteRefused>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Conductor.Notifications.Subscribe<JobWriteRefused>(e => refused.TrySetResult(e));
        await proxy.Partitioned.WaitAsync(PartitionPatience);
        // A no longer reaches the server: it must not claim the job back once B gave up... B never gives up; stop A's loop.
        _ = a.Conductor.StopAsync();

        // B: claims once A's lease ran out, resumes (t1 and t2 were saved SUCCESS by A), finishes and consumes.
        var b = Host("host-b", _connectionString, () => { });
        var consumed = new TaskCompletionSource<JobConsumed>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.Conductor.Notifications.Subscribe<JobConsumed>(e => consumed.TrySetResult(e));
        var done = await consumed.Task.WaitAsync(PartitionPatience);
        await b.Conductor.StopAsync();
        await using var reader = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = _connectionString, Schema = _schema });
        var finished = (await reader.GetFlowDetailAsync(done.Job.FlowDetailId))!;
        Assert.Equal(FlowState.Success, finished.State);
        Assert.True(proxy.HeldBytes > 0, "the partition held back part of A's save");

        // The partition heals: A's save reaches the server now.
        proxy.Heal();
        var refusal = await refused.Task.WaitAsync(PartitionPatience);
        await a.Running.WaitAsync(PartitionPatience);
        await b.Running.WaitAsync(PartitionPatience);

        Assert.Equal(("save atom details", 1L, 2L, "host-b"), (refusal.Write, refusal.HeldEpoch, refusal.CurrentEpoch!.Value, refusal.CurrentOwner!));
        var final = (await reader.GetFlowDetailAsync(done.Job.FlowDetailId))!;
        Assert.Equal(FlowState.Success, final.State);
        Assert.All(final.Atoms, atom => Assert.Equal(AtomState.Success, atom.State));
        Assert.Equal(3, ((TaskDetail)final.FindAtom("t3")!).Result!.Value.GetInt32());
        // A never ran t3 (its RUNNING save never returned before the claim was gone); t2's SUCCESS was in the held-back
        // save, so B found it RUNNING and ran it again; t1, saved SUCCESS by A, was not run again.
        Assert.Equal(["host-a:t1", "host-a:t2", "host-b:t2", "host-b:t3"], _executed);
        Assert.Equal((JobState.Complete, "host-b", 2), ((await b.Board.GetJobAsync(done.Job.Id))!.State, done.Job.Owner, done.Job.ClaimCount));
    }
}
