using System.Collections.Concurrent;
using TaskFlow.Atoms;
using TaskFlow.Conductors;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.States;
using TaskFlow.TestUtilities;

namespace TaskFlow.Jobs.PostgreSql.Tests;

/// <summary>Conductors on the PostgreSQL board: what happens when a claim's lease is lost.</summary>
public sealed partial class ConductorOnPostgreSqlTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly string _schema = PostgresTestServer.NewSchemaName();
    private readonly InMemoryPersistenceBackend _persistence = new();
    private readonly ConcurrentQueue<string> _executed = new();
    private readonly List<IAsyncDisposable> _disposables = [];
    private string? _connectionString;

    public Task InitializeAsync()
    {
        _connectionString = PostgresTestServer.ConnectionString;
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--) await _disposables[i].DisposeAsync();
        if (_connectionString is not null) await PostgresTestServer.DropSchemaAsync(_connectionString, _schema);
    }

    private PostgreSqlJobBoard OpenBoard()
    {
        var board = new PostgreSqlJobBoard(new PostgreSqlJobBoardOptions
        {
            ConnectionString = _connectionString!,
            Schema = _schema,
            // Long enough that a loaded test machine never loses a claim by itself; the test expires one on purpose.
            LeaseDuration = TimeSpan.FromSeconds(15),
            HeartbeatInterval = TimeSpan.FromMilliseconds(300),
        });
        _disposables.Add(board);
        return board;
    }

    /// <summary>first → slow → last; on the stalling host, "slow" waits until its run is cancelled.</summary>
    private FlowFactoryRegistry Flows(bool stalls, TaskCompletionSource slowStarted) =>
        new FlowFactoryRegistry().Register("steps", () => new LinearFlow("steps")
        {
            FlowTask.Create("first", () => { _executed.Enqueue("first"); return 1; }, provides: "a"),
            FlowTask.Create("slow", async (int a, CancellationToken cancellationToken) =>
            {
                _executed.Enqueue("slow");
                slowStarted.TrySetResult();
                if (stalls) await Task.Delay(Timeout.Infinite, cancellationToken);
                return a + 1;
            }, provides: "b"),
            FlowTask.Create("last", (int b) => { _executed.Enqueue("last"); return b + 1; }, provides: "c"),
        });

    private Conductor Start(string name, PostgreSqlJobBoard board, FlowFactoryRegistry flows, out Task running)
    {
        var conductor = new Conductor(board, flows, _persistence, new ConductorOptions { Name = name, WaitTimeout = TimeSpan.FromSeconds(2) });
        _disposables.Add(conductor);
        running = conductor.RunAsync();
        return conductor;
    }

    [Fact]
    public async Task ClaimLostToAnExpiredLease_OldOwnerSuspendsAndCannotFinish_NewOwnerReclaimsAndResumes()
    {
        if (_connectionString is null) return;
        var boardA = OpenBoard();
        var slowStartedA = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var job = await boardA.PostAsync(new JobPosting { Name = "steps", FlowFactory = "steps" });
        var conductorA = Start("host-a", boardA, Flows(stalls: true, slowStartedA), out var runningA);
        var refused = new TaskCompletionSource<JobOperationFailed>(TaskCreationOptions.RunContinuationsAsynchronously);
        conductorA.Notifications.Subscribe<JobOperationFailed>(e =>
        {
            // Host A then goes away for good (otherwise it could claim the now claimable job again itself).
            _ = conductorA.StopAsync();
            refused.TrySetResult(e);
        });
        await slowStartedA.Task.WaitAsync(Patience);

        // Host A stalls past its lease (as in a long pause or a partition).
        await PostgresTestServer.ExecuteAsync(_connectionString, $"UPDATE \"{_schema}\".jobs SET lease_expires_at = now() - interval '1 second'");

        var refusal = await refused.Task.WaitAsync(Patience);
        await runningA.WaitAsync(Patience);
        Assert.Equal("abandon", refusal.Operation);
        Assert.IsType<JobFailureException>(refusal.Failure);
        Assert.Equal(JobState.Unclaimed, (await boardA.GetJobAsync(job.Id))!.State);
        // Once the claim is lost, A no longer writes to the flow detail: it stays as A last saved it, mid-run.
        var left = await _persistence.GetFlowDetailAsync(job.FlowDetailId);
        Assert.Equal(FlowState.Running, left!.State);
        Assert.Equal(AtomState.Success, left.FindAtom("first")!.State);
        Assert.Equal(AtomState.Running, left.FindAtom("slow")!.State);

        var boardB = OpenBoard();
        var conductorB = Start("host-b", boardB, Flows(stalls: false, new TaskCompletionSource()), out var runningB);
        var consumed = new TaskCompletionSource<JobConsumed>(TaskCreationOptions.RunContinuationsAsynchronously);
        conductorB.Notifications.Subscribe<JobConsumed>(e => consumed.TrySetResult(e));
        var done = await consumed.Task.WaitAsync(Patience);

        Assert.Equal(job.Id, done.Job.Id);
        // "first" finished under A and is not run again; "slow" was RUNNING when A stopped, so B runs it again.
        Assert.Equal(["first", "slow", "slow", "last"], _executed);
        var read = await boardB.GetJobAsync(job.Id);
        Assert.Equal((JobState.Complete, "host-b"), (read!.State, read.Owner));
        // At least A's claim and B's; A, stopping, has been seen to claim the job once more and abandon it unrun.
        Assert.True(read.ClaimCount >= 2, $"claimed {read.ClaimCount} times");
        Assert.Equal(FlowState.Success, (await _persistence.GetFlowDetailAsync(job.FlowDetailId))!.State);
        await conductorA.StopAsync();
        await conductorB.StopAsync();
        await Task.WhenAll(runningA, runningB).WaitAsync(Patience);
    }

    [Fact]
    public async Task ConductorsOnSeveralHosts_RunEveryJobExactlyOnce()
    {
        if (_connectionString is null) return;
        const int jobs = 30;
        var poster = OpenBoard();
        var ids = new HashSet<Guid>();
        for (var i = 0; i < jobs; i++) ids.Add((await poster.PostAsync(new JobPosting { Name = $"job{i}", FlowFactory = "steps" })).Id);
        var consumedBy = new ConcurrentDictionary<Guid, string>();
        var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var runs = new List<Task>();
        var conductors = new List<Conductor>();
        for (var host = 0; host < 3; host++)
        {
            var conductor = Start($"host-{host}", OpenBoard(), Flows(stalls: false, new TaskCompletionSource()), out var running);
            conductor.Notifications.Subscribe<JobConsumed>(e =>
            {
                Assert.True(consumedBy.TryAdd(e.Job.Id, e.Conductor));
                if (consumedBy.Count == jobs) allDone.TrySetResult();
            });
            conductors.Add(conductor);
            runs.Add(running);
        }

        await allDone.Task.WaitAsync(Patience);
        foreach (var c in conductors) await c.StopAsync();
        await Task.WhenAll(runs);

        Assert.Equal(ids, consumedBy.Keys.ToHashSet());
        Assert.Equal(jobs * 3, _executed.Count);
        Assert.Equal(jobs, (await poster.GetJobsAsync(JobState.Complete)).Count);
    }
}
