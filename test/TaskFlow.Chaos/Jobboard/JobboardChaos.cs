using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaskFlow.Jobs;
using TaskFlow.Jobs.PostgreSql;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.States;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>
/// <c>jobboard</c>: posts J jobs on a PostgreSQL board, runs C conductor processes on them (each one's database
/// connections through its own partition proxy), SIGKILLs a random conductor every K completed jobs and starts a
/// replacement, and with <c>--partition-every P</c> partitions a conductor every P completed jobs in the middle of a
/// save, waits until others have claimed, finished and consumed the jobs it held, and heals it so that its buffered
/// save reaches the server. Then it checks every job (see <see cref="JobboardChecks"/>). With <c>--self-test true</c> the
/// same run goes against a deliberately broken variant (conductors that write around the fence) and must fail.
/// </summary>
public static class JobboardChaos
{
    private static readonly string[] Known = ["conductors", "jobs", "kill-every", "seed", "lease-ms", "max-jobs", "partition-every", "self-test", "keep"];

    /// <summary>How long a partition waits for the victim's jobs to be consumed by others before it heals anyway.</summary>
    private static readonly TimeSpan PartitionPatience = TimeSpan.FromSeconds(90);

    /// <summary>
    /// <c>jobboard --conductors C --jobs J --kill-every K [--partition-every P] [--self-test true] [--seed S] [--lease-ms L]
    /// [--max-jobs M] [--keep true]</c> (args without the command name). The schema and logs are dropped after a clean
    /// run unless <c>--keep true</c>.
    /// </summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args, Known);
        var selfTest = o.Get("self-test", "false") switch
        {
            "true" => true,
            "false" => false,
            var other => throw new ArgumentException($"--self-test must be true or false, not '{other}'."),
        };
        var settings = new Settings(
            Conductors: o.Int("conductors", 4), Jobs: o.Int("jobs", 400), KillEvery: o.Int("kill-every", 25),
            PartitionEvery: o.Int("partition-every", 0), Seed: o.Int("seed", Environment.TickCount), LeaseMs: o.Int("lease-ms", 5000),
            MaxJobs: o.Int("max-jobs", 2), Unfenced: selfTest, Keep: o.Get("keep") == "true");
        if (settings.Conductors < 1 || settings.Jobs < 1 || settings.KillEvery < 1 || settings.PartitionEvery < 0)
            throw new ArgumentException("--conductors, --jobs and --kill-every must be at least 1, --partition-every 0 (off) or more.");
        if (selfTest && settings.PartitionEvery == 0)
            throw new ArgumentException("--self-test needs --partition-every: a stale owner's overwrite happens when a partition heals.");
        if (settings.PartitionEvery > 0 && settings.Conductors < 2)
            throw new ArgumentException("--partition-every needs --conductors 2 or more: someone else must take the partitioned conductor's jobs over.");
        var connection = PostgresConnection();
        if (connection is null) return 2;

