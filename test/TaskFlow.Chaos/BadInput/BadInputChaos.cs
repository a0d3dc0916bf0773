using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using TaskFlow.Atoms;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.Persistence.Sqlite;

namespace TaskFlow.Chaos.BadInput;

/// <summary>
/// <c>bad-input</c>: generates invalid flows, unsaveable values, damaged stores and randomly mutated saved documents,
/// and checks that each ends in a documented exception (a <see cref="TaskFlowException"/> or an
/// <see cref="ArgumentException"/>) whose message names what is at fault, and that stored data the damage did not
/// touch still loads unchanged. Any other exception type (a NullReferenceException, an InvalidCastException, a raw
/// SqliteException or JsonException...) is a failure: it means an input reached code that did not check it.
/// </summary>
internal static class BadInputChaos
{
    private delegate Task<string?> CaseRunner(Random rng, string work, CaseInput input);

    private static readonly (string Name, CaseRunner Run)[] Cases =
    [
        ("cycle", CycleAsync),
        ("missing-requirement", MissingRequirementAsync),
        ("ambiguous-provider", AmbiguousAsync),
        ("duplicate-name", DuplicateNameAsync),
        ("flow-added-to-itself", SelfAddAsync),
        ("null-member", NullMemberAsync),
        ("unbindable-execute", UnbindableExecuteAsync),
        ("unsaveable-result", UnsaveableResultAsync),
        ("provides-shape-mismatch", ProvidesMismatchAsync),
        ("unsaveable-store-value", UnsaveableStoreAsync),
        ("changed-definition", ChangedDefinitionAsync),
        ("truncated-sqlite", TruncatedSqliteAsync),
        ("edited-sqlite-row", EditedSqliteRowAsync),
        ("newer-sqlite-schema", NewerSchemaAsync),
        ("mutated-directory-file", MutatedDirectoryFileAsync),
        ("mutated-document", MutatedDocumentAsync),
        ("mutated-worker-message", MutatedWorkerMessageAsync),
        ("random-flow-tree", FlowTreeCases.RandomTreeAsync),
        ("random-graph", FlowTreeCases.RandomGraphAsync),
    ];

    /// <summary>
    /// The order cases are drawn in: every kind, with the generators that make a new input each time (random trees and
    /// graphs, mutations) more often than the fixed shapes, which repeat with new names only.
    /// </summary>
    private static readonly (string Name, CaseRunner Run)[] Schedule =
    [
        .. Cases,
        .. Cases.Where(c => c.Name is "random-flow-tree" or "random-graph" or "mutated-document" or "mutated-worker-message" or "edited-sqlite-row" or "mutated-directory-file"),
        .. Cases.Where(c => c.Name is "random-flow-tree" or "random-graph"),
        .. Cases.Where(c => c.Name is "random-flow-tree"),
    ];

    /// <summary>The deliberately broken variants (test code only) <c>--broken</c> and <c>--self-test</c> use.</summary>
    internal static readonly string[] BrokenVariants = ["lenient-codec", "hide-damage", "drop-saves"];

    /// <summary>With <c>--only</c>: the case numbers to run (the others are skipped, their random draws kept).</summary>
    private static int[]? Only { get; set; }

