using System.Diagnostics;
using TaskFlow.Atoms;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Chaos.Load;

/// <summary>
/// <c>load</c>: many concurrent persisted flows in one process on the parallel engine. Every flow's outcome is checked
/// (its state, its final result, and that what was saved matches), and throughput and peak memory are reported.
/// <c>--soak-seconds S</c> keeps running rounds for S seconds and fails when the managed heap after a full collection
/// grows past its level after warm-up (the first fifth of the time).
/// </summary>
internal static class LoadChaos
{
    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args);
        string backendKind = o.Get("backend") ?? "sqlite";
        int flows = int.Parse(o.Get("flows") ?? "1000", System.Globalization.CultureInfo.InvariantCulture);
        int parallel = int.Parse(o.Get("parallel") ?? "64", System.Globalization.CultureInfo.InvariantCulture);
        int soakSeconds = int.Parse(o.Get("soak-seconds") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        var durability = (o.Get("durability") ?? "fsync") == "fsync" ? SqliteDurability.FsyncEveryCommit : SqliteDurability.WalNoFsync;
        if (flows < 1 || parallel < 1) throw new ArgumentException("--flows and --parallel must be positive.");

        var work = Directory.CreateTempSubdirectory("taskflow-load-").FullName;
        string schema = $"chaos_load_{Environment.ProcessId}";
        IPersistenceBackend backend = backendKind switch
        {
            "memory" => new InMemoryPersistenceBackend(),
            "sqlite" => new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = "Data Source=" + Path.Combine(work, "load.db"), Durability = durability }),
            "postgres" => new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions
            {
                ConnectionString = Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES") is { Length: > 0 } cs ? cs
                    : throw new InvalidOperationException("TASKFLOW_POSTGRES is not set; start the server with: eval \"$(bash scripts/services.sh start postgres)\""),
                Schema = schema,
            }),
            _ => throw new ArgumentException($"--backend must be memory, sqlite or postgres, not '{backendKind}'."),
        };
        Console.WriteLine($"load backend={backendKind}{(backendKind == "sqlite" ? $" durability={durability}" : "")} flows={flows} parallel={parallel}{(soakSeconds > 0 ? $" soak={soakSeconds}s" : "")}");
        int passed = 0, failed = 0;
        try
        {
            await backend.EnsureSchemaAsync();
            var total = Stopwatch.StartNew();
            long tasks = 0;
            if (soakSeconds <= 0)
            {
                var (ok, bad, t) = await RoundAsync(backend, flows, parallel, 0);
                passed += ok; failed += bad; tasks += t;
            }
            else
            {
                long warmHeap = 0, lastHeap = 0;
                int round = 0;
                var warmUp = TimeSpan.FromSeconds(soakSeconds / 5.0);
                bool warmed = false;
                while (total.Elapsed < TimeSpan.FromSeconds(soakSeconds))
                {
                    var (ok, bad, t) = await RoundAsync(backend, flows, parallel, round++ * flows);
                    passed += ok; failed += bad; tasks += t;
                    // What the store keeps grows with every run by design; clear it so only the engine's memory is measured.
                    await backend.ClearAllAsync();
                    lastHeap = Heap();
                    if (!warmed && total.Elapsed >= warmUp) { warmed = true; warmHeap = lastHeap; }
                    Console.WriteLine($"round {round}: {passed} passed, {failed} failed, heap {lastHeap / 1024 / 1024.0:F1} MiB");
                }
                double growth = warmHeap == 0 ? 0 : (double)(lastHeap - warmHeap) / warmHeap;
                bool leak = lastHeap > warmHeap * 1.10 + 4 * 1024 * 1024;
                Console.WriteLine($"soak: heap after warm-up {warmHeap / 1024 / 1024.0:F1} MiB, at the end {lastHeap / 1024 / 1024.0:F1} MiB, growth {growth:P1} {(leak ? "FAIL (grew)" : "ok")}");
                if (leak) failed++;
            }
            double seconds = total.Elapsed.TotalSeconds;
            Console.WriteLine($"throughput: {passed + failed} flows in {seconds:F1} s = {(passed + failed) / seconds:F0} flows/s, {tasks / seconds:F0} tasks/s; peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / 1024 / 1024} MiB");
        }
        finally
        {
            if (backend is PostgreSqlPersistenceBackend)
                await DropSchemaAsync(schema);
            await backend.DisposeAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(work, recursive: true);
        }
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? 0 : 1;
    }

    private static long Heap()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static async Task DropSchemaAsync(string schema)
    {
        await using var connection = new Npgsql.NpgsqlConnection(Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES"));
        await connection.OpenAsync();
        await using var drop = new Npgsql.NpgsqlCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE", connection);
        await drop.ExecuteNonQueryAsync();
    }

    /// <summary>Runs <paramref name="flows"/> flows, at most <paramref name="parallel"/> at once; returns (passed, failed, tasks run).</summary>
    private static async Task<(int Passed, int Failed, long Tasks)> RoundAsync(IPersistenceBackend backend, int flows, int parallel, int offset)
    {
        int passed = 0, failed = 0;
        long tasks = 0;
        int reported = 0;
        await Parallel.ForAsync(offset, offset + flows, new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (i, ct) =>
        {
            var problem = await RunOneAsync(backend, i);
            Interlocked.Add(ref tasks, TasksPerFlow);
            if (problem is null) Interlocked.Increment(ref passed);
            else
            {
                Interlocked.Increment(ref failed);
                if (Interlocked.Increment(ref reported) <= 20) Console.WriteLine($"FAIL flow {i}: {problem}");
            }
        });
        return (passed, failed, tasks);
    }

    private const int TasksPerFlow = 6;

    /// <summary>
    /// One flow: start → three parallel adders → a sum → (every seventh flow) a task that fails, so its flow reverts.
    /// Returns null when the outcome, the result and the saved run are all as expected, else what is wrong.
    /// </summary>
    private static async Task<string?> RunOneAsync(IPersistenceBackend backend, int i)
    {
        bool fails = i % 7 == 3;
        var flow = new LinearFlow($"load-{i}")
        {
            FlowTask.Create("start", () => (long)i, provides: "n"),
            new UnorderedFlow("adders")
            {
                FlowTask.Create("add1", (long n) => n + 1, provides: "a1"),
                FlowTask.Create("add2", (long n) => n + 2, provides: "a2"),
                FlowTask.Create("add3", (long n) => n + 3, provides: "a3"),
            },
            FlowTask.Create("sum", (long a1, long a2, long a3) => a1 + a2 + a3, provides: "sum"),
            FlowTask.Create("check", (long sum) => fails ? throw new InvalidOperationException($"flow {i} fails on purpose") : sum, provides: "checked"),
        };
        var engine = FlowEngine.CreateParallel(flow, new EngineOptions { Persistence = backend, MaxDegreeOfParallelism = 4 });
        try
        {
            await engine.RunAsync();
            if (fails) return "ran to SUCCESS but should have failed and reverted";
            long expected = 3L * i + 6;
            if (engine.Storage.Fetch<long>("checked") != expected) return $"result {engine.Storage.Fetch<long>("checked")}, expected {expected}";
        }
        catch (InvalidOperationException e) when (fails && e.Message.EndsWith("on purpose", StringComparison.Ordinal))
        {
            if (engine.State != FlowState.Reverted) return $"failed but ended {engine.State}";
        }
        catch (Exception e)
        {
            return $"{e.GetType().Name}: {e.Message}";
        }
        var saved = await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value);
        if (saved is null) return "the run was not saved";
        if (saved.State != engine.State) return $"saved as {saved.State}, ended {engine.State}";
        foreach (var atom in saved.Atoms)
        {
            var expectedState = fails ? AtomState.Reverted : AtomState.Success;
            if (atom.State != expectedState) return $"atom '{atom.Name}' saved {atom.State}, expected {expectedState}";
        }
        return null;
    }
}
