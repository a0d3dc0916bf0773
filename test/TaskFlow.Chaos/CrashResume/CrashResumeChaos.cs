using System.Diagnostics;
using System.Text.Json;
using TaskFlow.Engines;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>
/// <c>crash-resume</c>: runs a persisted flow in a child process, kills it, resumes it in a new child (possibly killed
/// again) until it ends, and checks the outcome against an uninterrupted run of the same flow. Most kills are made by
/// the child itself, through <see cref="FaultInjectingBackend"/>, right before or after its k-th backend call (k random:
/// the calls of preparing — logbook and flow detail creation, loading the saved run — as well as the run's saves, and
/// often right before the flow-state save that follows an atom save); the others are SIGKILLs from the parent at a
/// random time. Checked:
/// <list type="bullet">
/// <item>the final flow state, every atom's state, intention and saved result are the same as uninterrupted;</item>
/// <item>every atom executed (and reverted) as often as in the uninterrupted run, plus at most once per kill that
/// caught it saved as RUNNING (REVERTING) — so nothing saved as finished ran again, and only in-flight atoms did;</item>
/// <item>the <see cref="SaveLedger"/> rules: no acknowledged save is lost at a kill, and a task runs only when its last
/// saved state is RUNNING (reverts only when REVERTING).</item>
/// </list>
/// <c>--self-test</c> runs the same cases against deliberately broken stores (<see cref="AckBeforeWriteBackend"/>,
/// <see cref="DropRunningSavesBackend"/>) and passes only if each of them makes cases fail; <c>--broken NAME</c> runs
/// one of them (or <see cref="ForgetFinishedBackend"/>) as a normal run, which must then fail.
/// </summary>
internal static class CrashResumeChaos
{
    public const string ChildCommand = "crash-resume-child";
    private const string PostgresSchema = "chaos_crash_resume";
    private const int SigKillExitCode = 128 + 9;
    private const long CallsPerChild = 1_000_000;

    /// <summary>The broken stores (test code only) <c>--broken</c> accepts.</summary>
    private static readonly string[] BrokenVariants = ["ack-before-write", "drop-running", "forget-last-finished"];

    /// <summary>
    /// The ones the self-test requires to fail. forget-last-finished only bites when a kill lands after a run's last
    /// task was saved SUCCESS and before anything else was (about one case in ten), so it is left to <c>--broken</c>.
    /// </summary>
    private static readonly string[] SelfTestVariants = ["ack-before-write", "drop-running"];

    private sealed record Case(int Index, string Shape, bool Parallel, int FlowSeed, Guid FlowDetailId, Guid LogBookId);