        var failed = await RunScenarioAsync(settings, connection);
        if (!selfTest) return failed == 0 ? 0 : 1;
        if (failed > 0)
        {
            Console.WriteLine($"self-test: the unfenced variant failed, as it must ({failed} failure(s) found): the check sees a stale owner's overwrite");
            return 0;
        }
        Console.WriteLine("self-test: the unfenced variant PASSED: this chaos run cannot see a stale owner's overwrite (did any partition heal after its jobs were consumed?)");
        return 1;
    }

    private sealed record Settings(int Conductors, int Jobs, int KillEvery, int PartitionEvery, int Seed, int LeaseMs, int MaxJobs, bool Unfenced, bool Keep);

    /// <summary>What one partition did.</summary>
    internal sealed record PartitionOutcome(string Victim, bool Triggered, int HeldJobs, bool SuccessorsConsumed, long HeldBytes, TimeSpan Duration);

    private static async Task<int> RunScenarioAsync(Settings s, string connection)
    {
        var schema = "chaos_jobboard_" + Guid.NewGuid().ToString("N")[..12];
        var work = Directory.CreateTempSubdirectory("taskflow-jobboard-chaos-").FullName;
        var rng = new Random(s.Seed);
        Console.WriteLine($"jobboard conductors={s.Conductors} jobs={s.Jobs} kill-every={s.KillEvery} partition-every={s.PartitionEvery} seed={s.Seed} " +
                          $"lease={s.LeaseMs}ms max-jobs-per-conductor={s.MaxJobs} variant={(s.Unfenced ? "UNFENCED (self-test)" : "fenced")} schema={schema} work={work}");
        var watch = Stopwatch.StartNew();

        await using var persistence = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = schema });
        await using var board = OpenBoard(connection, schema, s.LeaseMs);
        await persistence.EnsureSchemaAsync();
        await board.EnsureSchemaAsync();

        // Every job: a chain of 2-5 steps with small sleeps, identified by its index (in the store and the factory arguments).
        var posted = new Dictionary<long, Job>();
        for (var i = 0; i < s.Jobs; i++)
        {
            var steps = rng.Next(2, 6);
            var job = await board.PostAsync(new JobPosting
            {
                Name = $"chaos-{i}",
                FlowFactory = JobboardFlows.FactoryName,
                FactoryArguments = JsonSerializer.SerializeToElement(new { steps, delay_ms = rng.Next(2, 12), job = (long)i }),
                Store = new Dictionary<string, JsonElement>
                {
                    ["job"] = JsonSerializer.SerializeToElement((long)i),
                    ["v0"] = JsonSerializer.SerializeToElement((long)rng.Next(1, 1000)),
                },
                Priority = (JobPriority)rng.Next(-2, 3),
            });
            posted.Add(i, job);
        }

        var children = new List<JobboardConductor.Process>();
        var gone = new List<JobboardConductor.Process>();
        var problems = new List<string>();
        var partitions = new List<PartitionOutcome>();
        var nextName = 0;
        JobboardConductor.Process Spawn() =>
            JobboardConductor.Process.Start($"conductor-{nextName++}", connection, schema, work, s.LeaseMs, s.MaxJobs, s.Unfenced);
        for (var i = 0; i < s.Conductors; i++) children.Add(Spawn());

        int kills = 0, killsWithClaims = 0, inFlightAtoms = 0;
        var nextKillAt = s.KillEvery;
        var nextPartitionAt = s.PartitionEvery > 0 ? s.PartitionEvery : int.MaxValue;
        Task<PartitionOutcome>? partition = null;
        JobboardConductor.Process? victim = null;
        var lastProgress = Stopwatch.StartNew();
        var lastComplete = -1;
        while (true)
        {
            var all = await board.GetJobsAsync();
            var complete = all.Count(j => j.State == JobState.Complete);
            var open = all.Count(j => j.State is JobState.Unclaimed or JobState.Claimed);
            if (complete != lastComplete) { lastComplete = complete; lastProgress.Restart(); }
            if (partition is { IsCompleted: true })
            {
                partitions.Add(await partition);
                partition = null;
                victim = null;
            }
            if (open == 0 && partition is null) break;
            if (lastProgress.Elapsed > TimeSpan.FromSeconds(150))
            {
                problems.Add($"no job finished for 150 s: {open} jobs still open ({complete} complete)");
                break;
            }
            foreach (var dead in children.Where(c => c.HasExited).ToList())
            {
                problems.Add($"{dead.Name} exited by itself with code {dead.ExitCode}: {dead.Errors}");
                children.Remove(dead);
                gone.Add(dead);
                children.Add(Spawn());
            }

            if (complete >= nextPartitionAt && partition is null && open > 0)
            {
                nextPartitionAt += s.PartitionEvery;
                // A conductor that is running jobs now, so that it saves soon and others have jobs to take over.
                var owners = all.Where(j => j.State == JobState.Claimed).Select(j => j.Owner).ToHashSet();
                var busy = children.Where(c => owners.Contains(c.Name)).ToList();
                victim = busy.Count > 0 ? busy[rng.Next(busy.Count)] : children[rng.Next(children.Count)];
                // Somewhere in the middle of its runs: after 0 to 4 saves that marked an atom RUNNING.
                partition = PartitionAsync(victim, board, skip: rng.Next(0, 5));
            }

            // Never the partitioned conductor: its held-back save must reach the server when the partition heals.
            var killable = children.Where(c => c != victim).ToList();
            if (complete >= nextKillAt && killable.Count > 0)
            {
                nextKillAt += s.KillEvery;
                var killed = killable[rng.Next(killable.Count)];
                killed.Kill();
                kills++;
                // What it was running is in the saved flow details of the jobs it held (informational: re-executions are
                // judged by the epochs and intervals of the executions themselves).
                var held = (await board.GetJobsAsync(JobState.Claimed)).Where(j => j.Owner == killed.Name).ToList();
                if (held.Count > 0) killsWithClaims++;
                foreach (var job in held)
                    inFlightAtoms += (await persistence.GetFlowDetailAsync(job.FlowDetailId))?.Atoms.Count(a => a.State == AtomState.Running) ?? 0;
                Console.WriteLine($"kill {kills}: {killed.Name} at {complete} complete, holding {held.Count} job(s)");
                children.Remove(killed);
                gone.Add(killed);
                await killed.Proxy.DisposeAsync();
                children.Add(Spawn());
            }
            await Task.Delay(100);
        }

        // Graceful stop of the survivors (they also prove a stop does not lose anything); a stale save that reached the
        // server at the last heal has landed (or been refused) by now.
        foreach (var child in children) child.Proxy.Heal();
        await Task.Delay(TimeSpan.FromSeconds(1));
        foreach (var child in children) child.RequestStop();
        foreach (var child in children)
        {
            if (!await child.WaitForExitAsync(TimeSpan.FromSeconds(30)))
            {
                problems.Add($"{child.Name} did not stop within 30 s of being asked");
                child.Kill();
            }
            else if (child.ExitCode != 0) problems.Add($"{child.Name} stopped with exit code {child.ExitCode}: {child.Errors}");
            await child.Proxy.DisposeAsync();
        }
        var elapsed = watch.Elapsed;

        var logs = new JobboardLogs(work, children.Concat(gone).ToDictionary(c => c.Name, c => c.KilledAt));
        var checks = new JobboardChecks(logs, persistence);
        int passed = 0, failed = 0;
        var final = (await board.GetJobsAsync()).ToDictionary(j => j.Store["job"].GetInt64());
        foreach (var (index, job) in posted)
        {
            var problem = await checks.CheckJobAsync(index, job, final.GetValueOrDefault(index));
            if (problem is null) passed++;
            else
            {
                failed++;
                Console.WriteLine($"FAIL job {index} ({job.Id}): {problem}");
            }
        }
        foreach (var problem in problems.Concat(logs.Problems))
        {
            failed++;
            Console.WriteLine($"FAIL {problem}");
        }

        var triggered = partitions.Where(p => p.Triggered).ToList();
        Console.WriteLine($"epochs-seen={logs.EpochsSeen} (claims that executed tasks; highest claim count {final.Values.Max(j => j.ClaimCount)}; " +
                          $"jobs run under more than one epoch: {logs.JobsUnderSeveralEpochs}) re-executions-across-epochs={checks.Reexecutions} (none overlapping)");
        Console.WriteLine($"partitions={triggered.Count} (healed after the successors consumed: {triggered.Count(p => p.SuccessorsConsumed)}, " +
                          $"on timeout: {triggered.Count(p => !p.SuccessorsConsumed)}, never triggered: {partitions.Count - triggered.Count}; " +
                          $"jobs held by victims: {triggered.Sum(p => p.HeldJobs)}; bytes held back: {triggered.Sum(p => p.HeldBytes)}; " +
                          $"longest {(triggered.Count == 0 ? 0 : triggered.Max(p => p.Duration.TotalSeconds)):F1}s) " +
                          $"stale-writes-refused={logs.Refusals.Values.Sum()} ({(logs.Refusals.Count == 0 ? "none" : string.Join(", ", logs.Refusals.Select(r => $"{r.Key}: {r.Value}")))})");
        Console.WriteLine($"kills={kills} kills-holding-jobs={killsWithClaims} atoms-in-flight-at-kills={inFlightAtoms} " +
                          $"claims-lost={logs.ClaimsLost} conductor-stalls-over-1s={logs.Stalls} (longest {logs.LongestStallMs} ms) " +
                          $"elapsed={elapsed.TotalSeconds:F1}s throughput={s.Jobs / elapsed.TotalSeconds:F1} jobs/s");
        foreach (var (why, count) in logs.Abandons) Console.WriteLine($"abandoned before the end ({count}x): {why}");
        Console.WriteLine($"{passed} passed, {failed} failed");
        // A clean run, or the broken variant failing as it must, leaves nothing behind.
        if ((failed > 0) == s.Unfenced && !s.Keep)
        {
            await DropSchemaAsync(connection, schema);
            Directory.Delete(work, recursive: true);
        }
        else Console.WriteLine($"kept schema {schema} and logs in {work} (drop the schema when done)");
        return failed;
    }

    /// <summary>
    /// Partitions <paramref name="victim"/> at a save that marks an atom RUNNING (the chunk holding it is held back
    /// with everything after it), waits until every job it held then is complete under a later claim, and heals it.
    /// </summary>
    private static async Task<PartitionOutcome> PartitionAsync(JobboardConductor.Process victim, PostgreSqlJobBoard board, int skip)
    {
        var partitioned = victim.Proxy.Partitioned;
        victim.Proxy.ArmOnMarker("\"state\":\"RUNNING\"", skip);
        if (await Task.WhenAny(partitioned, Task.Delay(TimeSpan.FromSeconds(30))) != partitioned)
        {
            victim.Proxy.Disarm();
            return new PartitionOutcome(victim.Name, false, 0, false, 0, TimeSpan.Zero);
        }
        var started = Stopwatch.StartNew();
        // Its leases have not run out yet: the board still names it as the owner of what it was running.
        var held = (await board.GetJobsAsync(JobState.Claimed)).Where(j => j.Owner == victim.Name).ToList();
        Console.WriteLine($"partition: {victim.Name} cut off mid-save, holding {held.Count} job(s) ({string.Join(", ", held.Select(j => $"{j.Name} epoch {j.ClaimCount}"))})");
        var consumed = false;
        while (started.Elapsed < PartitionPatience)
        {
            var now = await Task.WhenAll(held.Select(j => board.GetJobAsync(j.Id)));
            if (now.All(j => j is { State: JobState.Complete } done && done.ClaimCount > held.First(h => h.Id == done.Id).ClaimCount))
            {
                consumed = true;
                break;
            }
            await Task.Delay(200);
        }
        var heldBytes = victim.Proxy.HeldBytes;
        victim.Proxy.Heal();
        Console.WriteLine($"partition: {victim.Name} healed after {started.Elapsed.TotalSeconds:F1}s, {heldBytes} bytes delivered late, " +
                          (consumed ? "its jobs consumed by others meanwhile" : "its jobs NOT all consumed by others (healed on timeout)"));
        return new PartitionOutcome(victim.Name, true, held.Count, consumed && held.Count > 0, heldBytes, started.Elapsed);
    }

    // -------------------------------------------------------------------- plumbing

    internal static string? PostgresConnection()
    {
        var connection = Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES");
        if (!string.IsNullOrWhiteSpace(connection)) return connection;
        Console.Error.WriteLine("error: TASKFLOW_POSTGRES is not set; start the server with: eval \"$(bash scripts/services.sh start postgres)\"");
        return null;
    }

    internal static PostgreSqlJobBoard OpenBoard(string connection, string schema, int leaseMs) => new(new PostgreSqlJobBoardOptions
    {
        ConnectionString = connection,
        Schema = schema,
        BoardName = "chaos",
        LeaseDuration = TimeSpan.FromMilliseconds(leaseMs),
        HeartbeatInterval = TimeSpan.FromMilliseconds(Math.Max(50, leaseMs / 4)),
    });

    internal static async Task DropSchemaAsync(string connection, string schema)
    {
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(connection);
        await using var cmd = dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        await cmd.ExecuteNonQueryAsync();
    }
}
