using System.Diagnostics;
using System.Text.Json;
using TaskFlow.Engines;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>
/// <c>crash-resume</c>: runs a persisted flow in a child process, SIGKILLs it at a random moment, resumes it in a new
/// child (possibly killed again) until it ends, and checks the outcome against an uninterrupted run of the same flow:
/// <list type="bullet">
/// <item>the final flow state, every atom's state, intention and saved result are the same;</item>
/// <item>every atom executed (and reverted) as often as in the uninterrupted run, plus at most once per kill that
/// caught it saved as RUNNING (REVERTING) — so nothing saved as finished ran again, and only in-flight atoms did.</item>
/// </list>
/// </summary>
internal static class CrashResumeChaos
{
    public const string ChildCommand = "crash-resume-child";
    private const string PostgresSchema = "chaos_crash_resume";

    private sealed record Case(int Index, string Shape, bool Parallel, int FlowSeed, Guid FlowDetailId, Guid LogBookId);

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args);
        string backend = o.Get("backend") ?? throw new ArgumentException("--backend sqlite|postgres|directory is required.");
        if (backend is not ("sqlite" or "postgres" or "directory"))
            throw new ArgumentException($"--backend must be sqlite, postgres or directory, not '{backend}'.");
        int iterations = int.Parse(o.Get("iterations") ?? "20", System.Globalization.CultureInfo.InvariantCulture);
        int seed = int.Parse(o.Get("seed") ?? Environment.TickCount.ToString(System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);
        int maxKills = int.Parse(o.Get("max-kills") ?? "3", System.Globalization.CultureInfo.InvariantCulture);
        string? postgres = null;
        if (backend == "postgres")
        {
            postgres = Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES");
            if (string.IsNullOrWhiteSpace(postgres))
            {
                Console.Error.WriteLine("error: TASKFLOW_POSTGRES is not set; start the server with: eval \"$(bash scripts/services.sh start postgres)\"");
                return 2;
            }
        }

        var root = Directory.CreateTempSubdirectory("taskflow-chaos-").FullName;
        Console.WriteLine($"crash-resume backend={backend} iterations={iterations} seed={seed} max-kills={maxKills} work={root}");
        var rng = new Random(seed);
        int passed = 0, failed = 0, totalKills = 0, killedMidRun = 0, reexecuted = 0;
        var watch = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < iterations; i++)
            {
                var c = new Case(i, ChaosFlows.Shapes[rng.Next(ChaosFlows.Shapes.Length)], rng.Next(2) == 1, rng.Next(), Guid.NewGuid(), Guid.NewGuid());
                var dir = Directory.CreateDirectory(Path.Combine(root, $"case-{i:D4}")).FullName;
                string connection = backend switch
                {
                    "sqlite" => Path.Combine(dir, "runs.db"),
                    "directory" => Path.Combine(dir, "store"),
                    _ => postgres!,
                };
                try
                {
                    var outcome = await RunCaseAsync(c, backend, connection, dir, rng, maxKills);
                    totalKills += outcome.Kills;
                    killedMidRun += outcome.KillsWithAtomsInFlight;
                    reexecuted += outcome.Reexecuted;
                    if (outcome.Problem is null)
                    {
                        passed++;
                        Console.WriteLine($"PASS {i} {c.Shape} {(c.Parallel ? "parallel" : "serial")} kills={outcome.Kills} in-flight-kills={outcome.KillsWithAtomsInFlight} re-executed={outcome.Reexecuted}");
                        Directory.Delete(dir, recursive: true);
                    }
                    else
                    {
                        failed++;
                        Console.WriteLine($"FAIL {i} {c.Shape} {(c.Parallel ? "parallel" : "serial")} kills={outcome.Kills}: {outcome.Problem} (kept {dir})");
                    }
                }
                catch (Exception e)
                {
                    failed++;
                    Console.WriteLine($"FAIL {i} {c.Shape}: {e.GetType().Name}: {e.Message} (kept {dir})");
                }
            }
        }
        finally
        {
            if (failed == 0) Directory.Delete(root, recursive: true);
        }
        Console.WriteLine($"kills={totalKills} kills-with-atoms-in-flight={killedMidRun} atoms-re-executed={reexecuted} elapsed={watch.Elapsed.TotalSeconds:F1}s");
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? 0 : 1;
    }

    private sealed record Outcome(string? Problem, int Kills, int KillsWithAtomsInFlight, int Reexecuted);

    private static async Task<Outcome> RunCaseAsync(Case c, string backendKind, string connection, string dir, Random rng, int maxKills)
    {
        var effectsPath = Path.Combine(dir, "effects.log");
        var allowedExecs = new Dictionary<string, int>(StringComparer.Ordinal);
        var allowedReverts = new Dictionary<string, int>(StringComparer.Ordinal);
        int kills = 0, inFlightKills = 0;
        int plannedKills = rng.Next(1, maxKills + 1);
        for (int attempt = 0; ; attempt++)
        {
            if (attempt > maxKills + 3) return new Outcome($"the flow did not end after {attempt} children", kills, inFlightKills, 0);
            await using (var probe = OpenBackend(backendKind, connection))
            {
                var state = (await probe.GetFlowDetailAsync(c.FlowDetailId))?.State;
                // A finished run is not started again: loading a REVERTED run resets it (TaskFlow's prepare).
                if (state is FlowState.Success or FlowState.Reverted or FlowState.Failure) break;
            }
            bool kill = kills < plannedKills;
            Trace($"case {c.Index} attempt {attempt} start child");
            using var child = StartChild(c, backendKind, connection, effectsPath);
            if (kill)
            {
                // Wait until the child is about to run. Then either kill it after a random time (anywhere, even before
                // the first save), or — more often — once its tasks have recorded a random number of new side effects,
                // a few milliseconds later: right in the middle of tasks running and states being saved.
                int effectsBefore = CountLines(effectsPath);
                var ready = await WaitForLineAsync(child, "ready", TimeSpan.FromSeconds(30));
                Trace($"case {c.Index} ready={ready}");
                if (ready && rng.Next(4) == 0) await Task.Delay(rng.Next(0, c.Parallel ? 60 : 140));
                else if (ready)
                {
                    int target = effectsBefore + rng.Next(1, 8);
                    var deadline = Stopwatch.StartNew();
                    while (!child.HasExited && CountLines(effectsPath) < target && deadline.Elapsed < TimeSpan.FromSeconds(30))
                        await Task.Delay(1);
                    await Task.Delay(rng.Next(0, 15));
                }
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true); // SIGKILL
                    await child.WaitForExitAsync();
                    kills++;
                    Trace($"case {c.Index} killed");
                    await using var probe = OpenBackend(backendKind, connection);
                    var atKill = await probe.GetFlowDetailAsync(c.FlowDetailId);
                    bool any = false;
                    foreach (var atom in atKill?.Atoms ?? [])
                    {
                        if (atom.State == AtomState.Running) { allowedExecs[atom.Name] = allowedExecs.GetValueOrDefault(atom.Name) + 1; any = true; }
                        if (atom.State == AtomState.Reverting) { allowedReverts[atom.Name] = allowedReverts.GetValueOrDefault(atom.Name) + 1; any = true; }
                    }
                    if (any) inFlightKills++;
                    Trace($"case {c.Index} probed");
                    continue;
                }
            }
            var output = await child.StandardOutput.ReadToEndAsync();
            await child.WaitForExitAsync();
            if (child.ExitCode != 0)
                return new Outcome($"child exited {child.ExitCode}: {output.Trim()} {await child.StandardError.ReadToEndAsync()}", kills, inFlightKills, 0);
        }

        // The uninterrupted reference: the same flow, in process, saved to memory so results are compared as saved JSON.
        var reference = new MemorySideEffects();
        var memory = new InMemoryPersistenceBackend();
        var refEngine = Create(ChaosFlows.Build(c.Shape, reference, c.FlowSeed, delays: false), c.Parallel, new EngineOptions { Persistence = memory });
        try { await refEngine.RunAsync(); } catch (InvalidOperationException) { /* the failing shapes end REVERTED */ }
        var expected = (await memory.GetFlowDetailAsync(refEngine.FlowDetailId!.Value))!;

        FlowDetail actual;
        await using (var b = OpenBackend(backendKind, connection))
            actual = (await b.GetFlowDetailAsync(c.FlowDetailId))!;
        if (actual.State != expected.State) return new Outcome($"flow ended {actual.State.ToTaskFlowName()}, uninterrupted run ended {expected.State.ToTaskFlowName()}", kills, inFlightKills, 0);
        foreach (var e in expected.Atoms)
        {
            var a = actual.FindAtom(e.Name);
            if (a is null) return new Outcome($"atom '{e.Name}' is missing from the saved run", kills, inFlightKills, 0);
            if (a.State != e.State || a.Intention != e.Intention)
                return new Outcome($"atom '{e.Name}' ended {a.State.ToTaskFlowName()}/{a.Intention.ToTaskFlowName()}, expected {e.State.ToTaskFlowName()}/{e.Intention.ToTaskFlowName()}", kills, inFlightKills, 0);
            if (e is TaskDetail et && a is TaskDetail at && !SameJson(et.Result, at.Result))
                return new Outcome($"atom '{e.Name}' result {Show(at.Result)}, expected {Show(et.Result)}", kills, inFlightKills, 0);
            if (e is RetryDetail er && a is RetryDetail ar && (er.History.Count != ar.History.Count || !er.History.Zip(ar.History).All(p => SameJson(p.First.Value, p.Second.Value))))
                return new Outcome($"retry '{e.Name}' history has {ar.History.Count} attempts, expected {er.History.Count}", kills, inFlightKills, 0);
        }

        var got = Count(File.Exists(effectsPath) ? File.ReadAllLines(effectsPath) : []);
        var want = Count(reference.Lines);
        int reexecuted = 0;
        foreach (var name in got.Keys.Union(want.Keys))
        {
            var (gotExec, gotRevert) = got.GetValueOrDefault(name);
            var (wantExec, wantRevert) = want.GetValueOrDefault(name);
            int okExec = allowedExecs.GetValueOrDefault(name), okRevert = allowedReverts.GetValueOrDefault(name);
            if (gotExec < wantExec || gotExec > wantExec + okExec)
                return new Outcome($"atom '{name}' executed {gotExec} times; an uninterrupted run executes it {wantExec} times and {okExec} kill(s) caught it RUNNING", kills, inFlightKills, 0);
            if (gotRevert < wantRevert || gotRevert > wantRevert + okRevert)
                return new Outcome($"atom '{name}' reverted {gotRevert} times; an uninterrupted run reverts it {wantRevert} times and {okRevert} kill(s) caught it REVERTING", kills, inFlightKills, 0);
            reexecuted += gotExec - wantExec + gotRevert - wantRevert;
        }
        return new Outcome(null, kills, inFlightKills, reexecuted);
    }

    private static readonly Stopwatch Clock = Stopwatch.StartNew();

    private static void Trace(string what)
    {
        if (Environment.GetEnvironmentVariable("TASKFLOW_CHAOS_TRACE") == "1") Console.Error.WriteLine($"[{Clock.Elapsed.TotalMilliseconds,8:F0} ms] {what}");
    }

    private static int CountLines(string path)
    {
        if (!File.Exists(path)) return 0;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int lines = 0;
        Span<byte> buffer = stackalloc byte[4096];
        for (int read; (read = stream.Read(buffer)) > 0;) lines += buffer[..read].Count((byte)'\n');
        return lines;
    }

    private static Dictionary<string, (int Exec, int Revert)> Count(IEnumerable<string> lines)
    {
        var counts = new Dictionary<string, (int, int)>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var parts = line.Split(' ', 2);
            if (parts.Length != 2) continue;
            var (exec, revert) = counts.GetValueOrDefault(parts[1]);
            counts[parts[1]] = parts[0] == "exec" ? (exec + 1, revert) : (exec, revert + 1);
        }
        return counts;
    }

    private static bool SameJson(JsonElement? a, JsonElement? b) =>
        a is null ? b is null : b is not null && JsonElement.DeepEquals(a.Value, b.Value);

    private static string Show(JsonElement? v) => v?.GetRawText() ?? "(none)";

    private static FlowEngine Create(TaskFlow.Flows.Flow flow, bool parallel, EngineOptions options) =>
        parallel ? FlowEngine.CreateParallel(flow, options) : FlowEngine.CreateSerial(flow, options);

    private static IPersistenceBackend OpenBackend(string kind, string connection) => kind switch
    {
        "sqlite" => new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = "Data Source=" + connection }),
        "directory" => new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = connection }),
        _ => new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = PostgresSchema }),
    };

    private static Process StartChild(Case c, string backend, string connection, string effectsPath)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this program's path to start a child.");
        var info = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Started as `dotnet TaskFlow.Chaos.dll` when run through the dotnet host.
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(CrashResumeChaos).Assembly.Location);
        foreach (var a in new[]
        {
            ChildCommand, "--backend", backend, "--shape", c.Shape, "--engine", c.Parallel ? "parallel" : "serial",
            "--flow-seed", c.FlowSeed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--flow-detail", c.FlowDetailId.ToString(), "--logbook", c.LogBookId.ToString(), "--effects", effectsPath,
        }) info.ArgumentList.Add(a);
        // The connection (a PostgreSQL string may hold a password) goes through the environment, not the command line.
        info.Environment["TASKFLOW_CHAOS_CONNECTION"] = connection;
        return Process.Start(info) ?? throw new InvalidOperationException("Could not start the child process.");
    }

    private static async Task<bool> WaitForLineAsync(Process child, string expected, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await child.StandardOutput.ReadLineAsync(cts.Token) is { } line)
                if (line == expected) return true;
        }
        catch (OperationCanceledException) { }
        return false;
    }

    /// <summary>The child: runs (or resumes) the case's flow to its end, saying "ready" just before it starts running.</summary>
    public static async Task<int> RunChildAsync(string[] args)
    {
        var o = Options.Parse(args);
        string backend = o.Require("backend"), shape = o.Require("shape");
        var connection = Environment.GetEnvironmentVariable("TASKFLOW_CHAOS_CONNECTION") ?? throw new InvalidOperationException("TASKFLOW_CHAOS_CONNECTION is not set.");
        using var effects = new FileSideEffects(o.Require("effects"));
        await using var store = OpenBackend(backend, connection);
        var flow = ChaosFlows.Build(shape, effects, int.Parse(o.Require("flow-seed"), System.Globalization.CultureInfo.InvariantCulture), delays: true);
        var options = new EngineOptions { Persistence = store, FlowDetailId = Guid.Parse(o.Require("flow-detail")), LogBookId = Guid.Parse(o.Require("logbook")) };
        var engine = Create(flow, o.Require("engine") == "parallel", options);
        await engine.PrepareAsync();
        Console.WriteLine("ready");
        await Console.Out.FlushAsync();
        try
        {
            await engine.RunAsync();
        }
        catch (InvalidOperationException e) when (e.Message.EndsWith("failed on purpose", StringComparison.Ordinal))
        {
            // The failing shapes end REVERTED and rethrow their task's failure: expected.
        }
        catch (TaskFlow.Failures.WrappedFailureException)
        {
            // A failure loaded from the saved run is rethrown wrapped: expected for the failing shapes.
        }
        Console.WriteLine("ended " + engine.State.ToTaskFlowName());
        return 0;
    }
}