    private sealed record Settings(string Backend, string? Postgres, int MaxKills, string? Broken);

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args, "backend", "iterations", "seed", "max-kills", "self-test", "broken");
        string backend = o.Get("backend") ?? throw new ArgumentException("--backend sqlite|postgres|directory is required.");
        if (backend is not ("sqlite" or "postgres" or "directory"))
            throw new ArgumentException($"--backend must be sqlite, postgres or directory, not '{backend}'.");
        bool selfTest = o.Get("self-test") is { } st && (st == "true" ? true : st == "false" ? false : throw new ArgumentException("--self-test takes true or false."));
        int iterations = o.Int("iterations", selfTest ? 10 : 20);
        int seed = o.Int("seed", Environment.TickCount);
        int maxKills = o.Int("max-kills", 3);
        var broken = o.Get("broken");
        if (broken is not null && !BrokenVariants.Contains(broken))
            throw new ArgumentException($"--broken must be one of {string.Join(", ", BrokenVariants)}, not '{broken}'.");
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

        if (!selfTest)
        {
            var summary = await RunCasesAsync(new Settings(backend, postgres, maxKills, broken), iterations, seed, quiet: false);
            return summary.Failed == 0 && summary.Passed > 0 ? 0 : 1;
        }

        // The self-test: every broken store must make the same chaos fail.
        int caught = 0, missed = 0;
        foreach (var variant in SelfTestVariants)
        {
            Console.WriteLine($"self-test: crash-resume against the broken store '{variant}' (it must fail)");
            var summary = await RunCasesAsync(new Settings(backend, postgres, maxKills, variant), iterations, seed, quiet: true);
            if (summary.Failed > 0)
            {
                caught++;
                Console.WriteLine($"PASS self-test {variant}: {summary.Failed} of {summary.Failed + summary.Passed} cases FAILED, as expected; first: {summary.FirstProblem}");
            }
            else
            {
                missed++;
                Console.WriteLine($"FAIL self-test {variant}: all {summary.Passed} cases passed — the chaos did not notice the broken store");
            }
        }
        Console.WriteLine($"{caught} passed, {missed} failed");
        return missed == 0 ? 0 : 1;
    }

    private sealed record Summary(int Passed, int Failed, string? FirstProblem);

    private static async Task<Summary> RunCasesAsync(Settings settings, int iterations, int seed, bool quiet)
    {
        var root = Directory.CreateTempSubdirectory("taskflow-chaos-").FullName;
        Console.WriteLine($"crash-resume backend={settings.Backend} iterations={iterations} seed={seed} max-kills={settings.MaxKills}{(settings.Broken is null ? "" : $" broken={settings.Broken}")} work={root}");
        var rng = new Random(seed);
        int passed = 0, failed = 0, totalKills = 0, killedMidRun = 0, reexecuted = 0;
        string? firstProblem = null;
        var histogram = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var watch = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < iterations; i++)
            {
                var c = new Case(i, ChaosFlows.Shapes[rng.Next(ChaosFlows.Shapes.Length)], rng.Next(2) == 1, rng.Next(), Guid.NewGuid(), Guid.NewGuid());
                var dir = Directory.CreateDirectory(Path.Combine(root, $"case-{i:D4}")).FullName;
                string connection = settings.Backend switch
                {
                    "sqlite" => Path.Combine(dir, "runs.db"),
                    "directory" => Path.Combine(dir, "store"),
                    _ => settings.Postgres!,
                };
                string? problem;
                Outcome? outcome = null;
                try
                {
                    outcome = await RunCaseAsync(c, settings, connection, dir, rng);
                    totalKills += outcome.Kills;
                    killedMidRun += outcome.KillsWithAtomsInFlight;
                    reexecuted += outcome.Reexecuted;
                    foreach (var point in outcome.KillPoints) histogram[point] = histogram.GetValueOrDefault(point) + 1;
                    problem = outcome.Problem;
                }
                catch (Exception e)
                {
                    problem = $"{e.GetType().Name}: {e.Message}";
                }
                string what = $"{i} {c.Shape} {(c.Parallel ? "parallel" : "serial")}";
                if (problem is null)
                {
                    passed++;
                    if (!quiet) Console.WriteLine($"PASS {what} kills={outcome!.Kills} in-flight-kills={outcome.KillsWithAtomsInFlight} re-executed={outcome.Reexecuted}");
                    Directory.Delete(dir, recursive: true);
                }
                else
                {
                    failed++;
                    firstProblem ??= problem;
                    if (quiet)
                    {
                        Console.WriteLine($"  failed {what} kills={outcome?.Kills}: {problem}");
                        Directory.Delete(dir, recursive: true);
                    }
                    else Console.WriteLine($"FAIL {what} kills={outcome?.Kills}: {problem} (kept {dir})");
                }
            }
        }
        finally
        {
            if (failed == 0 || quiet) Directory.Delete(root, recursive: true);
        }
        Console.WriteLine($"kills={totalKills} kills-with-atoms-in-flight={killedMidRun} atoms-re-executed={reexecuted} elapsed={watch.Elapsed.TotalSeconds:F1}s");
        Console.WriteLine("where the kills landed (backend call, before/after it, phase of the child):");
        foreach (var (point, count) in histogram) Console.WriteLine($"  {point,-52} {count,5}");
        if (!quiet) Console.WriteLine($"{passed} passed, {failed} failed");
        return new Summary(passed, failed, firstProblem);
    }

    private sealed record Outcome(string? Problem, int Kills, int KillsWithAtomsInFlight, int Reexecuted, IReadOnlyList<string> KillPoints);

    /// <summary>How many backend calls an uninterrupted run of the case makes (to draw k from), and how many flow-state saves.</summary>
    private sealed record Census(int Calls, int FlowStateSaves);

    private static async Task<Outcome> RunCaseAsync(Case c, Settings settings, string connection, string dir, Random rng)
    {
        // The uninterrupted reference: the same flow, in process, saved to memory so results are compared as saved JSON;
        // its backend calls are counted, to draw the kill points from.
        var reference = new MemorySideEffects();
        var memory = new FaultInjectingBackend(new InMemoryPersistenceBackend(), new MemorySideEffects(), kill: null, callBase: 0);
        var refEngine = Create(ChaosFlows.Build(c.Shape, reference, c.FlowSeed, delays: false), c.Parallel, new EngineOptions { Persistence = memory });
        try { await refEngine.RunAsync(); } catch (InvalidOperationException) { /* the failing shapes end REVERTED */ }
        var expected = (await memory.GetFlowDetailAsync(refEngine.FlowDetailId!.Value))!;
        var census = new Census(memory.Calls - 1, memory.CallsOf(nameof(IPersistenceBackend.UpdateFlowStateAsync)));

        var effectsPath = Path.Combine(dir, "effects.log");
        var allowedExecs = new Dictionary<string, int>(StringComparer.Ordinal);
        var allowedReverts = new Dictionary<string, int>(StringComparer.Ordinal);
        int kills = 0, inFlightKills = 0, outran = 0;
        int plannedKills = rng.Next(1, settings.MaxKills + 1);
        Outcome Result(string? problem, int reexecuted = 0, SaveLedger? ledger = null) =>
            new(problem, kills, inFlightKills, reexecuted, [.. ledger?.KillPoints ?? [], .. Enumerable.Repeat("in-call kill not reached: the child finished first", outran)]);
        for (int attempt = 0; ; attempt++)
        {
            if (attempt > settings.MaxKills + 3) return Result($"the flow did not end after {attempt} children");
            await using (var probe = OpenBackend(settings.Backend, connection))
            {
                var state = (await probe.GetFlowDetailAsync(c.FlowDetailId))?.State;
                // A finished run is not started again: loading a REVERTED run resets it (TaskFlow's prepare).
                if (state is FlowState.Success or FlowState.Reverted or FlowState.Failure) break;
            }
            bool kill = kills < plannedKills;
            KillPoint? inCall = null;
            if (kill && rng.Next(4) != 0)
            {
                // Mostly any call, k drawn over the calls an uninterrupted run makes (fewer remain after a resume); now and
                // then right before a flow-state save, i.e. between the atom save and the flow-state save of one flush.
                int span = attempt == 0 ? census.Calls : Math.Max(4, census.Calls / 2);
                inCall = rng.Next(5) == 0 && census.FlowStateSaves > 0
                    ? new KillPoint(rng.Next(1, census.FlowStateSaves + 1), nameof(IPersistenceBackend.UpdateFlowStateAsync), After: false)
                    : new KillPoint(rng.Next(1, span + 1), "*", After: rng.Next(2) == 0);
            }
            File.AppendAllText(effectsPath, $"child {attempt}\n");
            Trace($"case {c.Index} attempt {attempt} start child kill={inCall?.ToString() ?? (kill ? "timed" : "none")}");
            using var child = StartChild(c, settings, connection, effectsPath, inCall, attempt * CallsPerChild);
            var stdout = new ChildOutput(child);
            bool killed = false;
            if (inCall is not null)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
                try { await child.WaitForExitAsync(timeout.Token); }
                catch (OperationCanceledException)
                {
                    child.Kill(entireProcessTree: true);
                    await child.WaitForExitAsync();
                    return Result($"the child did not end within 2 minutes (kill point {inCall}): {stdout.Text}");
                }
                if (child.ExitCode == SigKillExitCode) killed = true;
                else outran++;
            }
            else if (kill)
            {
                // Wait until the child is about to run. Then either kill it after a random time (anywhere, even before
                // the first save), or — more often — once its tasks have recorded a random number of new side effects,
                // a few milliseconds later: right in the middle of tasks running and states being saved.
                int effectsBefore = CountTaskLines(effectsPath);
                var ready = await stdout.WaitForLineAsync("ready", TimeSpan.FromSeconds(30));
                Trace($"case {c.Index} ready={ready}");
                if (ready && rng.Next(4) == 0) await Task.Delay(rng.Next(0, c.Parallel ? 60 : 140));
                else if (ready)
                {
                    int target = effectsBefore + rng.Next(1, 8);
                    var deadline = Stopwatch.StartNew();
                    while (!child.HasExited && CountTaskLines(effectsPath) < target && deadline.Elapsed < TimeSpan.FromSeconds(30))
                        await Task.Delay(1);
                    await Task.Delay(rng.Next(0, 15));
                }
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true); // SIGKILL
                    await child.WaitForExitAsync();
                    File.AppendAllText(effectsPath, "timed-kill\n");
                    killed = true;
                }
            }
            if (killed)
            {
                kills++;
                Trace($"case {c.Index} killed");
                if (await ProbeAsync(settings.Backend, connection, c.FlowDetailId, effectsPath) is { } atKill)
                {
                    bool any = false;
                    foreach (var atom in atKill.Atoms)
                    {
                        if (atom.State == AtomState.Running) { allowedExecs[atom.Name] = allowedExecs.GetValueOrDefault(atom.Name) + 1; any = true; }
                        if (atom.State == AtomState.Reverting) { allowedReverts[atom.Name] = allowedReverts.GetValueOrDefault(atom.Name) + 1; any = true; }
                    }
                    if (any) inFlightKills++;
                }
                continue;
            }
            await child.WaitForExitAsync();
            var output = await stdout.CompleteAsync();
            if (child.ExitCode != 0)
                return Result($"child exited {child.ExitCode}: {output.Trim()} {await child.StandardError.ReadToEndAsync()}");
        }

        var actual = await ProbeAsync(settings.Backend, connection, c.FlowDetailId, effectsPath);
        var lines = File.Exists(effectsPath) ? File.ReadAllLines(effectsPath) : [];
        var (ledgerProblem, ledger) = SaveLedger.Check(lines);
        if (ledgerProblem is not null) return Result(ledgerProblem, ledger: ledger);
        if (actual is null) return Result("the flow detail is not in the store", ledger: ledger);
        if (actual.State != expected.State) return Result($"flow ended {actual.State.ToTaskFlowName()}, uninterrupted run ended {expected.State.ToTaskFlowName()}", ledger: ledger);
        foreach (var e in expected.Atoms)
        {
            var a = actual.FindAtom(e.Name);
            if (a is null) return Result($"atom '{e.Name}' is missing from the saved run", ledger: ledger);
            if (a.State != e.State || a.Intention != e.Intention)
                return Result($"atom '{e.Name}' ended {a.State.ToTaskFlowName()}/{a.Intention.ToTaskFlowName()}, expected {e.State.ToTaskFlowName()}/{e.Intention.ToTaskFlowName()}", ledger: ledger);
            if (e is TaskDetail et && a is TaskDetail at && !SameJson(et.Result, at.Result))
                return Result($"atom '{e.Name}' result {Show(at.Result)}, expected {Show(et.Result)}", ledger: ledger);
            if (e is RetryDetail er && a is RetryDetail ar && (er.History.Count != ar.History.Count || !er.History.Zip(ar.History).All(p => SameJson(p.First.Value, p.Second.Value))))
                return Result($"retry '{e.Name}' history has {ar.History.Count} attempts, expected {er.History.Count}", ledger: ledger);
        }

        var got = Count(lines);
        var want = Count(reference.Lines);
        int reexecuted = 0;
        foreach (var name in got.Keys.Union(want.Keys))
        {
            var (gotExec, gotRevert) = got.GetValueOrDefault(name);
            var (wantExec, wantRevert) = want.GetValueOrDefault(name);
            int okExec = allowedExecs.GetValueOrDefault(name), okRevert = allowedReverts.GetValueOrDefault(name);
            if (gotExec < wantExec || gotExec > wantExec + okExec)
                return Result($"atom '{name}' executed {gotExec} times; an uninterrupted run executes it {wantExec} times and {okExec} kill(s) caught it RUNNING", ledger: ledger);
            if (gotRevert < wantRevert || gotRevert > wantRevert + okRevert)
                return Result($"atom '{name}' reverted {gotRevert} times; an uninterrupted run reverts it {wantRevert} times and {okRevert} kill(s) caught it REVERTING", ledger: ledger);
            reexecuted += gotExec - wantExec + gotRevert - wantRevert;
        }
        return Result(null, reexecuted, ledger);
    }

    /// <summary>Reads the saved run straight from the store (never through a broken variant) and logs what it holds.</summary>
    private static async Task<FlowDetail?> ProbeAsync(string backendKind, string connection, Guid flowDetailId, string effectsPath)
    {
        await using var probe = OpenBackend(backendKind, connection);
        var detail = await probe.GetFlowDetailAsync(flowDetailId);
        if (detail is not null) File.AppendAllText(effectsPath, $"probe {FaultInjectingBackend.Describe(detail.Atoms, detail.State)}\n");
        Trace("probed");
        return detail;
    }

    private static readonly Stopwatch Clock = Stopwatch.StartNew();

    private static void Trace(string what)
    {
        if (Environment.GetEnvironmentVariable("TASKFLOW_CHAOS_TRACE") == "1") Console.Error.WriteLine($"[{Clock.Elapsed.TotalMilliseconds,8:F0} ms] {what}");
    }

    /// <summary>The number of task calls (exec and revert lines) in the side-effects log.</summary>
    private static int CountTaskLines(string path)
    {
        if (!File.Exists(path)) return 0;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        int lines = 0;
        while (reader.ReadLine() is { } line)
            if (line.StartsWith("exec ", StringComparison.Ordinal) || line.StartsWith("revert ", StringComparison.Ordinal)) lines++;
        return lines;
    }

    private static Dictionary<string, (int Exec, int Revert)> Count(IEnumerable<string> lines)
    {
        var counts = new Dictionary<string, (int, int)>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var parts = line.Split(' ', 2);
            if (parts.Length != 2 || parts[0] is not ("exec" or "revert")) continue;
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

    private static Process StartChild(Case c, Settings settings, string connection, string effectsPath, KillPoint? kill, long callBase)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this program's path to start a child.");
        var info = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Started as `dotnet TaskFlow.Chaos.dll` when run through the dotnet host.
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(CrashResumeChaos).Assembly.Location);
        foreach (var a in new[]
        {
            ChildCommand, "--backend", settings.Backend, "--shape", c.Shape, "--engine", c.Parallel ? "parallel" : "serial",
            "--flow-seed", c.FlowSeed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--flow-detail", c.FlowDetailId.ToString(), "--logbook", c.LogBookId.ToString(), "--effects", effectsPath,
            "--call-base", callBase.ToString(System.Globalization.CultureInfo.InvariantCulture),
        }) info.ArgumentList.Add(a);
        if (kill is not null) { info.ArgumentList.Add("--kill-call"); info.ArgumentList.Add(kill.ToString()); }
        if (settings.Broken is not null) { info.ArgumentList.Add("--broken"); info.ArgumentList.Add(settings.Broken); }
        // The connection (a PostgreSQL string may hold a password) goes through the environment, not the command line.
        info.Environment["TASKFLOW_CHAOS_CONNECTION"] = connection;
        return Process.Start(info) ?? throw new InvalidOperationException("Could not start the child process.");
    }

    /// <summary>A child's standard output, read as it comes (so the child never blocks on a full pipe).</summary>
    private sealed class ChildOutput
    {
        private readonly System.Text.StringBuilder _text = new();
        private readonly Task _reader;
        private TaskCompletionSource _lineArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ChildOutput(Process child)
        {
            _reader = Task.Run(async () =>
            {
                while (await child.StandardOutput.ReadLineAsync() is { } line)
                {
                    TaskCompletionSource arrived;
                    lock (_text)
                    {
                        _text.AppendLine(line);
                        arrived = _lineArrived;
                        _lineArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
                    }
                    arrived.TrySetResult();
                }
                lock (_text) _lineArrived.TrySetResult();
            });
        }

        public string Text { get { lock (_text) return _text.ToString(); } }

        public async Task<bool> WaitForLineAsync(string expected, TimeSpan timeout)
        {
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                Task next;
                lock (_text)
                {
                    if (_text.ToString().Split('\n').Any(l => l.TrimEnd('\r') == expected)) return true;
                    if (_reader.IsCompleted) return false;
                    next = _lineArrived.Task;
                }
                var left = timeout - deadline.Elapsed;
                if (left <= TimeSpan.Zero || await Task.WhenAny(next, Task.Delay(left)) != next) return false;
            }
        }

        public async Task<string> CompleteAsync()
        {
            await _reader;
            return Text;
        }
    }

    /// <summary>The child: runs (or resumes) the case's flow to its end, saying "ready" just before it starts running.</summary>
    public static async Task<int> RunChildAsync(string[] args)
    {
        var o = Options.Parse(args);
        string backend = o.Require("backend"), shape = o.Require("shape");
        var connection = Environment.GetEnvironmentVariable("TASKFLOW_CHAOS_CONNECTION") ?? throw new InvalidOperationException("TASKFLOW_CHAOS_CONNECTION is not set.");
        using var effects = new FileSideEffects(o.Require("effects"));
        var real = OpenBackend(backend, connection);
        IPersistenceBackend underTest = o.Get("broken") switch
        {
            null => real,
            "ack-before-write" => new AckBeforeWriteBackend(real, TimeSpan.FromMilliseconds(20)),
            "drop-running" => new DropRunningSavesBackend(real),
            "forget-last-finished" => new ForgetFinishedBackend(real),
            var other => throw new ArgumentException($"Unknown broken variant '{other}'."),
        };
        var kill = o.Get("kill-call") is { } k ? KillPoint.Parse(k) : null;
        await using var store = new FaultInjectingBackend(underTest, effects, kill, long.Parse(o.Require("call-base"), System.Globalization.CultureInfo.InvariantCulture));
        var flow = ChaosFlows.Build(shape, effects, int.Parse(o.Require("flow-seed"), System.Globalization.CultureInfo.InvariantCulture), delays: true);
        var options = new EngineOptions { Persistence = store, FlowDetailId = Guid.Parse(o.Require("flow-detail")), LogBookId = Guid.Parse(o.Require("logbook")) };
        var engine = Create(flow, o.Require("engine") == "parallel", options);
        await engine.PrepareAsync();
        store.Phase = "run";
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
