using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaskFlow.Conductors;
using TaskFlow.Jobs;
using TaskFlow.Jobs.PostgreSql;
using TaskFlow.Persistence.PostgreSql;

namespace TaskFlow.Chaos.Jobboard;

/// <summary><c>jobboard-bench</c>: jobs per second on one PostgreSQL for each number of conductors.</summary>
internal static class JobboardBench
{
    /// <summary>
    /// <c>jobboard-bench [--conductors 1,2,4] [--jobs N] [--steps S]</c>: for each conductor count, posts N jobs on a fresh
    /// board and times C conductors (each with its own board and persistence connections, as separate hosts would
    /// have) running them all to COMPLETE: every job a persisted flow of S+3 tasks that do no work, so the figure is
    /// the board's and persistence's cost per job.
    /// </summary>
    public static async Task<int> RunBenchAsync(string[] args)
    {
        var o = Options.Parse(args);
        var counts = (o.Get("conductors") ?? "1,2,4").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        int jobs = o.Int("jobs", 500), steps = o.Int("steps", 2), maxJobs = o.Int("max-jobs", 1);
        var connection = JobboardChaos.PostgresConnection();
        if (connection is null) return 2;
        Console.WriteLine($"jobboard-bench jobs={jobs} tasks-per-job={steps + 3} max-jobs-per-conductor={maxJobs} processors={Environment.ProcessorCount}");
        foreach (var c in counts)
        {
            var schema = "bench_jobboard_" + Guid.NewGuid().ToString("N")[..12];
            try
            {
                await using (var poster = JobboardChaos.OpenBoard(connection, schema, 30_000))
                {
                    for (var i = 0; i < jobs; i++)
                        await poster.PostAsync(new JobPosting
                        {
                            Name = $"bench-{i}",
                            FlowFactory = JobboardFlows.FactoryName,
                            FactoryArguments = JsonSerializer.SerializeToElement(new { steps, delay_ms = 0 }),
                            Store = new Dictionary<string, JsonElement> { ["job"] = JsonSerializer.SerializeToElement((long)i), ["v0"] = JsonSerializer.SerializeToElement(1L) },
                        });
                }
                var hosts = new List<(PostgreSqlJobBoard Board, PostgreSqlPersistenceBackend Persistence, Conductor Conductor)>();
                var done = 0;
                var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                for (var h = 0; h < c; h++)
                {
                    var board = JobboardChaos.OpenBoard(connection, schema, 30_000);
                    var persistence = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = schema });
                    await persistence.EnsureSchemaAsync();
                    await board.EnsureSchemaAsync();
                    var conductor = new Conductor(board, JobboardFlows.Registry(null), persistence, new ConductorOptions { Name = $"bench-{h}", MaxConcurrentJobs = maxJobs });
                    conductor.Notifications.Subscribe<JobConsumed>(_ => { if (Interlocked.Increment(ref done) == jobs) allDone.TrySetResult(); });
                    hosts.Add((board, persistence, conductor));
                }
                var watch = Stopwatch.StartNew();
                var runs = hosts.Select(h => h.Conductor.RunAsync()).ToArray();
                await allDone.Task.WaitAsync(TimeSpan.FromMinutes(10));
                var elapsed = watch.Elapsed;
                foreach (var h in hosts) await h.Conductor.StopAsync();
                await Task.WhenAll(runs);
                foreach (var h in hosts)
                {
                    await h.Board.DisposeAsync();
                    await h.Persistence.DisposeAsync();
                }
                var perHost = string.Join(" ", hosts.Select(h => h.Conductor.DispatchedCount));
                Console.WriteLine($"conductors={c} jobs={jobs} elapsed={elapsed.TotalSeconds:F2}s throughput={jobs / elapsed.TotalSeconds:F1} jobs/s (per conductor: {perHost})");
            }
            finally
            {
                await JobboardChaos.DropSchemaAsync(connection, schema);
            }
        }
        return 0;
    }

}
