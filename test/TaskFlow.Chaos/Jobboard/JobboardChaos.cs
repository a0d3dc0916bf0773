using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Conductors;
using TaskFlow.Jobs.PostgreSql;
using TaskFlow.Jobs;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>
/// <c>jobboard</c>: posts J jobs on a PostgreSQL board, runs C conductor processes on them, SIGKILLs a random conductor
/// every K completed jobs and starts a replacement, then checks every job:
/// <list type="bullet">
/// <item>it is COMPLETE on the board (none lost, stuck or trashed) and was consumed at most once;</item>
/// <item>its flow detail is SUCCESS with every atom SUCCESS, and <c>join</c>'s saved result is the value an
/// uninterrupted run computes;</item>
/// <item>every task executed at least once, and more than once only as often as a kill caught it RUNNING in the saved
/// flow detail of a job the killed conductor held (read from the backend right after each kill).</item>
/// </list>
/// </summary>
public static class JobboardChaos
{
    /// <summary>The hidden subcommand that runs one conductor process.</summary>
    public const string ConductorCommand = "jobboard-conductor";

    private const string ConnectionVariable = "TASKFLOW_CHAOS_CONNECTION";

    /// <summary>
    /// <c>jobboard --conductors C --jobs J --kill-every K [--seed S] [--lease-ms L] [--max-jobs M] [--keep true]</c>
    /// (args without the command name). The schema and logs are dropped after a clean run unless <c>--keep true</c>.
    /// </summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args);
        int conductors = o.Int("conductors", 4), jobs = o.Int("jobs", 400), killEvery = o.Int("kill-every", 25);
        int seed = o.Int("seed", Environment.TickCount), leaseMs = o.Int("lease-ms", 5000), maxJobs = o.Int("max-jobs", 2);
        if (conductors < 1 || jobs < 1 || killEvery < 1) throw new ArgumentException("--conductors, --jobs and --kill-every must be at least 1.");
        var connection = PostgresConnection();
        if (connection is null) return 2;

        var schema = "chaos_jobboard_" + Guid.NewGuid().ToString("N")[..12];
        var work = Directory.CreateTempSubdirectory("taskflow-jobboard-chaos-").FullName;
        var rng = new Random(seed);
        Console.WriteLine($"jobboard conductors={conductors} jobs={jobs} kill-every={killEvery} seed={seed} lease={leaseMs}ms max-jobs-per-conductor={maxJobs} schema={schema} work={work}");
        var watch = Stopwatch.StartNew();