    /// <summary>The broken variant this run uses, or null.</summary>
    internal static string? Broken { get; private set; }

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args, "cases", "seed", "strict-reads", "broken", "self-test", "only");
        int count = o.Int("cases", 200);
        int seed = o.Int("seed", Environment.TickCount);
        bool strict = o.Get("strict-reads") == "true";
        if (o.Get("self-test") == "true")
        {
            // Each broken variant must make the same run fail.
            int caught = 0, missed = 0;
            foreach (var variant in BrokenVariants)
            {
                Console.WriteLine($"self-test: bad-input against the broken variant '{variant}' (it must fail)");
                Broken = variant;
                var (passed, failed, _, first) = await RunCasesAsync(count, seed, strict, quiet: true);
                if (failed > 0) { caught++; Console.WriteLine($"PASS self-test {variant}: {failed} of {passed + failed} cases FAILED, as expected; first: {first}"); }
                else { missed++; Console.WriteLine($"FAIL self-test {variant}: all {passed} cases passed — bad-input did not notice"); }
            }
            Console.WriteLine($"{caught} passed, {missed} failed");
            return missed == 0 ? 0 : 1;
        }
        Broken = o.Get("broken");
        if (Broken is not null && !BrokenVariants.Contains(Broken))
            throw new ArgumentException($"--broken must be one of {string.Join(", ", BrokenVariants)}, not '{Broken}'.");
        Only = o.Get("only") is { } only ? [.. only.Split(',').Select(int.Parse)] : null;
        var summary = await RunCasesAsync(count, seed, strict, quiet: false);
        return summary.Failed == 0 && summary.Passed > 0 ? 0 : 1;
    }

    private static async Task<(int Passed, int Failed, int Gaps, string? First)> RunCasesAsync(int count, int seed, bool strict, bool quiet)
    {
        var root = Directory.CreateTempSubdirectory("taskflow-bad-input-").FullName;
        Console.WriteLine($"bad-input cases={count} seed={seed}{(strict ? " strict-reads" : "")}{(Broken is null ? "" : $" broken={Broken}")}");
        int passed = 0, failed = 0, gaps = 0;
        string? first = null;
        var perKind = new Dictionary<string, int>(StringComparer.Ordinal);
        var distinct = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var gapReasons = new Dictionary<string, int>(StringComparer.Ordinal);
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var (name, run) = Schedule[i % Schedule.Length];
            var caseRng = new Random(rng.Next());
            if (Only is not null && !Only.Contains(i)) continue;
            var work = Directory.CreateDirectory(Path.Combine(root, $"case-{i:D5}")).FullName;
            var input = new CaseInput();
            string? problem;
            try
            {
                problem = await run(caseRng, work, input);
                if (problem is null && input.IsEmpty) problem = "the case recorded no input (a bug of the check)";
            }
            catch (Exception e)
            {
                problem = $"the check itself threw {e.GetType().Name}: {e.Message}";
            }
            finally
            {
                SqliteConnection.ClearAllPools();
            }
            perKind[name] = perKind.GetValueOrDefault(name) + 1;
            if (!distinct.TryGetValue(name, out var hashes)) distinct[name] = hashes = [];
            if (!input.IsEmpty) hashes.Add(input.Hash());
            if (problem is null && input.GapReason is { } gap)
            {
                if (strict) problem = "silent change (--strict-reads): " + gap;
                else
                {
                    gaps++;
                    var key = $"{name}: {System.Text.RegularExpressions.Regex.Replace(gap, "[0-9a-f]{8}-[0-9a-f-]{27}", "…")}";
                    gapReasons[key] = gapReasons.GetValueOrDefault(key) + 1;
                    Directory.Delete(work, recursive: true);
                    continue;
                }
            }
            if (problem is null) { passed++; Directory.Delete(work, recursive: true); }
            else
            {
                failed++;
                first ??= $"{name}: {problem}";
                if (quiet) Directory.Delete(work, recursive: true);
                else Console.WriteLine($"FAIL {i} {name}: {problem}");
            }
        }
        if (failed == 0 || quiet) Directory.Delete(root, recursive: true);
        int totalDistinct = distinct.Values.Sum(h => h.Count);
        Console.WriteLine($"cases per kind (distinct inputs): {string.Join(", ", perKind.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value} ({distinct[kv.Key].Count})"))}");
        Console.WriteLine($"distinct inputs: {totalDistinct} of {count} cases (an input's shape hashed: the random names it drew, GUIDs and times left out)");
        if (gaps > 0 || strict)
        {
            Console.WriteLine($"known gaps: {gaps} damaged runs read back changed or vanished without an error; per-document checksums would turn them into refusals (--strict-reads fails on them)");
            foreach (var (reason, n) in gapReasons.OrderByDescending(kv => kv.Value)) Console.WriteLine($"  {n,4} {reason}");
        }
        if (!quiet) Console.WriteLine($"{passed} passed, {failed} failed");
        return (passed, failed, gaps, first);
    }

    // ---------------- checks ----------------

    /// <summary>Null when <paramref name="action"/> throws <typeparamref name="T"/> whose message contains every name; else what happened.</summary>
    private static async Task<string?> Expect<T>(Func<Task> action, params string[] names) where T : Exception
    {
        try
        {
            await action();
            return $"no exception; expected {typeof(T).Name}";
        }
        catch (Exception e) when (e is T)
        {
            foreach (var n in names)
                if (!e.Message.Contains(n, StringComparison.Ordinal)) return $"{e.GetType().Name} does not name '{n}': {e.Message}";
            return null;
        }
        catch (Exception e)
        {
            return $"undocumented {e.GetType().FullName}: {e.Message}";
        }
    }


    /// <summary>A flow's shape for <see cref="CaseInput"/>: kinds, names, requires and provides, nested.</summary>
    private static string Shape(FlowNode node) => node switch
    {
        Flow f => $"{f.GetType().Name}({f.Name}{(f.Retry is null ? "" : " retry " + f.Retry.GetType().Name)})[{string.Join(" ", f.Select(Shape))}]",
        Atom a => $"{a.GetType().Name}({a.Name} requires {string.Join(",", a.Requires ?? [])} provides {a.Provides})",
        _ => node.GetType().Name,
    };

    private static FlowTask Noop(string name, string? provides = null, params string[] requires) =>
        new LowLevelTask(name) { Provides = provides is null ? ProvidesSpec.None : ProvidesSpec.Whole(provides), Requires = requires };

    private sealed class LowLevelTask(string name, Func<object?>? result = null) : FlowTask(name)
    {
        public override ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context) => ValueTask.FromResult<object?>(result is null ? 1 : result());
    }

    // ---------------- invalid flows ----------------

    private static Task<string?> CycleAsync(Random rng, string work, CaseInput input)
    {
        int n = rng.Next(2, 7);
        var names = Enumerable.Range(0, n).Select(i => input.Name(rng, $"t{i}")).ToArray();
        var flow = new GraphFlow(input.Name(rng, "g"));
        var tasks = names.Select(t => Noop(t)).ToArray();
        foreach (var t in tasks) flow.Add(t);
        for (int i = 0; i < n - 1; i++) flow.Link(tasks[i], tasks[i + 1]);
        input.Add($"cycle {string.Join(">", names)}");
        // Closing the loop is refused at once (TaskFlow checks graph flows when they change) and leaves the flow usable.
        return Expect<DependencyCycleException>(() =>
        {
            flow.Link(tasks[n - 1], tasks[0]);
            return Task.CompletedTask;
        }, names[0], names[n - 1]);
    }

    private static Task<string?> MissingRequirementAsync(Random rng, string work, CaseInput input)
    {
        var symbol = input.Name(rng, "sym");
        var consumer = input.Name(rng, "consumer");
        var flow = new LinearFlow(input.Name(rng, "f")) { Noop(input.Name(rng, "a"), input.Name(rng, "out")), Noop(consumer, null, symbol) };
        input.Add("missing " + Shape(flow));
        return Expect<MissingDependenciesException>(() => FlowEngine.CreateParallel(flow).RunAsync(), symbol, consumer);
    }

    private static async Task<string?> AmbiguousAsync(Random rng, string work, CaseInput input)
    {
        var symbol = input.Name(rng, "sym");
        var flow = new GraphFlow(input.Name(rng, "g")) { Noop(input.Name(rng, "p1"), symbol), Noop(input.Name(rng, "p2"), symbol) };
        var consumer = Noop(input.Name(rng, "c"), null, symbol);
        input.Add("ambiguous " + Shape(flow) + Shape(consumer));
        var problem = await Expect<AmbiguousDependencyException>(() => { flow.Add(consumer); return Task.CompletedTask; }, symbol);
        if (problem is not null) return problem;
        return flow.Items.Count == 2 ? null : "the refused atom was added anyway";
    }

    private static Task<string?> DuplicateNameAsync(Random rng, string work, CaseInput input)
    {
        var dup = input.Name(rng, "dup");
        var flow = new LinearFlow(input.Name(rng, "f")) { Noop(dup), new UnorderedFlow(input.Name(rng, "u")) { Noop(input.Name(rng, "x")), Noop(dup) } };
        input.Add("duplicate " + Shape(flow));
        return Expect<DuplicateAtomNameException>(() => { FlowEngine.CreateSerial(flow).Compile(); return Task.CompletedTask; }, dup);
    }

    private static async Task<string?> SelfAddAsync(Random rng, string work, CaseInput input)
    {
        var name = input.Name(rng, "self");
        Flow flow = rng.Next(3) switch { 0 => new LinearFlow(name), 1 => new UnorderedFlow(name), _ => new GraphFlow(name) };
        flow.Add(Noop(input.Name(rng, "a")));
        input.Add("self-add " + Shape(flow));
        var problem = await Expect<FlowDefinitionException>(() => { flow.Add(flow); return Task.CompletedTask; }, name);
        if (problem is not null) return problem;
        // Indirectly: the outer flow inside its own child.
        var outer = new LinearFlow(input.Name(rng, "outer"));
        var inner = new LinearFlow(input.Name(rng, "inner")) { Noop(input.Name(rng, "b")) };
        outer.Add(inner);
        return await Expect<FlowDefinitionException>(() => { inner.Add(outer); return Task.CompletedTask; }, outer.Name);
    }

    private static Task<string?> NullMemberAsync(Random rng, string work, CaseInput input)
    {
        var flow = new LinearFlow(input.Name(rng, "f"));
        input.Add("null-member");
        return Expect<ArgumentNullException>(() => { flow.Add((FlowNode)null!); return Task.CompletedTask; });
    }

    private sealed class TwoExecutes(string name) : FlowTask(name)
    {
        public int Execute(int x) => x;
        public int Execute(string y) => y.Length;
    }

    private sealed class RefExecute(string name) : FlowTask(name)
    {
        public int Execute(ref int x) => x;
    }

    private static Task<string?> UnbindableExecuteAsync(Random rng, string work, CaseInput input)
    {
        var name = input.Name(rng, "task");
        return Expect<FlowDefinitionException>(() =>
        {
            FlowTask task = rng.Next(2) == 0 ? new TwoExecutes(name) : new RefExecute(name);
            input.Add("unbindable " + task.GetType().Name);
            FlowEngine.CreateSerial(new LinearFlow("f") { task }, new EngineOptions { Store = { ["x"] = 1, ["y"] = "a" } }).Compile();
            return Task.CompletedTask;
        }, name);
    }

    private sealed record Unsaveable(IntPtr Handle);

    private static async Task<string?> UnsaveableResultAsync(Random rng, string work, CaseInput input)
    {
        var name = input.Name(rng, "opens");
        var before = input.Name(rng, "before");
        await using var backend = new SqlitePersistenceBackend($"Data Source={Path.Combine(work, "r.db")}");
        var flow = new LinearFlow(input.Name(rng, "f")) { Noop(before), new LowLevelTask(name, () => new Unsaveable(new IntPtr(rng.Next()))) };
        input.Add("unsaveable-result " + Shape(flow));
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
        var problem = await Expect<PersistenceException>(() => engine.RunAsync(), name, typeof(Unsaveable).FullName!);
        if (problem is not null) return problem;
        var saved = await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value);
        if (saved?.State != TaskFlow.States.FlowState.Reverted) return $"the flow was saved as {saved?.State}, expected REVERTED";
        return saved.FindAtom(before)?.State == TaskFlow.States.AtomState.Reverted ? null : "the task before was not reverted";
    }

    private static async Task<string?> ProvidesMismatchAsync(Random rng, string work, CaseInput input)
    {
        // Declares two positional results but returns one value: the consumer of the second cannot get it.
        var second = input.Name(rng, "second");
        var producer = new LowLevelTask(input.Name(rng, "producer"), () => 7) { Provides = ProvidesSpec.Positional(input.Name(rng, "first"), second) };
        var consumer = Noop(input.Name(rng, "consumer"), null, second);
        var flow = new LinearFlow(input.Name(rng, "f")) { producer, consumer };
        input.Add("provides-mismatch " + Shape(flow));
        return await Expect<TaskFlowException>(() => FlowEngine.CreateSerial(flow).RunAsync(), second);
    }

    private static async Task<string?> UnsaveableStoreAsync(Random rng, string work, CaseInput input)
    {
        var key = input.Name(rng, "key");
        input.Add("unsaveable-store " + key);
        await using var backend = new SqlitePersistenceBackend($"Data Source={Path.Combine(work, "s.db")}");
        var engine = FlowEngine.CreateSerial(new LinearFlow("f") { Noop("a") }, new EngineOptions { Persistence = backend, Store = { ["ok"] = 1, [key] = new Unsaveable(new IntPtr(1)) } });
        var problem = await Expect<ArgumentException>(() => engine.PrepareAsync(), key);
        if (problem is not null) return problem;
        return (await backend.ListLogBooksAsync()).Count == 0 ? null : "something was written before the store was refused";
    }

    private static async Task<string?> ChangedDefinitionAsync(Random rng, string work, CaseInput input)
    {
        await using var backend = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = Path.Combine(work, "store") });
        var names = Enumerable.Range(0, rng.Next(2, 6)).Select(i => input.Name(rng, $"t{i}")).ToArray();
        var flow = new LinearFlow("f");
        foreach (var n in names) flow.Add(Noop(n));
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
        await engine.RunAsync();
        var renamed = names[rng.Next(names.Length)];
        input.Add($"changed-definition {Shape(flow)} renamed {renamed}");
        var changed = new LinearFlow("f");
        foreach (var n in names) changed.Add(Noop(n == renamed ? n + "-renamed" : n));
        var before = PersistenceJson.Serialize((await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value))!);
        var resumed = FlowEngine.CreateSerial(changed, new EngineOptions { Persistence = backend, FlowDetailId = engine.FlowDetailId });
        var problem = await Expect<FlowDefinitionException>(() => resumed.RunAsync(), renamed);
        if (problem is not null) return problem;
        var after = PersistenceJson.Serialize((await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value))!);
        return before == after ? null : "the saved run changed although resuming was refused";
    }

    // ---------------- damaged stores ----------------

    /// <summary>A store with a few finished runs; returns their saved forms by id.</summary>
    private static async Task<Dictionary<Guid, string>> FillAsync(IPersistenceBackend backend, Random rng)
    {
        var saved = new Dictionary<Guid, string>();
        int runs = rng.Next(2, 5);
        for (int r = 0; r < runs; r++)
        {
            var flow = new LinearFlow($"run{r}");
            for (int i = 0; i < rng.Next(1, 5); i++) flow.Add(new LowLevelTask($"r{r}t{i}", () => new { n = i, text = "é" + i }) { Provides = $"v{r}_{i}" });
            var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
            await engine.RunAsync();
            var detail = await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value);
            saved[detail!.Id] = PersistenceJson.Serialize(detail);
        }
        return saved;
    }

    /// <summary>
    /// Reads every saved run back: each read must either return the run as it was saved or throw
    /// <see cref="PersistenceException"/>; <paramref name="mustLoad"/> runs must load unchanged. A damaged run that is
    /// read back changed, or not at all, without an error is silent corruption: recorded on <paramref name="input"/> as a
    /// gap (a failure under <c>--strict-reads</c>), since nothing in today's stored format can tell such a change from
    /// a real save.
    /// </summary>
    private static async Task<string?> CheckReadsAsync(CaseInput input, Func<IPersistenceBackend> open, Dictionary<Guid, string> saved, ISet<Guid> mustLoad, bool mayVanish, params string[] mustNameOneOf)
    {
        await using var backend = Broken == "hide-damage" ? new HideDamageBackend(open()) : open();
        int refused = 0;
        try
        {
            await backend.ListLogBooksAsync();
        }
        catch (PersistenceException) { refused++; }
        catch (Exception e) { return $"listing logbooks threw undocumented {e.GetType().FullName}: {e.Message}"; }
        foreach (var (id, json) in saved)
        {
            try
            {
                var detail = await backend.GetFlowDetailAsync(id);
                if (detail is null)
                {
                    if (mustLoad.Contains(id)) return $"untouched run {id} is gone";
                    // Its flow row or file is still there (damaged, not deleted): only lost pages may make a run vanish.
                    if (!mayVanish) return $"damaged run {id} vanished without an error";
                    input.Gap($"damaged run {id} vanished without an error");
                    continue;
                }
                if (PersistenceJson.Serialize(detail) != json)
                {
                    if (mustLoad.Contains(id)) return $"untouched run {id} changed";
                    input.Gap($"damaged run {id} was read back changed without an error");
                }
            }
            catch (PersistenceException e)
            {
                if (mustLoad.Contains(id)) return $"untouched run {id} no longer loads: {e.Message}";
                if (mustNameOneOf.Length > 0 && !mustNameOneOf.Any(n => e.Message.Contains(n, StringComparison.Ordinal)))
                    return $"the error names none of {string.Join(", ", mustNameOneOf.Select(n => $"'{n}'"))}: {e.Message}";
                refused++;
            }
            catch (Exception e)
            {
                return $"reading run {id} threw undocumented {e.GetType().FullName}: {e.Message}";
            }
        }
        return null;
    }

    private static async Task<string?> TruncatedSqliteAsync(Random rng, string work, CaseInput input)
    {
        var path = Path.Combine(work, "t.db");
        Dictionary<Guid, string> saved;
        await using (var backend = new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={path}", Durability = SqliteDurability.FsyncEveryCommit }))
            saved = await FillAsync(backend, rng);
        SqliteConnection.ClearAllPools();
        // Fold the WAL into the file so truncating it damages real data.
        using (var c = new SqliteConnection($"Data Source={path}")) { c.Open(); using var cp = c.CreateCommand(); cp.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)"; cp.ExecuteNonQuery(); }
        SqliteConnection.ClearAllPools();
        var length = new FileInfo(path).Length;
        var cut = rng.NextInt64(0, length);
        input.Add($"truncated-sqlite {string.Join("\n", saved.Values)} at {cut} of {length}");
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(cut);
        return await CheckReadsAsync(input, () => new SqlitePersistenceBackend($"Data Source={path}"), saved, new HashSet<Guid>(), mayVanish: true, path);
    }

    private static async Task<string?> EditedSqliteRowAsync(Random rng, string work, CaseInput input)
    {
        var path = Path.Combine(work, "e.db");
        Dictionary<Guid, string> saved;
        await using (var backend = new SqlitePersistenceBackend($"Data Source={path}"))
            saved = await FillAsync(backend, rng);
        SqliteConnection.ClearAllPools();
        var victim = saved.Keys.ElementAt(rng.Next(saved.Count));
        string atomId;
        using (var c = new SqliteConnection($"Data Source={path}"))
        {
            c.Open();
            using var read = c.CreateCommand();
            read.CommandText = "SELECT id, data FROM atom_details WHERE flow_detail_id = $f ORDER BY seq LIMIT 1";
            read.Parameters.AddWithValue("$f", victim.ToString("D"));
            using var reader = read.ExecuteReader();
            if (!reader.Read()) return "no atom row to edit";
            atomId = reader.GetString(0);
            var data = reader.GetString(1);
            reader.Close();
            using var write = c.CreateCommand();
            write.CommandText = "UPDATE atom_details SET data = $d WHERE flow_detail_id = $f AND id = $a";
            var mutated = Mutate(data, rng);
            input.Add($"edited-row {string.Join("\n", saved.Values)} {data} -> {mutated}");
            write.Parameters.AddWithValue("$d", mutated);
            write.Parameters.AddWithValue("$f", victim.ToString("D"));
            write.Parameters.AddWithValue("$a", atomId);
            write.ExecuteNonQuery();
        }
        SqliteConnection.ClearAllPools();
        var untouched = new HashSet<Guid>(saved.Keys.Where(k => k != victim));
        return await CheckReadsAsync(input, () => new SqlitePersistenceBackend($"Data Source={path}"), saved, untouched, mayVanish: false, victim.ToString("D"));
    }

    private static async Task<string?> NewerSchemaAsync(Random rng, string work, CaseInput input)
    {
        var path = Path.Combine(work, "n.db");
        await using (var backend = new SqlitePersistenceBackend($"Data Source={path}"))
            await FillAsync(backend, rng);
        SqliteConnection.ClearAllPools();
        int future = SqlitePersistenceBackend.SchemaVersion + rng.Next(1, 50);
        input.Add($"newer-schema {future}");
        using (var c = new SqliteConnection($"Data Source={path}"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = $"UPDATE schema_version SET version = {future}";
            cmd.ExecuteNonQuery();
        }
        SqliteConnection.ClearAllPools();
        var size = new FileInfo(path).Length;
        await using var reopened = new SqlitePersistenceBackend($"Data Source={path}");
        var problem = await Expect<PersistenceException>(() => reopened.ListLogBooksAsync(), future.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (problem is not null) return problem;
        return await Expect<PersistenceException>(() => reopened.SaveLogBookAsync(LogBook.Create("x")), future.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    private static async Task<string?> MutatedDirectoryFileAsync(Random rng, string work, CaseInput input)
    {
        var folder = Path.Combine(work, "store");
        Dictionary<Guid, string> saved;
        await using (var backend = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }))
            saved = await FillAsync(backend, rng);
        var files = Directory.GetFiles(folder, "*.json", SearchOption.AllDirectories);
        if (files.Length == 0) return "the directory backend wrote no JSON files";
        var victim = files[rng.Next(files.Length)];
        var original = File.ReadAllText(victim);
        var damaged = Mutate(original, rng);
        input.Add($"mutated-file {Path.GetRelativePath(folder, victim)} {string.Join("\n", saved.Values)} {original} -> {damaged}");
        File.WriteAllText(victim, damaged);
        // A flow detail's file is that run only; a logbook's file is read by no flow-detail read; the schema marker
        // concerns every run.
        var untouched = Path.GetFileName(victim) == "schema.json" ? new HashSet<Guid>()
            : new HashSet<Guid>(saved.Keys.Where(k => Path.GetFileNameWithoutExtension(victim) != k.ToString("D")));
        return await CheckReadsAsync(input, () => new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }), saved, untouched, mayVanish: false,
            // The damaged file, or (for the schema marker) the store it versions.
            Path.GetFileName(victim), folder);
    }

    private static async Task<string?> MutatedDocumentAsync(Random rng, string work, CaseInput input)
    {
        var backend = new InMemoryPersistenceBackend();
        var saved = await FillAsync(backend, rng);
        var json = saved.Values.ElementAt(rng.Next(saved.Count));
        var mutated = Mutate(json, rng);
        input.Add($"mutated-document {json} -> {mutated}");
        try
        {
            var detail = ParseFlowDetail(mutated);
            // Accepted: it must be a valid flow detail that survives a round trip, and say what the document says (a
            // codec that turned a refused document into some other valid flow detail would round-trip too).
            var again = PersistenceJson.DeserializeFlowDetail(PersistenceJson.Serialize(detail));
            if (!again.Equals(detail)) return "an accepted mutation does not round-trip";
            return SameDocument(mutated, PersistenceJson.Serialize(detail)) ? null
                : $"an accepted mutation was read as another flow detail than the document holds: {Clip(mutated)} was read as {Clip(PersistenceJson.Serialize(detail))}";
        }
        catch (PersistenceException) { return null; }
        catch (Exception e) { return $"undocumented {e.GetType().FullName}: {e.Message}"; }
    }

    /// <summary>
    /// A valid worker-protocol message (request, response, heartbeat), randomly damaged or grown past the size bound:
    /// parsing must reject it with <see cref="TaskFlow.Workers.WorkerProtocolException"/>, or accept it only as a
    /// message that serializes and parses back to an equal one.
    /// </summary>
    private static Task<string?> MutatedWorkerMessageAsync(Random rng, string work, CaseInput input)
    {
        var failure = TaskFlow.Failures.Failure.FromException(new InvalidOperationException("boom " + rng.Next()));
        TaskFlow.Workers.WorkerMessage message = rng.Next(3) switch
        {
            0 => new TaskFlow.Workers.TaskRequest(Guid.NewGuid().ToString(), input.Name(rng, "task"), input.Name(rng, "atom"), TaskFlow.Workers.TaskAction.Revert,
                new Dictionary<string, JsonElement> { ["x"] = JsonSerializer.SerializeToElement(rng.Next()), ["s"] = JsonSerializer.SerializeToElement("é" + rng.Next()) }, "reply-" + rng.Next())
            {
                Result = JsonSerializer.SerializeToElement(new { a = 1, b = new[] { 1, 2 } }),
                FlowFailures = new Dictionary<string, TaskFlow.Failures.Failure> { ["other"] = failure },
                Timeout = TimeSpan.FromSeconds(rng.Next(1, 100)),
            },
            1 => new TaskFlow.Workers.TaskResponse(Guid.NewGuid().ToString(), TaskFlow.Workers.ResponseState.Failure, input.Name(rng, "worker")) { Failure = failure },
            _ => new TaskFlow.Workers.WorkerNotification(input.Name(rng, "worker"), input.Name(rng, "topic"), [input.Name(rng, "t1"), input.Name(rng, "t2")], TimeSpan.FromSeconds(5)),
        };
        var valid = Encoding.UTF8.GetString(TaskFlow.Workers.WorkerProtocol.Serialize(message));
        byte[] bytes;
        int limit = TaskFlow.Workers.WorkerProtocol.DefaultMaxMessageBytes;
        if (rng.Next(10) == 0)
        {
            // Oversized: a real request above the protocol's default bound (4 MiB), padded by a big argument.
            var padding = new string((char)('a' + rng.Next(26)), limit + rng.Next(1, 1 << 16));
            var big = new TaskFlow.Workers.TaskRequest(Guid.NewGuid().ToString(), input.Name(rng, "task"), input.Name(rng, "atom"), TaskFlow.Workers.TaskAction.Execute,
                new Dictionary<string, JsonElement> { ["blob"] = JsonSerializer.SerializeToElement(padding) }, "reply-" + rng.Next());
            bytes = TaskFlow.Workers.WorkerProtocol.Serialize(big);
            input.Add($"oversized {padding.Length} {padding[0]}");
            if (bytes.Length <= limit) return Task.FromResult<string?>($"the oversized message is only {bytes.Length} bytes");
            try
            {
                ParseMessage(bytes, limit);
                return Task.FromResult<string?>($"a {bytes.Length}-byte message was accepted although the bound is {limit} bytes");
            }
            catch (TaskFlow.Workers.WorkerProtocolException e)
            {
                return Task.FromResult(e.Message.Contains(limit.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
                    || e.Message.Contains(bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
                    ? null : $"the rejection names neither the size nor the bound: {e.Message}");
            }
            catch (Exception e)
            {
                return Task.FromResult<string?>($"undocumented {e.GetType().FullName}: {e.Message}");
            }
        }
        bytes = Encoding.UTF8.GetBytes(Mutate(valid, rng));
        input.Add(bytes);
        try
        {
            var parsed = ParseMessage(bytes, limit);
            var again = TaskFlow.Workers.WorkerProtocol.Parse(TaskFlow.Workers.WorkerProtocol.Serialize(parsed));
            var first = Encoding.UTF8.GetString(TaskFlow.Workers.WorkerProtocol.Serialize(parsed));
            var second = Encoding.UTF8.GetString(TaskFlow.Workers.WorkerProtocol.Serialize(again));
            if (first != second) return Task.FromResult<string?>("an accepted mutation does not round-trip");
            return Task.FromResult(SameDocument(Encoding.UTF8.GetString(bytes), first) ? null
                : $"an accepted message was read as another message than it holds: {Clip(Encoding.UTF8.GetString(bytes))} was read as {Clip(first)}");
        }
        catch (TaskFlow.Workers.WorkerProtocolException e)
        {
            return Task.FromResult(e.Message.Length > 0 ? null : "the rejection says nothing");
        }
        catch (Exception e)
        {
            return Task.FromResult<string?>($"undocumented {e.GetType().FullName}: {e.Message}");
        }
    }

    // ---------------- codecs, as the broken variants see them ----------------

    /// <summary>The flow-detail codec; under the "lenient-codec" variant one that accepts what it should refuse.</summary>
    private static FlowDetail ParseFlowDetail(string json)
    {
        try { return PersistenceJson.DeserializeFlowDetail(json); }
        catch (PersistenceException) when (Broken == "lenient-codec") { return FlowDetail.Create(Guid.NewGuid(), "accepted-anyway"); }
    }

    /// <summary>The worker-protocol parser; under the "lenient-codec" variant one that accepts what it should refuse.</summary>
    private static TaskFlow.Workers.WorkerMessage ParseMessage(byte[] bytes, int limit)
    {
        try { return TaskFlow.Workers.WorkerProtocol.Parse(bytes, limit); }
        catch (TaskFlow.Workers.WorkerProtocolException) when (Broken == "lenient-codec")
        {
            return new TaskFlow.Workers.TaskResponse(Guid.NewGuid().ToString(), TaskFlow.Workers.ResponseState.Running, "accepted-anyway");
        }
    }

    private static string Clip(string text) => text.Length <= 600 ? text : text[..600] + "…";

    /// <summary>
    /// Whether two JSON texts hold the same value (what was accepted is what was sent). An absent member and an empty
    /// object or array count as the same (a reader may default an omitted empty collection); null stays distinct.
    /// </summary>
    private static bool SameDocument(string sent, string understood)
    {
        try
        {
            var deep = new JsonNodeOptions();
            var docOptions = new JsonDocumentOptions { MaxDepth = 1024 };
            var a = Normalize(JsonNode.Parse(sent, deep, docOptions));
            var b = Normalize(JsonNode.Parse(understood, deep, docOptions));
            return JsonNode.DeepEquals(a, b);
        }
        catch (JsonException) { return false; }
    }

    private static JsonNode? Normalize(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var key in o.Select(kv => kv.Key).ToList())
                {
                    // An id is a GUID, whatever the case of its hex digits: a mutation that only changed that case
                    // says the same thing. (Only ids: a string in a result must come back exactly as sent.)
                    if ((key == "id" || key.EndsWith("_id", StringComparison.Ordinal)) && o[key] is JsonValue idValue
                        && idValue.TryGetValue(out string? text) && Guid.TryParseExact(text, "D", out var id))
                        o[key] = id.ToString("D");
                    var value = Normalize(o[key]);
                    if (value is JsonObject { Count: 0 } or JsonArray { Count: 0 }) o.Remove(key);
                }
                return o;
            case JsonArray a:
                foreach (var item in a) Normalize(item);
                return a;
            default:
                return node;
        }
    }

    // ---------------- mutations ----------------

    /// <summary>A random damage to a JSON document: a flipped byte, a cut, a removed or retyped member, a deep value.</summary>
    internal static string Mutate(string json, Random rng)
    {
        switch (rng.Next(8))
        {
            case 0: // flip a character
            {
                var chars = json.ToCharArray();
                int i = rng.Next(chars.Length);
                chars[i] = (char)rng.Next(32, 127);
                return new string(chars);
            }
            case 1: // cut the document
                return json[..rng.Next(json.Length)];
            case 2: // not JSON at all
                return rng.Next(2) == 0 ? "" : "\u0000\u0001garbage";
            default:
            {
                var node = JsonNode.Parse(json);
                if (node is null) return "null";
                var objects = new List<JsonObject>();
                void Collect(JsonNode? n)
                {
                    if (n is JsonObject o) { objects.Add(o); foreach (var (_, v) in o) Collect(v); }
                    else if (n is JsonArray a) foreach (var v in a) Collect(v);
                }
                Collect(node);
                var target = objects[rng.Next(objects.Count)];
                var keys = target.Select(kv => kv.Key).ToArray();
                if (keys.Length == 0) { target["unexpected"] = 1; return node.ToJsonString(); }
                var key = keys[rng.Next(keys.Length)];
                switch (rng.Next(5))
                {
                    case 0: target.Remove(key); break;
                    case 1: target[key] = 12345; break;
                    case 2: target[key] = new JsonArray(1, "two", null); break;
                    case 3: target[key] = null; break;
                    default:
                    {
                        // Deeper than any reader allows.
                        JsonNode deep = 1;
                        for (int d = 0; d < 200; d++) deep = new JsonArray(deep);
                        target[key] = deep;
                        break;
                    }
                }
                return node.ToJsonString();
            }
        }
    }
}
