using System.Text.Json;
using System.Text.Json.Nodes;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Conformance;

/// <summary>Runs one format-1 scenario against this library and compares the observation with its "expect" (SPEC §6).</summary>
public static class ScenarioRunner
{
    public sealed record Result(string Name, bool Passed, string? Difference);

    /// <summary>
    /// Where a run is saved while it runs: nowhere (the corpus as TaskFlow ran it), or a backend — then the saved run is
    /// also checked against the run's final state and reloaded into a fresh engine that must see the same results.
    /// </summary>
    public enum Persistence { None, Memory, Directory, Sqlite }

    public static Result RunFile(string path, Persistence persistence = Persistence.None)
    {
        var scenario = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var name = scenario["name"]?.GetValue<string>() ?? Path.GetFileNameWithoutExtension(path);
        try
        {
            var observed = Observe(scenario, persistence);
            if (observed["persistence_error"] is { } pe) return new Result(name, false, "persistence: " + pe.GetValue<string>());
            var diff = Compare(scenario["expect"]!.AsObject(), observed);
            return new Result(name, diff is null, diff);
        }
        catch (Exception e)
        {
            return new Result(name, false, $"runner error: {e.GetType().Name}: {e.Message}");
        }
    }

    public static JsonObject Observe(JsonObject scenario, Persistence persistence = Persistence.None)
    {
        if (persistence == Persistence.None) return Observe(scenario, null, null);
        var folder = Path.Combine(Path.GetTempPath(), "taskflow-conformance-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            IPersistenceBackend backend = persistence switch
            {
                Persistence.Memory => new InMemoryPersistenceBackend(),
                Persistence.Directory => new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }),
                _ => new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = "Data Source=" + Path.Combine(folder, "runs.db"), Durability = SqliteDurability.WalNoFsync }),
            };
            try
            {
                return Observe(scenario, backend, null);
            }
            finally
            {
                backend.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(folder, recursive: true);
        }
    }

    private static JsonObject Observe(JsonObject scenario, IPersistenceBackend? backend, Guid? resumeId)
    {
        bool serial = scenario["engine"]?.GetValue<string>() != "parallel";
        var recorder = new Recorder(serial);
        var store = (scenario["store"] as JsonObject ?? []).ToDictionary(p => p.Key, p => Canonical.FromJson(p.Value), StringComparer.Ordinal);

        Flow flow;
        try
        {
            flow = ScenarioBuilder.BuildFlow(scenario["flow"]!.AsObject(), recorder);
        }
        catch (Exception e)
        {
            return Invalid("build", e);
        }
        var options = new EngineOptions { Store = store, Persistence = backend, FlowDetailId = resumeId };
        var engine = serial ? FlowEngine.CreateSerial(flow, options) : FlowEngine.CreateParallel(flow, options);
        try { engine.Compile(); engine.PrepareAsync().GetAwaiter().GetResult(); }
        catch (Exception e) { return Invalid("compile", e); }
        try { engine.Validate(); }
        catch (Exception e) { return Invalid("validate", e); }

        var transitions = new List<string>();
        var gate = new Lock();
        using var sub = engine.Notifications.Subscribe<AtomStateChanged>(e =>
        {
            lock (gate) transitions.Add($"{e.AtomName} {e.State.ToTaskFlowName()}");
        });
        var errors = new List<string>();
        string outcome = "success";
        try
        {
            engine.RunAsync().GetAwaiter().GetResult();
        }
        catch (WrappedFailureException w)
        {
            outcome = "failure";
            errors.AddRange(w.Failures.Select(Canonical.Message));
        }
        catch (Exception e)
        {
            outcome = "failure";
            errors.Add(Canonical.Message(Failure.FromException(e)));
        }

        var atoms = new JsonObject();
        foreach (var (atomName, (state, intention)) in engine.Storage.GetAtomStates().OrderBy(kv => kv.Key, StringComparer.Ordinal))
            atoms[atomName] = new JsonObject { ["state"] = state.ToTaskFlowName(), ["intention"] = intention.ToTaskFlowName() };
        var results = new JsonObject();
        foreach (var (symbol, values) in engine.Storage.FetchAllHolders())
        {
            if (values.Count == 1) results[symbol] = ToJson(values[0]);
            else results[symbol] = new JsonObject { ["$many"] = new JsonArray(values.Select(v => (ToJson(v), Canonical.Render(v is Failure f ? $"Failure(\"{f.Message}\")" : v))).OrderBy(x => x.Item2, StringComparer.Ordinal).Select(x => x.Item1).ToArray()) };
        }
        errors.Sort(StringComparer.Ordinal);
        var persistenceError = backend is null ? null : CheckSaved(scenario, engine, backend);
        return new JsonObject
        {
            ["persistence_error"] = persistenceError,
            ["outcome"] = outcome,
            ["errors"] = new JsonArray(errors.Select(e => (JsonNode?)JsonValue.Create(e)).ToArray()),
            ["flow_state"] = engine.State.ToTaskFlowName(),
            ["atoms"] = atoms,
            ["results"] = results,
            ["trace"] = new JsonArray(recorder.Trace.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
            ["transitions"] = new JsonArray(transitions.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
        };
    }

    /// <summary>
    /// What was saved must be what the run holds: every atom's state and intention and the flow state, and a fresh
    /// engine loaded from the saved run must fetch the same values. Null when it is so, else the first difference.
    /// </summary>
    private static string? CheckSaved(JsonObject scenario, FlowEngine engine, IPersistenceBackend backend)
    {
        var saved = backend.GetFlowDetailAsync(engine.FlowDetailId!.Value).GetAwaiter().GetResult();
        if (saved is null) return "the flow detail was not saved";
        if (saved.State != engine.State) return $"flow saved as {saved.State.ToTaskFlowName()}, run ended {engine.State.ToTaskFlowName()}";
        foreach (var (name, (state, intention)) in engine.Storage.GetAtomStates())
        {
            var atom = saved.FindAtom(name);
            if (atom is null) return $"atom '{name}' was not saved";
            if (atom.State != state || atom.Intention != intention)
                return $"atom '{name}' saved as {atom.State.ToTaskFlowName()}/{atom.Intention.ToTaskFlowName()}, run holds {state.ToTaskFlowName()}/{intention.ToTaskFlowName()}";
        }
        // Loading a REVERTED run resets it (TaskFlow's prepare), so there is nothing left to fetch to compare.
        if (saved.State == FlowState.Reverted) return null;
        var flow = ScenarioBuilder.BuildFlow(scenario["flow"]!.AsObject(), new Recorder(true));
        var reloaded = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend, FlowDetailId = saved.Id });
        reloaded.PrepareAsync().GetAwaiter().GetResult();
        var before = Holders(engine);
        var after = Holders(reloaded);
        return before == after ? null : $"a reloaded run fetches {after}, the run fetched {before}";
    }

    private static string Holders(FlowEngine engine) => string.Join("; ",
        engine.Storage.FetchAllHolders().OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => kv.Key + "=" + string.Join(",", kv.Value.Select(v => v is Failure f ? "Failure:" + f.Message : JsonSerializer.Serialize(v, PersistenceJson.Options)))));

    private static JsonNode? ToJson(object? v) => v is Failure f
        ? JsonValue.Create($"Failure({Canonical.Render(Canonical.Message(f))})")
        : JsonNode.Parse(Canonical.Render(v));

    private static JsonObject Invalid(string phase, Exception e)
    {
        string kind = e switch
        {
            DependencyCycleException => "cycle",
            MissingDependenciesException => "missing_requirement",
            DuplicateAtomNameException => "duplicate_name",
            AmbiguousDependencyException => "ambiguous_dependency",
            FlowDefinitionException => "extra_argument",
            UnknownLinkNodeException or ArgumentException => "unknown_link_node",
            _ => "unexpected:" + e.GetType().Name + ":" + e.Message,
        };
        var o = new JsonObject { ["outcome"] = "invalid", ["phase"] = phase, ["error_kind"] = kind };
        if (e is MissingDependenciesException m)
            o["missing"] = new JsonArray(m.MissingParameterNames.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
        return o;
    }

    /// <summary>The first difference, or null when the observation matches.</summary>
    public static string? Compare(JsonObject expect, JsonObject observed)
    {
        string? Field(string f)
        {
            var a = expect[f];
            var b = observed[f];
            return JsonNode.DeepEquals(a, b) ? null : $"{f}: expected {a?.ToJsonString() ?? "null"}, got {b?.ToJsonString() ?? "null"}";
        }
        if (Field("outcome") is { } d0) return d0 + (observed["error_kind"] is { } k ? $" ({k})" : "");
        if (expect["outcome"]!.GetValue<string>() == "invalid")
        {
            foreach (var f in new[] { "error_kind", "phase" }) if (Field(f) is { } d) return d;
            if (expect["missing"] is not null && Field("missing") is { } dm) return dm;
            return null;
        }
        foreach (var f in new[] { "errors", "flow_state", "atoms", "results" })
            if (Field(f) is { } d) return d;
        var order = expect["trace_order"]!.GetValue<string>();
        foreach (var (f, sep) in new[] { ("trace", '.'), ("transitions", ' ') })
        {
            var exp = expect[f]!.AsArray().Select(x => x!.GetValue<string>()).ToList();
            var got = observed[f]!.AsArray().Select(x => x!.GetValue<string>()).ToList();
            if (order == "total")
            {
                if (!exp.SequenceEqual(got)) return $"{f}: expected [{string.Join(" | ", exp)}], got [{string.Join(" | ", got)}]";
            }
            else
            {
                var ge = Group(exp, sep);
                var gg = Group(got, sep);
                foreach (var key in ge.Keys.Union(gg.Keys).Order(StringComparer.Ordinal))
                {
                    var a = ge.GetValueOrDefault(key) ?? [];
                    var b = gg.GetValueOrDefault(key) ?? [];
                    if (!a.SequenceEqual(b)) return $"{f}[{key}]: expected [{string.Join(" | ", a)}], got [{string.Join(" | ", b)}]";
                }
            }
        }
        return null;
    }

    private static Dictionary<string, List<string>> Group(List<string> entries, char sep)
    {
        var d = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            int i = e.IndexOf(sep);
            var key = i < 0 ? e : e[..i];
            if (!d.TryGetValue(key, out var l)) d[key] = l = [];
            l.Add(e);
        }
        return d;
    }
}