        await using var persistence = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = schema });
        await using var board = OpenBoard(connection, schema, leaseMs);
        await persistence.EnsureSchemaAsync();
        await board.EnsureSchemaAsync();

        // Post every job: a chain of 2-5 steps with small sleeps, identified by its index (the "job" store value).
        var posted = new Dictionary<long, Job>();
        for (var i = 0; i < jobs; i++)
        {
            var steps = rng.Next(2, 6);
            var job = await board.PostAsync(new JobPosting
            {
                Name = $"chaos-{i}",
                FlowFactory = JobboardFlows.FactoryName,
                FactoryArguments = JsonSerializer.SerializeToElement(new { steps, delay_ms = rng.Next(2, 12) }),
                Store = new Dictionary<string, JsonElement>
                {
                    ["job"] = JsonSerializer.SerializeToElement((long)i),
                    ["v0"] = JsonSerializer.SerializeToElement((long)rng.Next(1, 1000)),
                },
                Priority = (JobPriority)rng.Next(-2, 3),
            });
            posted.Add(i, job);
        }

        // (job, task) → how many kills caught that task RUNNING in a job the killed conductor held.
        var allowedReruns = new Dictionary<(long Job, string Task), int>();
        var children = new List<ConductorProcess>();
        var problems = new List<string>();
        var nextName = 0;
        ConductorProcess Spawn() => ConductorProcess.Start($"conductor-{nextName++}", connection, schema, work, leaseMs, maxJobs);
        for (var i = 0; i < conductors; i++) children.Add(Spawn());

        int kills = 0, killsWithClaims = 0, inFlightAtoms = 0;
        var nextKillAt = killEvery;
        var lastProgress = Stopwatch.StartNew();
        var lastComplete = -1;
        while (true)
        {
            var all = await board.GetJobsAsync();
            var complete = all.Count(j => j.State == JobState.Complete);
            var open = all.Count(j => j.State is JobState.Unclaimed or JobState.Claimed);
            if (complete != lastComplete) { lastComplete = complete; lastProgress.Restart(); }
            if (open == 0) break;
            if (lastProgress.Elapsed > TimeSpan.FromSeconds(120))
            {
                problems.Add($"no job finished for 120 s: {open} jobs still open ({complete} complete)");
                break;
            }
            foreach (var dead in children.Where(c => c.HasExited).ToList())
            {
                problems.Add($"{dead.Name} exited by itself with code {dead.ExitCode}: {dead.Errors}");
                children.Remove(dead);
                children.Add(Spawn());
            }

            if (complete >= nextKillAt)
            {
                nextKillAt += killEvery;
                var victim = children[rng.Next(children.Count)];
                victim.Kill();
                kills++;
                // The victim's claims still name it (their leases have not run out yet): what it was running is in
                // their saved flow details, and only atoms saved RUNNING may run again.
                var held = (await board.GetJobsAsync(JobState.Claimed)).Where(j => j.Owner == victim.Name).ToList();
                if (held.Count > 0) killsWithClaims++;
                foreach (var job in held)
                {
                    var detail = await persistence.GetFlowDetailAsync(job.FlowDetailId);
                    foreach (var atom in detail?.Atoms ?? [])
                    {
                        if (atom.State != AtomState.Running) continue;
                        var key = (job.Store["job"].GetInt64(), atom.Name);
                        allowedReruns[key] = allowedReruns.GetValueOrDefault(key) + 1;
                        inFlightAtoms++;
                    }
                }
                Console.WriteLine($"kill {kills}: {victim.Name} at {complete} complete, holding {held.Count} job(s)");
                children.Remove(victim);
                children.Add(Spawn());
            }
            await Task.Delay(100);
        }

        // Graceful stop of the survivors (they also prove a stop does not lose anything).
        foreach (var child in children) child.RequestStop();
        foreach (var child in children)
            if (!await child.WaitForExitAsync(TimeSpan.FromSeconds(30)))
            {
                problems.Add($"{child.Name} did not stop within 30 s of being asked");
                child.Kill();
            }
            else if (child.ExitCode != 0) problems.Add($"{child.Name} stopped with exit code {child.ExitCode}: {child.Errors}");
        var elapsed = watch.Elapsed;

        // ---------------------------------------------------------------- checks
        var executions = new Dictionary<(long Job, string Task), int>();
        var consumed = new Dictionary<long, int>();
        int claimsLost = 0, zombieExecutions = 0, stalls = 0, longestStall = 0;
        var abandons = new Dictionary<string, int>();
        foreach (var file in Directory.EnumerateFiles(work, "*.log"))
        {
            var lines = (await File.ReadAllLinesAsync(file)).Select(l => l.Split(' ')).Where(p => p.Length >= 3).ToList();
            var lost = lines.Where(p => p[0] == "lost").Select(p => long.Parse(p[1], CultureInfo.InvariantCulture)).ToHashSet();
            claimsLost += lost.Count;
            foreach (var p in lines.Where(p => p[0] == "abandoned"))
            {
                lost.Add(long.Parse(p[1], CultureInfo.InvariantCulture));
                var why = string.Join(' ', p.Skip(2));
                abandons[why] = abandons.GetValueOrDefault(why) + 1;
            }
            foreach (var parts in lines)
            {
                var jobIndex = long.Parse(parts[1], CultureInfo.InvariantCulture);
                switch (parts[0])
                {
                    case "exec":
                        executions[(jobIndex, parts[2])] = executions.GetValueOrDefault((jobIndex, parts[2])) + 1;
                        // A conductor that lost its claim on this job ran these tasks while another may resume them.
                        if (lost.Contains(jobIndex))
                        {
                            allowedReruns[(jobIndex, parts[2])] = allowedReruns.GetValueOrDefault((jobIndex, parts[2])) + 1;
                            zombieExecutions++;
                        }
                        break;
                    case "consumed": consumed[jobIndex] = consumed.GetValueOrDefault(jobIndex) + 1; break;
                    case "stall": stalls++; longestStall = Math.Max(longestStall, int.Parse(parts[2].TrimEnd('m', 's'), CultureInfo.InvariantCulture)); break;
                    case "revert": problems.Add($"job {jobIndex}: task {parts[2]} was reverted"); break;
                }
            }
        }

        int passed = 0, failed = 0, reruns = 0;
        var final = (await board.GetJobsAsync()).ToDictionary(j => j.Store["job"].GetInt64());
        foreach (var (index, job) in posted)
        {
            var problem = await CheckJobAsync(index, job, final.GetValueOrDefault(index), persistence, executions, consumed, allowedReruns);
            reruns += JobboardFlows.TaskNames(JobboardFlows.Steps(job.FactoryArguments)).Sum(t => Math.Max(0, executions.GetValueOrDefault((index, t)) - 1));
            if (problem is null) passed++;
            else
            {
                failed++;
                Console.WriteLine($"FAIL job {index} ({job.Id}): {problem}");
            }
        }
        foreach (var problem in problems)
        {
            failed++;
            Console.WriteLine($"FAIL {problem}");
        }

        Console.WriteLine($"kills={kills} kills-holding-jobs={killsWithClaims} atoms-in-flight-at-kills={inFlightAtoms} tasks-re-executed={reruns} " +
                          $"claims-lost-to-expired-leases={claimsLost} abandons={abandons.Values.Sum()} (tasks executed by those owners: {zombieExecutions}) " +
                          $"conductor-stalls-over-1s={stalls} (longest {longestStall} ms) " +
                          $"elapsed={elapsed.TotalSeconds:F1}s throughput={jobs / elapsed.TotalSeconds:F1} jobs/s");
        foreach (var (why, count) in abandons) Console.WriteLine($"abandoned before the end ({count}x): {why}");
        Console.WriteLine($"{passed} passed, {failed} failed");
        if (failed == 0 && o.Get("keep") != "true")
        {
            await DropSchemaAsync(connection, schema);
            Directory.Delete(work, recursive: true);
        }
        else Console.WriteLine($"kept schema {schema} and logs in {work} (drop the schema when done)");
        return failed == 0 ? 0 : 1;
    }

    private static async Task<string?> CheckJobAsync(long index, Job posted, Job? final,
        IPersistenceBackend persistence, Dictionary<(long, string), int> executions, Dictionary<long, int> consumed,
        Dictionary<(long, string), int> allowedReruns)
    {
        if (final is null) return "the job is gone from the board";
        if (final.State != JobState.Complete) return $"the job ended {final.State}, not Complete (claimed {final.ClaimCount} times)";
        if (consumed.GetValueOrDefault(index) > 1) return $"consumed {consumed[index]} times";
        var detail = await persistence.GetFlowDetailAsync(posted.FlowDetailId);
        if (detail is null) return "its flow detail was never saved";
        if (detail.State != FlowState.Success) return $"its flow detail ended {detail.State}";
        var steps = JobboardFlows.Steps(posted.FactoryArguments);
        foreach (var task in JobboardFlows.TaskNames(steps))
        {
            var atom = detail.FindAtom(task);
            if (atom?.State != AtomState.Success) return $"task {task} ended {atom?.State.ToString() ?? "missing"}";
            var ran = executions.GetValueOrDefault((index, task));
            var allowed = 1 + allowedReruns.GetValueOrDefault((index, task));
            if (ran < 1) return $"task {task} is SUCCESS but never executed";
            if (ran > allowed)
                return $"task {task} executed {ran} times; kills caught it RUNNING {allowed - 1} time(s), so at most {allowed} are allowed";
        }
        var result = ((TaskDetail)detail.FindAtom("join")!).Result!.Value.GetInt64();
        var expected = JobboardFlows.ExpectedResult(steps, posted.Store["v0"].GetInt64());
        return result == expected ? null : $"join saved {result}, an uninterrupted run computes {expected}";
    }

    // -------------------------------------------------------------------- the conductor process

    /// <summary>
    /// <c>jobboard-conductor --schema S --name N --log FILE --lease-ms L --max-jobs M</c>: runs one conductor until its
    /// standard input closes or says "stop", then stops gracefully. Logs task executions and consumes to FILE.
    /// </summary>
    public static async Task<int> RunConductorAsync(string[] args)
    {
        var o = Options.Parse(args);
        var connection = Environment.GetEnvironmentVariable(ConnectionVariable) ?? throw new InvalidOperationException($"{ConnectionVariable} is not set.");
        var schema = o.Require("schema");
        var name = o.Require("name");
        using var log = new FileSideEffects(o.Require("log")); // its own file per process
        await using var persistence = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = schema });
        await using var board = OpenBoard(connection, schema, o.Int("lease-ms", 3000));
        var conductor = new Conductor(board, JobboardFlows.Registry(log), persistence, new ConductorOptions
        {
            Name = name,
            MaxConcurrentJobs = o.Int("max-jobs", 2),
            Engine = ConductorEngine.Parallel,
            WaitTimeout = TimeSpan.FromSeconds(2),
        });
        conductor.Notifications.Subscribe<JobConsumed>(e => log.Record($"consumed {e.Job.Store["job"].GetInt64()} {name}"));
        // A refused consume or abandon means this conductor lost its claim (its lease ran out under load) and another
        // may resume the job: the checker allows this conductor's executions of that job's tasks to repeat.
        // A job given back before it finished (a failed save, a claim given up locally) is resumed by its next owner, which
        // runs again what was RUNNING: the checker allows this conductor's executions of that job to repeat, and reports why.
        conductor.Notifications.Subscribe<JobAbandoned>(e => log.Record(
            $"abandoned {e.Job.Store["job"].GetInt64()} {e.Reason.Replace(' ', '_')} {e.Failure?.GetType().Name ?? "-"}: {e.Failure?.Message.ReplaceLineEndings(" ") ?? ""}"));
        board.HeartbeatFailed += ex => log.Record($"heartbeat-failed 0 {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}");
        var claimedAt = new System.Collections.Concurrent.ConcurrentDictionary<Guid, long>();
        conductor.Notifications.Subscribe<JobClaimed>(e => claimedAt[e.Job.Id] = Stopwatch.GetTimestamp());
        conductor.Notifications.Subscribe<JobOperationFailed>(e => log.Record(
            $"lost {e.Job.Store["job"].GetInt64()} {e.Operation} {Stopwatch.GetElapsedTime(claimedAt.GetValueOrDefault(e.Job.Id)).TotalMilliseconds:F0}ms-after-claim"));
        // Evidence for lost claims: how late this process wakes from a 100 ms sleep (thread starvation, machine load).
        _ = Task.Run(async () =>
        {
            while (true)
            {
                var start = Stopwatch.GetTimestamp();
                await Task.Delay(100);
                var late = Stopwatch.GetElapsedTime(start) - TimeSpan.FromMilliseconds(100);
                if (late > TimeSpan.FromSeconds(1)) log.Record($"stall 0 {late.TotalMilliseconds:F0}ms");
            }
        });
        conductor.Notifications.Subscribe<JobTrashed>(e => Console.Error.WriteLine($"trashed {e.Job}: {e.Failure}"));
        conductor.Notifications.Subscribe<BoardUnavailable>(e => Console.Error.WriteLine($"board unavailable: {e.Failure.Message}"));
        var running = conductor.RunAsync();
        Console.WriteLine("ready");
        while (await Console.In.ReadLineAsync() is { } line && line != "stop") { }
        await conductor.StopAsync();
        await running;
        return 0;
    }

    // -------------------------------------------------------------------- benchmark

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
        var connection = PostgresConnection();
        if (connection is null) return 2;
        Console.WriteLine($"jobboard-bench jobs={jobs} tasks-per-job={steps + 3} max-jobs-per-conductor={maxJobs} processors={Environment.ProcessorCount}");
        foreach (var c in counts)
        {
            var schema = "bench_jobboard_" + Guid.NewGuid().ToString("N")[..12];
            try
            {
                await using (var poster = OpenBoard(connection, schema, 30_000))
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
                    var board = OpenBoard(connection, schema, 30_000);
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
                await DropSchemaAsync(connection, schema);
            }
        }
        return 0;
    }

    // -------------------------------------------------------------------- plumbing

    private static string? PostgresConnection()
    {
        var connection = Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES");
        if (!string.IsNullOrWhiteSpace(connection)) return connection;
        Console.Error.WriteLine("error: TASKFLOW_POSTGRES is not set; start the server with: eval \"$(bash scripts/services.sh start postgres)\"");
        return null;
    }

    private static PostgreSqlJobBoard OpenBoard(string connection, string schema, int leaseMs) => new(new PostgreSqlJobBoardOptions
    {
        ConnectionString = connection,
        Schema = schema,
        BoardName = "chaos",
        LeaseDuration = TimeSpan.FromMilliseconds(leaseMs),
        HeartbeatInterval = TimeSpan.FromMilliseconds(Math.Max(50, leaseMs / 4)),
    });

    private static async Task DropSchemaAsync(string connection, string schema)
    {
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(connection);
        await using var cmd = dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>One conductor child process.</summary>
    private sealed class ConductorProcess
    {
        private readonly Process _process;
        private readonly System.Text.StringBuilder _errors = new();

        private ConductorProcess(string name, Process process)
        {
            Name = name;
            _process = process;
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_errors) _errors.AppendLine(e.Data); };
            _process.OutputDataReceived += (_, _) => { };
            _process.BeginErrorReadLine();
            _process.BeginOutputReadLine();
        }

        public string Name { get; }

        public bool HasExited => _process.HasExited;

        public int ExitCode => _process.ExitCode;

        public string Errors { get { lock (_errors) return _errors.ToString().Trim(); } }

        public static ConductorProcess Start(string name, string connection, string schema, string work, int leaseMs, int maxJobs)
        {
            var self = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this program's path to start a child.");
            var info = new ProcessStartInfo(self)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(JobboardChaos).Assembly.Location);
            foreach (var a in new[]
            {
                ConductorCommand, "--schema", schema, "--name", name, "--log", Path.Combine(work, name + ".log"),
                "--lease-ms", leaseMs.ToString(CultureInfo.InvariantCulture), "--max-jobs", maxJobs.ToString(CultureInfo.InvariantCulture),
            }) info.ArgumentList.Add(a);
            // The connection string may hold a password: through the environment, never the command line.
            info.Environment[ConnectionVariable] = connection;
            return new ConductorProcess(name, Process.Start(info) ?? throw new InvalidOperationException("Could not start a conductor process."));
        }

        /// <summary>SIGKILL, and wait until the process is gone.</summary>
        public void Kill()
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        public void RequestStop()
        {
            try
            {
                _process.StandardInput.WriteLine("stop");
                _process.StandardInput.Flush();
            }
            catch (IOException)
            {
                // Already gone; WaitForExitAsync reports it.
            }
        }

        public async Task<bool> WaitForExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }
}
