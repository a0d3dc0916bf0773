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
    private delegate Task<string?> CaseRunner(Random rng, string work);

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
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args);
        int count = int.Parse(o.Get("cases") ?? "200", System.Globalization.CultureInfo.InvariantCulture);
        int seed = int.Parse(o.Get("seed") ?? Environment.TickCount.ToString(System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);
        var root = Directory.CreateTempSubdirectory("taskflow-bad-input-").FullName;
        Console.WriteLine($"bad-input cases={count} seed={seed}");
        int passed = 0, failed = 0;
        var perKind = new Dictionary<string, int>(StringComparer.Ordinal);
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var (name, run) = Cases[i % Cases.Length];
            var caseRng = new Random(rng.Next());
            var work = Directory.CreateDirectory(Path.Combine(root, $"case-{i:D5}")).FullName;
            string? problem;
            try
            {
                problem = await run(caseRng, work);
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
            if (problem is null) { passed++; Directory.Delete(work, recursive: true); }
            else { failed++; Console.WriteLine($"FAIL {i} {name}: {problem}"); }
        }
        if (failed == 0) Directory.Delete(root, recursive: true);
        Console.WriteLine(string.Join(", ", perKind.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}")));
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? 0 : 1;
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

    private static string Name(Random rng, string prefix) => $"{prefix}-{rng.Next(1000, 9999)}";

    private static FlowTask Noop(string name, string? provides = null, params string[] requires) =>
        new LowLevelTask(name) { Provides = provides is null ? ProvidesSpec.None : ProvidesSpec.Whole(provides), Requires = requires };

    private sealed class LowLevelTask(string name, Func<object?>? result = null) : FlowTask(name)
    {
        public override ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context) => ValueTask.FromResult<object?>(result is null ? 1 : result());
    }

    // ---------------- invalid flows ----------------

    private static Task<string?> CycleAsync(Random rng, string work)
    {
        int n = rng.Next(2, 7);
        var names = Enumerable.Range(0, n).Select(i => Name(rng, $"t{i}")).ToArray();
        var flow = new GraphFlow(Name(rng, "g"));
        var tasks = names.Select(t => Noop(t)).ToArray();
        foreach (var t in tasks) flow.Add(t);
        for (int i = 0; i < n - 1; i++) flow.Link(tasks[i], tasks[i + 1]);
        // Closing the loop is refused at once (TaskFlow checks graph flows when they change) and leaves the flow usable.
        return Expect<DependencyCycleException>(() =>
        {
            flow.Link(tasks[n - 1], tasks[0]);
            return Task.CompletedTask;
        }, names[0], names[n - 1]);
    }

    private static Task<string?> MissingRequirementAsync(Random rng, string work)
    {
        var symbol = Name(rng, "sym");
        var consumer = Name(rng, "consumer");
        var flow = new LinearFlow(Name(rng, "f")) { Noop(Name(rng, "a"), Name(rng, "out")), Noop(consumer, null, symbol) };
        return Expect<MissingDependenciesException>(() => FlowEngine.CreateParallel(flow).RunAsync(), symbol, consumer);
    }

    private static async Task<string?> AmbiguousAsync(Random rng, string work)
    {
        var symbol = Name(rng, "sym");
        var flow = new GraphFlow(Name(rng, "g")) { Noop(Name(rng, "p1"), symbol), Noop(Name(rng, "p2"), symbol) };
        var consumer = Noop(Name(rng, "c"), null, symbol);
        var problem = await Expect<AmbiguousDependencyException>(() => { flow.Add(consumer); return Task.CompletedTask; }, symbol);
        if (problem is not null) return problem;
        return flow.Items.Count == 2 ? null : "the refused atom was added anyway";
    }

    private static Task<string?> DuplicateNameAsync(Random rng, string work)
    {
        var dup = Name(rng, "dup");
        var flow = new LinearFlow(Name(rng, "f")) { Noop(dup), new UnorderedFlow(Name(rng, "u")) { Noop(Name(rng, "x")), Noop(dup) } };
        return Expect<DuplicateAtomNameException>(() => { FlowEngine.CreateSerial(flow).Compile(); return Task.CompletedTask; }, dup);
    }

    private static async Task<string?> SelfAddAsync(Random rng, string work)
    {
        var name = Name(rng, "self");
        Flow flow = rng.Next(3) switch { 0 => new LinearFlow(name), 1 => new UnorderedFlow(name), _ => new GraphFlow(name) };
        flow.Add(Noop(Name(rng, "a")));
        var problem = await Expect<FlowDefinitionException>(() => { flow.Add(flow); return Task.CompletedTask; }, name);
        if (problem is not null) return problem;
        // Indirectly: the outer flow inside its own child.
        var outer = new LinearFlow(Name(rng, "outer"));
        var inner = new LinearFlow(Name(rng, "inner")) { Noop(Name(rng, "b")) };
        outer.Add(inner);
        return await Expect<FlowDefinitionException>(() => { inner.Add(outer); return Task.CompletedTask; }, outer.Name);
    }

    private static Task<string?> NullMemberAsync(Random rng, string work)
    {
        var flow = new LinearFlow(Name(rng, "f"));
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

    private static Task<string?> UnbindableExecuteAsync(Random rng, string work)
    {
        var name = Name(rng, "task");
        return Expect<FlowDefinitionException>(() =>
        {
            FlowTask task = rng.Next(2) == 0 ? new TwoExecutes(name) : new RefExecute(name);
            FlowEngine.CreateSerial(new LinearFlow("f") { task }, new EngineOptions { Store = { ["x"] = 1, ["y"] = "a" } }).Compile();
            return Task.CompletedTask;
        }, name);
    }

    private sealed record Unsaveable(IntPtr Handle);

    private static async Task<string?> UnsaveableResultAsync(Random rng, string work)
    {
        var name = Name(rng, "opens");
        var before = Name(rng, "before");
        await using var backend = new SqlitePersistenceBackend($"Data Source={Path.Combine(work, "r.db")}");
        var flow = new LinearFlow(Name(rng, "f")) { Noop(before), new LowLevelTask(name, () => new Unsaveable(new IntPtr(rng.Next()))) };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
        var problem = await Expect<PersistenceException>(() => engine.RunAsync(), name, typeof(Unsaveable).FullName!);
        if (problem is not null) return problem;
        var saved = await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value);
        if (saved?.State != TaskFlow.States.FlowState.Reverted) return $"the flow was saved as {saved?.State}, expected REVERTED";
        return saved.FindAtom(before)?.State == TaskFlow.States.AtomState.Reverted ? null : "the task before was not reverted";
    }

    private static async Task<string?> ProvidesMismatchAsync(Random rng, string work)
    {
        // Declares two positional results but returns one value: the consumer of the second cannot get it.
        var second = Name(rng, "second");
        var producer = new LowLevelTask(Name(rng, "producer"), () => 7) { Provides = ProvidesSpec.Positional(Name(rng, "first"), second) };
        var consumer = Noop(Name(rng, "consumer"), null, second);
        var flow = new LinearFlow(Name(rng, "f")) { producer, consumer };
        return await Expect<TaskFlowException>(() => FlowEngine.CreateSerial(flow).RunAsync(), second);
    }

    private static async Task<string?> UnsaveableStoreAsync(Random rng, string work)
    {
        var key = Name(rng, "key");
        await using var backend = new SqlitePersistenceBackend($"Data Source={Path.Combine(work, "s.db")}");
        var engine = FlowEngine.CreateSerial(new LinearFlow("f") { Noop("a") }, new EngineOptions { Persistence = backend, Store = { ["ok"] = 1, [key] = new Unsaveable(new IntPtr(1)) } });
        var problem = await Expect<ArgumentException>(() => engine.PrepareAsync(), key);
        if (problem is not null) return problem;
        return (await backend.ListLogBooksAsync()).Count == 0 ? null : "something was written before the store was refused";
    }

    private static async Task<string?> ChangedDefinitionAsync(Random rng, string work)
    {
        await using var backend = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = Path.Combine(work, "store") });
        var names = Enumerable.Range(0, rng.Next(2, 6)).Select(i => Name(rng, $"t{i}")).ToArray();
        var flow = new LinearFlow("f");
        foreach (var n in names) flow.Add(Noop(n));
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
        await engine.RunAsync();
        var renamed = names[rng.Next(names.Length)];
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
    /// <see cref="PersistenceException"/>; <paramref name="mustLoad"/> runs must load unchanged.
    /// </summary>
    private static async Task<string?> CheckReadsAsync(Func<IPersistenceBackend> open, Dictionary<Guid, string> saved, ISet<Guid> mustLoad, params string[] mustNameOneOf)
    {
        await using var backend = open();
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
                    continue;
                }
                if (PersistenceJson.Serialize(detail) != json && mustLoad.Contains(id)) return $"untouched run {id} changed";
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

    private static async Task<string?> TruncatedSqliteAsync(Random rng, string work)
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
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(rng.NextInt64(0, length));
        return await CheckReadsAsync(() => new SqlitePersistenceBackend($"Data Source={path}"), saved, new HashSet<Guid>(), path);
    }

    private static async Task<string?> EditedSqliteRowAsync(Random rng, string work)
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
            write.Parameters.AddWithValue("$d", Mutate(data, rng));
            write.Parameters.AddWithValue("$f", victim.ToString("D"));
            write.Parameters.AddWithValue("$a", atomId);
            write.ExecuteNonQuery();
        }
        SqliteConnection.ClearAllPools();
        var untouched = new HashSet<Guid>(saved.Keys.Where(k => k != victim));
        return await CheckReadsAsync(() => new SqlitePersistenceBackend($"Data Source={path}"), saved, untouched, victim.ToString("D"));
    }

    private static async Task<string?> NewerSchemaAsync(Random rng, string work)
    {
        var path = Path.Combine(work, "n.db");
        await using (var backend = new SqlitePersistenceBackend($"Data Source={path}"))
            await FillAsync(backend, rng);
        SqliteConnection.ClearAllPools();
        int future = SqlitePersistenceBackend.SchemaVersion + rng.Next(1, 50);
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

    private static async Task<string?> MutatedDirectoryFileAsync(Random rng, string work)
    {
        var folder = Path.Combine(work, "store");
        Dictionary<Guid, string> saved;
        await using (var backend = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }))
            saved = await FillAsync(backend, rng);
        var files = Directory.GetFiles(folder, "*.json", SearchOption.AllDirectories);
        if (files.Length == 0) return "the directory backend wrote no JSON files";
        var victim = files[rng.Next(files.Length)];
        File.WriteAllText(victim, Mutate(File.ReadAllText(victim), rng));
        // Which runs the file belongs to is the backend's business: require only documented errors naming the file.
        return await CheckReadsAsync(() => new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }), saved, new HashSet<Guid>(),
            // The damaged file, or (for the schema marker) the store it versions.
            Path.GetFileName(victim), folder);
    }

    private static async Task<string?> MutatedDocumentAsync(Random rng, string work)
    {
        var backend = new InMemoryPersistenceBackend();
        var saved = await FillAsync(backend, rng);
        var json = saved.Values.ElementAt(rng.Next(saved.Count));
        var mutated = Mutate(json, rng);
        try
        {
            var detail = PersistenceJson.DeserializeFlowDetail(mutated);
            // Accepted: it must be a valid flow detail that survives a round trip.
            var again = PersistenceJson.DeserializeFlowDetail(PersistenceJson.Serialize(detail));
            return again.Equals(detail) ? null : "an accepted mutation does not round-trip";
        }
        catch (PersistenceException) { return null; }
        catch (Exception e) { return $"undocumented {e.GetType().FullName}: {e.Message}"; }
    }

    /// <summary>
    /// A valid worker-protocol message (request, response, heartbeat), randomly damaged or grown past the size bound:
    /// parsing must reject it with <see cref="TaskFlow.Workers.WorkerProtocolException"/>, or accept it only as a
    /// message that serializes and parses back to an equal one.
    /// </summary>
    private static Task<string?> MutatedWorkerMessageAsync(Random rng, string work)
    {
        var failure = TaskFlow.Failures.Failure.FromException(new InvalidOperationException("boom " + rng.Next()));
        TaskFlow.Workers.WorkerMessage message = rng.Next(3) switch
        {
            0 => new TaskFlow.Workers.TaskRequest(Guid.NewGuid().ToString(), Name(rng, "task"), Name(rng, "atom"), TaskFlow.Workers.TaskAction.Revert,
                new Dictionary<string, JsonElement> { ["x"] = JsonSerializer.SerializeToElement(rng.Next()), ["s"] = JsonSerializer.SerializeToElement("é" + rng.Next()) }, "reply-" + rng.Next())
            {
                Result = JsonSerializer.SerializeToElement(new { a = 1, b = new[] { 1, 2 } }),
                FlowFailures = new Dictionary<string, TaskFlow.Failures.Failure> { ["other"] = failure },
                Timeout = TimeSpan.FromSeconds(rng.Next(1, 100)),
            },
            1 => new TaskFlow.Workers.TaskResponse(Guid.NewGuid().ToString(), TaskFlow.Workers.ResponseState.Failure, Name(rng, "worker")) { Failure = failure },
            _ => new TaskFlow.Workers.WorkerNotification(Name(rng, "worker"), Name(rng, "topic"), [Name(rng, "t1"), Name(rng, "t2")], TimeSpan.FromSeconds(5)),
        };
        var valid = Encoding.UTF8.GetString(TaskFlow.Workers.WorkerProtocol.Serialize(message));
        byte[] bytes;
        int limit = TaskFlow.Workers.WorkerProtocol.DefaultMaxMessageBytes;
        if (rng.Next(10) == 0)
        {
            // Oversized: a bound far below the message.
            limit = rng.Next(1, valid.Length);
            bytes = Encoding.UTF8.GetBytes(valid);
        }
        else bytes = Encoding.UTF8.GetBytes(Mutate(valid, rng));
        try
        {
            var parsed = TaskFlow.Workers.WorkerProtocol.Parse(bytes, limit);
            var again = TaskFlow.Workers.WorkerProtocol.Parse(TaskFlow.Workers.WorkerProtocol.Serialize(parsed));
            var first = Encoding.UTF8.GetString(TaskFlow.Workers.WorkerProtocol.Serialize(parsed));
            var second = Encoding.UTF8.GetString(TaskFlow.Workers.WorkerProtocol.Serialize(again));
            return Task.FromResult(first == second ? null : "an accepted mutation does not round-trip");
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
