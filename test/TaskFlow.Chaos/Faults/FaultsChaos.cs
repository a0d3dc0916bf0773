using System.Diagnostics;
using Microsoft.Data.Sqlite;
using TaskFlow.Atoms;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Chaos.Faults;

/// <summary>
/// <c>faults</c>: the store goes away in the middle of a persisted run — a private PostgreSQL server is stopped
/// (and later started again), or another process holds the SQLite file's write lock. The run must stop with a
/// <see cref="PersistenceException"/> that says what could not be saved (and never shows a password), the saved run
/// must still load, and once the fault clears a new engine must resume it to the end, re-running only the atoms that
/// were saved as RUNNING when the store went away.
/// </summary>
internal static class FaultsChaos
{
    public const string LockHolderCommand = "faults-lock-holder";
    private const string Password = "fault-s3cret";

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args);
        int rounds = int.Parse(o.Get("rounds") ?? "3", System.Globalization.CultureInfo.InvariantCulture);
        var which = o.Get("backend") ?? "all";
        int passed = 0, failed = 0;
        for (int r = 0; r < rounds; r++)
        {
            foreach (var (name, run) in new (string, Func<int, Task<string?>>)[] { ("sqlite-locked", SqliteLockedAsync), ("postgres-stopped", PostgresStoppedAsync) })
            {
                if (which != "all" && !name.StartsWith(which, StringComparison.Ordinal)) continue;
                string? problem;
                var watch = Stopwatch.StartNew();
                try { problem = await run(r); }
                catch (Exception e) { problem = $"the check itself threw {e.GetType().Name}: {e.Message}"; }
                if (problem is null) { passed++; Console.WriteLine($"PASS {name} round {r} ({watch.Elapsed.TotalSeconds:F1} s)"); }
                else { failed++; Console.WriteLine($"FAIL {name} round {r}: {problem}"); }
            }
        }
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? 0 : 1;
    }

    /// <summary>A linear flow whose tasks take a little time and record their calls.</summary>
    private static Flow Build(MemorySideEffects effects, int tasks) =>
        ChaosSteps(effects, tasks);

    private static LinearFlow ChaosSteps(ISideEffects effects, int tasks)
    {
        var flow = new LinearFlow("faulty");
        for (int i = 1; i <= tasks; i++)
        {
            int n = i;
            flow.Add(FlowTask.Create($"step{n:D2}", async (CancellationToken ct) =>
            {
                effects.Record($"exec step{n:D2}");
                await Task.Delay(15, ct);
                return n;
            }, provides: $"r{n}"));
        }
        return flow;
    }

    /// <summary>Runs until the store fails, checks the error, clears the fault, resumes, and checks the outcome.</summary>
    private static async Task<string?> FaultThenResumeAsync(Func<IPersistenceBackend> open, Func<Task> injectFault, Func<Task> clearFault, string[] mustMention, int tasks = 40)
    {
        var effects = new MemorySideEffects();
        Guid id;
        await using (var backend = open())
        {
            var engine = FlowEngine.CreateSerial(Build(effects, tasks), new EngineOptions { Persistence = backend });
            var run = engine.RunAsync();
            // Let a third of the flow finish, then take the store away.
            while (effects.Lines.Count < tasks / 3 && !run.IsCompleted) await Task.Delay(5);
            await injectFault();
            try
            {
                await run;
                return "the run finished although its store was gone";
            }
            catch (PersistenceException e)
            {
                for (Exception? x = e; x is not null; x = x.InnerException)
                    if (x.ToString().Contains(Password, StringComparison.Ordinal)) return "the error shows the password";
                foreach (var m in mustMention)
                    if (!e.Message.Contains(m, StringComparison.Ordinal)) return $"the error does not mention '{m}': {e.Message}";
            }
            catch (Exception e)
            {
                return $"the run failed with {e.GetType().FullName} instead of a PersistenceException: {e.Message}";
            }
            if (engine.State != FlowState.Failure) return $"the engine ended {engine.State}, expected FAILURE";
            id = engine.FlowDetailId!.Value;
        }
        int executedBefore = effects.Lines.Count;
        await clearFault();

        var running = new HashSet<string>(StringComparer.Ordinal);
        await using (var backend = open())
        {
            var saved = await backend.GetFlowDetailAsync(id);
            if (saved is null) return "the run was not saved";
            foreach (var a in saved.Atoms) if (a.State == AtomState.Running) running.Add(a.Name);
            int done = saved.Atoms.Count(a => a.State == AtomState.Success);
            if (done == 0) return "nothing was saved as done before the fault";
            var resumed = FlowEngine.CreateSerial(Build(effects, tasks), new EngineOptions { Persistence = backend, FlowDetailId = id });
            await resumed.RunAsync();
            var final = (await backend.GetFlowDetailAsync(id))!;
            if (final.State != FlowState.Success) return $"the resumed run ended {final.State}";
            for (int i = 1; i <= tasks; i++)
                if (resumed.Storage.Fetch<int>($"r{i}") != i) return $"r{i} is wrong after the resume";
        }
        var counts = effects.Lines.GroupBy(l => l).ToDictionary(g => g.Key[5..], g => g.Count());
        for (int i = 1; i <= tasks; i++)
        {
            var name = $"step{i:D2}";
            int c = counts.GetValueOrDefault(name);
            int allowed = running.Contains(name) ? 2 : 1;
            if (c < 1 || c > allowed) return $"{name} ran {c} times (allowed {allowed}; {executedBefore} calls before the fault)";
        }
        return null;
    }

    // ---------------- SQLite: the file is locked by another process ----------------

    private static async Task<string?> SqliteLockedAsync(int round)
    {
        var dir = Directory.CreateTempSubdirectory("taskflow-faults-sqlite-").FullName;
        var path = Path.Combine(dir, "faulty.db");
        Process? holder = null;
        try
        {
            return await FaultThenResumeAsync(
                () => new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={path}", BusyTimeout = TimeSpan.FromMilliseconds(300) }),
                async () =>
                {
                    holder = StartSelf(LockHolderCommand, "--db", path);
                    var line = await holder.StandardOutput.ReadLineAsync();
                    if (line != "locked") throw new InvalidOperationException($"the lock holder said '{line}'");
                },
                async () =>
                {
                    holder!.Kill(entireProcessTree: true);
                    await holder.WaitForExitAsync();
                },
                [path]);
        }
        finally
        {
            holder?.Dispose();
            SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The child that holds an exclusive lock on a SQLite file until it is killed.</summary>
    public static async Task<int> HoldLockAsync(string[] args)
    {
        var o = Options.Parse(args);
        await using var connection = new SqliteConnection($"Data Source={o.Require("db")};Pooling=False");
        await connection.OpenAsync();
        await using var begin = connection.CreateCommand();
        begin.CommandText = "BEGIN EXCLUSIVE";
        await begin.ExecuteNonQueryAsync();
        Console.WriteLine("locked");
        await Console.Out.FlushAsync();
        await Task.Delay(Timeout.Infinite);
        return 0;
    }

    // ---------------- PostgreSQL: the server is stopped, then started again ----------------

    private static async Task<string?> PostgresStoppedAsync(int round)
    {
        var repo = FindRepository();
        var servicesDir = $"/tmp/taskflow-faults-pg-{Environment.ProcessId}";
        int port = 5441 + round % 5;
        var env = new Dictionary<string, string>
        {
            ["TASKFLOW_SERVICES_DIR"] = servicesDir,
            ["TASKFLOW_PG_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // A password of our own, so the check can look for it in every error.
            ["TASKFLOW_SERVICES_PASSWORD"] = Password,
        };
        var exports = await ServicesAsync(repo, env, "start", "postgres");
        var connection = exports.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("export TASKFLOW_POSTGRES=", StringComparison.Ordinal))
            ?? throw new InvalidOperationException("services.sh printed no TASKFLOW_POSTGRES");
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connection["export TASKFLOW_POSTGRES=".Length..].Trim('\'')) { Timeout = 3, CommandTimeout = 5 };
        var schema = $"faults_{round}_{Environment.ProcessId}";
        try
        {
            return await FaultThenResumeAsync(
                () => new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = builder.ConnectionString, Schema = schema }),
                () => ServicesAsync(repo, env, "stop"),
                () => ServicesAsync(repo, env, "start", "postgres"),
                ["faulty"]);
        }
        finally
        {
            Npgsql.NpgsqlConnection.ClearAllPools();
            await ServicesAsync(repo, env, "stop", "--clean");
        }
    }

    private static string FindRepository()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "scripts", "services.sh"))) return dir.FullName;
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "scripts", "services.sh"))) return dir.FullName;
        throw new InvalidOperationException("Cannot find scripts/services.sh above this program or the current directory; run from the repository.");
    }

    private static async Task<string> ServicesAsync(string repo, Dictionary<string, string> env, params string[] args)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = repo };
        info.ArgumentList.Add(Path.Combine(repo, "scripts", "services.sh"));
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in env) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"services.sh {string.Join(' ', args)} failed: {await stderr}");
        return await stdout;
    }

    private static Process StartSelf(params string[] args)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(FaultsChaos).Assembly.Location);
        foreach (var a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }
}
