using System.Text;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Chaos.BadInput;

/// <summary>
/// Random flow trees and random graphs for <c>bad-input</c>, each with an oracle that does not ask the engine:
/// <list type="bullet">
/// <item>a valid tree (linear, unordered and graph flows nested up to four deep; random requires, optional
/// arguments, rebinding by map and by position; retry controllers with tasks that fail their first attempts or
/// always) must end as the model predicts: SUCCESS with every task's result equal to the one computed from the values
/// it must have been given and every task executed once more than it was reverted, or REVERTED with the failing
/// task's own exception rethrown, every execution reverted where the failure reverts (the whole run for a failure
/// outside retries, the controller's flow when it gives up), and every task left SUCCESS holding the predicted
/// result;</item>
/// <item>the same tree with one defect (a requirement nobody provides, a rebinding onto a missing symbol, a symbol read
/// before its linear predecessor provides it, a duplicate name, a requires/provides cycle in a graph, a positional
/// rebinding with too many symbols) must be refused with the documented exception naming what is at fault;</item>
/// <item>a random graph (explicit links and inferred edges, added in random order, sometimes with a cycle) must be
/// refused with a <see cref="DependencyCycleException"/> naming atoms of the cycle, or run every task after all of
/// its predecessors with the predicted results.</item>
/// </list>
/// Runs are persisted (memory, SQLite or a directory, at random) on the serial or the parallel engine; whatever was
/// saved must load and agree with the engine's final states: nothing corrupted.
/// </summary>
internal static class FlowTreeCases
{
    private enum Kind { Linear, Unordered, Graph }

    private abstract class Node(string name)
    {
        public string Name { get; set; } = name;
    }

    private sealed class TaskModel(string name) : Node(name)
    {
        public List<(string Parameter, string Symbol)> Required { get; } = [];
        public List<(string Parameter, string Symbol, long Default)> Optional { get; } = [];
        public bool Positional { get; set; }
        public string? Provides { get; set; }
        public int FailFirst { get; set; }
        public bool AlwaysFails { get; set; }
        public string[]? ExtraPositional { get; set; }
    }

    private sealed class FlowModel(string name, Kind kind) : Node(name)
    {
        public Kind Kind { get; } = kind;
        public List<Node> Children { get; } = [];
        public int RetryAttempts { get; set; }
        public bool RetryIsForEach { get; set; }
        public List<(TaskModel From, TaskModel To)> Links { get; } = [];
    }

    /// <summary>A task whose result is a hash of its name and its arguments, recording each call first.</summary>
    private sealed class ModelTask : FlowTask
    {
        /// <summary>The arguments of the last call, for the failure message.</summary>
        public IReadOnlyDictionary<string, long>? LastArguments { get; private set; }

        private readonly List<string> _log;
        private readonly int _failFirst;
        private readonly bool _alwaysFails;
        private int _calls;

        private readonly IReadOnlyDictionary<string, long> _defaults;

        public ModelTask(string name, List<string> log, int failFirst, bool alwaysFails, IReadOnlyDictionary<string, long> defaults) : base(name)
        {
            _defaults = defaults;
            _log = log;
            _failFirst = failFirst;
            _alwaysFails = alwaysFails;
        }

        public override ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
        {
            lock (_log) _log.Add("exec " + Name);
            var values = arguments.ToDictionary().ToDictionary(kv => kv.Key, kv => ArgumentConverter.Convert<long>(kv.Value, Name, kv.Key));
            // An optional parameter nothing provides is left out of the arguments: the task applies its own default.
            foreach (var (p, d) in _defaults) values.TryAdd(p, d);
            LastArguments = values;
            if (_alwaysFails || Interlocked.Increment(ref _calls) <= _failFirst)
                throw new InvalidOperationException($"{Name} failed on purpose");
            return ValueTask.FromResult<object?>(ResultOf(Name, values));
        }

        public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
        {
            lock (_log) _log.Add("revert " + Name);
            return ValueTask.FromResult<object?>(null);
        }
    }

    /// <summary>The result every model task computes: FNV-1a over its name and its arguments by parameter name.</summary>
    private static long ResultOf(string name, IReadOnlyDictionary<string, long> arguments)
    {
        ulong h = 14695981039346656037;
        void Mix(string s) { foreach (var ch in s) { h ^= ch; h *= 1099511628211; } }
        Mix(name);
        foreach (var (p, v) in arguments.OrderBy(kv => kv.Key, StringComparer.Ordinal)) Mix($"|{p}={v}");
        return (long)(h >> 1);
    }

    // ---------------------------------------------------------------- generating trees

    private sealed class Generator(Random rng, CaseInput input)
    {
        public List<TaskModel> Tasks { get; } = [];
        public Dictionary<string, long> Store { get; } = new(StringComparer.Ordinal);
        public Dictionary<TaskModel, FlowModel?> RetryScopeOf { get; } = [];
        public Dictionary<Node, FlowModel> ParentOf { get; } = [];
        public List<FlowModel> RetryScopes { get; } = [];

        public string NewName(string prefix) => input.Name(rng, prefix);

        public FlowModel Tree()
        {
            foreach (var i in Enumerable.Range(1, rng.Next(1, 4))) Store[$"in{i}"] = rng.Next(-50, 50);
            return Flow((Kind)rng.Next(3), 0, [.. Store.Keys], null);
        }

        private FlowModel Flow(Kind kind, int depth, List<string> available, FlowModel? retryScope)
        {
            var flow = new FlowModel(NewName(kind.ToString().ToLowerInvariant()), kind);
            if (retryScope is null && rng.Next(4) == 0)
            {
                flow.RetryAttempts = rng.Next(1, 4);
                flow.RetryIsForEach = rng.Next(2) == 0;
                retryScope = flow;
                RetryScopes.Add(flow);
            }
            var providedHere = new List<string>();
            int children = rng.Next(1, 5);
            for (int c = 0; c < children; c++)
            {
                // What a new child may read: in a linear flow, everything before it; in an unordered flow, only what
                // was there before the flow; in a graph, also what the tasks created before it in the graph provide
                // (the edge is inferred). Nested flows in a graph read only from outside it.
                Node child;
                if (depth < 3 && rng.Next(10) < 3)
                {
                    var visible = kind == Kind.Linear ? [.. available, .. providedHere] : new List<string>(available);
                    var sub = Flow((Kind)rng.Next(3), depth + 1, visible, retryScope);
                    providedHere.AddRange(ProvidedBy(sub));
                    child = sub;
                }
                else
                {
                    var visible = kind == Kind.Unordered ? available : [.. available, .. providedHere];
                    // An optional argument infers no edge (TaskFlow's graph reads only requires): in a graph it may read
                    // only what is there before the graph, or it would race its provider.
                    var task = NewTask(visible, kind == Kind.Graph ? available : visible);
                    RetryScopeOf[task] = retryScope;
                    if (task.Provides is not null) providedHere.Add(task.Provides);
                    child = task;
                }
                ParentOf[child] = flow;
                flow.Children.Add(child);
            }
            if (kind == Kind.Graph)
            {
                // Explicit links too, always from an earlier task to a later one.
                var tasks = flow.Children.OfType<TaskModel>().ToList();
                for (int i = 0; i < tasks.Count; i++)
                    for (int j = i + 1; j < tasks.Count; j++)
                        if (rng.Next(5) == 0) flow.Links.Add((tasks[i], tasks[j]));
            }
            return flow;
        }

        private TaskModel NewTask(List<string> visible, List<string> optionalVisible)
        {
            var task = new TaskModel(NewName("t"));
            Tasks.Add(task);
            int required = rng.Next(0, Math.Min(3, visible.Count) + 1);
            task.Positional = required > 0 && rng.Next(5) == 0;
            foreach (var symbol in visible.OrderBy(_ => rng.Next()).Take(required))
                task.Required.Add((task.Positional || rng.Next(3) == 0 ? $"p{task.Required.Count}" : symbol, symbol));
            if (rng.Next(3) == 0)
            {
                // Optional: a symbol that is there (its value wins) or one nothing provides (the default is used).
                var symbol = rng.Next(2) == 0 && optionalVisible.Count > 0 ? optionalVisible[rng.Next(optionalVisible.Count)] : NewName("unset");
                if (task.Required.All(r => r.Symbol != symbol && r.Parameter != symbol))
                    task.Optional.Add((symbol, symbol, rng.Next(100, 200)));
            }
            if (rng.Next(5) != 0) task.Provides = "v_" + task.Name;
            return task;
        }

        public static IEnumerable<string> ProvidedBy(Node node) => node switch
        {
            TaskModel t => t.Provides is null ? [] : [t.Provides],
            FlowModel f => f.Children.SelectMany(ProvidedBy),
            _ => [],
        };

        /// <summary>Failures: at most one failing task per retry scope (fails its first attempts), sometimes one that always fails.</summary>
        public void Failures()
        {
            foreach (var scope in RetryScopes)
            {
                var inside = Tasks.Where(t => RetryScopeOf[t] == scope).ToList();
                if (inside.Count > 0 && rng.Next(5) < 3) inside[rng.Next(inside.Count)].FailFirst = rng.Next(1, 4);
            }
            if (Tasks.Count > 0 && rng.Next(10) == 0) Tasks[rng.Next(Tasks.Count)].AlwaysFails = true;
        }
    }

    private static string Describe(Node node)
    {
        var text = new StringBuilder();
        void Walk(Node n, int depth)
        {
            text.Append(' ', depth * 2);
            switch (n)
            {
                case TaskModel t:
                    text.Append($"task {t.Name} req[{string.Join(",", t.Required.Select(r => r.Parameter == r.Symbol ? r.Symbol : $"{r.Parameter}<-{r.Symbol}"))}]")
                        .Append(t.Positional ? " positional" : "")
                        .Append($" opt[{string.Join(",", t.Optional.Select(o => $"{o.Symbol}={o.Default}"))}] provides={t.Provides} fail={t.FailFirst}{(t.AlwaysFails ? " always" : "")}")
                        .Append(t.ExtraPositional is null ? "" : $" extra[{string.Join(",", t.ExtraPositional)}]")
                        .AppendLine();
                    break;
                case FlowModel f:
                    text.AppendLine($"{f.Kind} {f.Name} retry={(f.RetryAttempts == 0 ? "-" : $"{(f.RetryIsForEach ? "foreach" : "times")}{f.RetryAttempts}")} links[{string.Join(",", f.Links.Select(l => $"{l.From.Name}>{l.To.Name}"))}]");
                    foreach (var c in f.Children) Walk(c, depth + 1);
                    break;
            }
        }
        Walk(node, 0);
        return text.ToString();
    }

    // ---------------------------------------------------------------- building real flows

    private static FlowTask Build(TaskModel t, List<string> log)
    {
        IReadOnlyList<string> requires = [.. t.Required.Select(r => r.Parameter)];
        RebindSpec? rebind = null;
        if (t.ExtraPositional is not null) rebind = RebindSpec.Positional(t.ExtraPositional);
        else if (t.Positional) rebind = RebindSpec.Positional([.. t.Required.Select(r => r.Symbol)]);
        else if (t.Required.Any(r => r.Parameter != r.Symbol))
            rebind = RebindSpec.FromMap(t.Required.Where(r => r.Parameter != r.Symbol).ToDictionary(r => r.Parameter, r => r.Symbol));
        return new ModelTask(t.Name, log, t.FailFirst, t.AlwaysFails, t.Optional.ToDictionary(o => o.Parameter, o => o.Default))
        {
            Requires = requires,
            Optional = t.Optional.Count == 0 ? null : t.Optional.ToDictionary(o => o.Parameter, o => (object?)o.Default),
            Rebind = rebind,
            Provides = t.Provides is null ? ProvidesSpec.None : ProvidesSpec.Whole(t.Provides),
        };
    }

    private static Flow Build(FlowModel f, List<string> log, Random rng, Dictionary<TaskModel, FlowTask> built)
    {
        RetryController? retry = f.RetryAttempts == 0 ? null
            : f.RetryIsForEach ? new ForEachRetry([.. Enumerable.Range(1, f.RetryAttempts).Select(i => (object?)(long)i)]) { Name = f.Name + "-retry" }
            : new TimesRetry(f.RetryAttempts) { Name = f.Name + "-retry" };
        Flow flow = f.Kind switch
        {
            Kind.Linear => new LinearFlow(f.Name, retry),
            Kind.Unordered => new UnorderedFlow(f.Name, retry),
            _ => new GraphFlow(f.Name, retry),
        };
        var children = f.Children.Select(c => c is TaskModel t ? built[t] = Build(t, log) : (FlowNode)Build((FlowModel)c, log, rng, built)).ToList();
        // A graph infers its edges from requires and provides whatever the order of adding.
        if (f.Kind == Kind.Graph) children = [.. children.OrderBy(_ => rng.Next())];
        foreach (var c in children) flow.Add(c);
        if (flow is GraphFlow g)
            foreach (var (from, to) in f.Links) g.Link(built[from], built[to]);
        return flow;
    }

    // ---------------------------------------------------------------- the oracle

    /// <summary>
    /// What the model predicts. A failure outside every retry reverts everything that ran; a retry controller that
    /// gives up (REVERT) reverts its own flow and ends the run REVERTED, leaving what ran outside it as it is (TaskFlow's
    /// rule, checked against python3-taskflow).
    /// </summary>
    private sealed record Prediction(FlowState State, IReadOnlyDictionary<string, long> Results, IReadOnlyDictionary<string, Dictionary<string, long>> Arguments,
        bool RevertsEverything, IReadOnlySet<FlowModel> GivenUp);

    private static Prediction Predict(Generator g, FlowModel root)
    {
        var values = new Dictionary<string, long>(g.Store, StringComparer.Ordinal);
        var results = new Dictionary<string, long>(StringComparer.Ordinal);
        var arguments = new Dictionary<string, Dictionary<string, long>>(StringComparer.Ordinal);
        // Tasks were created in an order where each reads only what exists before it.
        foreach (var t in g.Tasks)
        {
            var args = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var (p, s) in t.Required) args[p] = values[s];
            foreach (var (p, s, d) in t.Optional) args[p] = values.TryGetValue(s, out var v) ? v : d;
            var r = ResultOf(t.Name, args);
            results[t.Name] = r;
            arguments[t.Name] = args;
            if (t.Provides is not null) values[t.Provides] = r;
        }
        var givenUp = new HashSet<FlowModel>();
        bool everything = false;
        foreach (var t in g.Tasks)
        {
            var scope = g.RetryScopeOf[t];
            bool fails = t.AlwaysFails || scope is not null && t.FailFirst >= Math.Max(1, scope.RetryAttempts);
            if (!fails) continue;
            if (scope is null) everything = true;
            else givenUp.Add(scope);
        }
        bool reverted = everything || givenUp.Count > 0;
        return new Prediction(reverted ? FlowState.Reverted : FlowState.Success, results, arguments, everything, givenUp);
    }

    // ---------------------------------------------------------------- the cases

    /// <summary>A random valid tree, or (two times in five) the same with one defect that must be refused.</summary>
    public static async Task<string?> RandomTreeAsync(Random rng, string work, CaseInput input)
    {
        var g = new Generator(rng, input);
        var root = g.Tree();
        g.Failures();
        var defect = rng.Next(5) < 2 ? Defect(g, root, rng) : null;
        input.Add(Describe(root));
        input.Add("store " + string.Join(",", g.Store.Select(kv => $"{kv.Key}={kv.Value}")));
        input.Add("defect " + (defect?.Kind ?? "none"));
        File.WriteAllText(Path.Combine(work, "tree.txt"), Describe(root) + "store " + string.Join(",", g.Store.Select(kv => $"{kv.Key}={kv.Value}")) + "\ndefect " + defect?.Kind);
        return await RunAsync(g, root, rng, work, input, defect, links: null);
    }

    private sealed record DefectSpec(string Kind, Type Exception, string[] MustName);

    private static DefectSpec? Defect(Generator g, FlowModel root, Random rng)
    {
        var tasks = g.Tasks;
        if (tasks.Count == 0) return null;
        var victim = tasks[rng.Next(tasks.Count)];
        switch (rng.Next(6))
        {
            case 0:
            {
                var symbol = g.NewName("absent");
                victim.Required.Add((symbol, symbol));
                victim.Positional = false;
                return new DefectSpec("missing-requirement", typeof(MissingDependenciesException), [symbol, victim.Name]);
            }
            case 1:
            {
                var symbol = g.NewName("absent");
                var parameter = $"p{victim.Required.Count}";
                victim.Required.Add((parameter, symbol));
                victim.Positional = false;
                return new DefectSpec("rebind-to-missing-symbol", typeof(MissingDependenciesException), [symbol, victim.Name]);
            }
            case 2:
            {
                // A linear flow whose task reads what a later sibling provides.
                foreach (var flow in Flows(root).Where(f => f.Kind == Kind.Linear).OrderBy(_ => rng.Next()))
                {
                    var children = flow.Children.OfType<TaskModel>().ToList();
                    for (int i = 0; i < children.Count; i++)
                        for (int j = i + 1; j < children.Count; j++)
                            if (children[j].Provides is { } later)
                            {
                                children[i].Required.Add((later, later));
                                children[i].Positional = false;
                                return new DefectSpec("reads-a-later-output", typeof(MissingDependenciesException), [later, children[i].Name]);
                            }
                }
                goto case 3;
            }
            case 3:
            {
                if (tasks.Count < 2) goto case 0;
                var other = tasks.First(t => t != victim);
                var name = victim.Name;
                other.Name = name;
                return new DefectSpec("duplicate-name", typeof(DuplicateAtomNameException), [name]);
            }
            case 4:
            {
                // Two tasks of one graph that read each other's output.
                var graph = Flows(root).FirstOrDefault(f => f.Kind == Kind.Graph && f.Children.OfType<TaskModel>().Count(t => t.Provides is not null) >= 2);
                if (graph is null) goto default;
                var pair = graph.Children.OfType<TaskModel>().Where(t => t.Provides is not null).OrderBy(_ => rng.Next()).Take(2).ToArray();
                foreach (var (a, b) in new[] { (pair[0], pair[1]), (pair[1], pair[0]) })
                    if (a.Required.All(r => r.Symbol != b.Provides)) { a.Required.Add((b.Provides!, b.Provides!)); a.Positional = false; }
                return new DefectSpec("graph-cycle", typeof(DependencyCycleException), [pair[0].Name, pair[1].Name]);
            }
            default:
            {
                // Positional rebinding with more symbols than the task has required parameters.
                victim.ExtraPositional = [.. victim.Required.Select(r => r.Symbol), .. g.Store.Keys.Take(1), g.NewName("extra")];
                return new DefectSpec("positional-rebind-too-long", typeof(TaskFlowException), [victim.Name]);
            }
        }
    }

    private static IEnumerable<FlowModel> Flows(FlowModel f) => f.Children.OfType<FlowModel>().SelectMany(Flows).Prepend(f);

    /// <summary>A graph of 3–10 tasks with random links and inferred edges, added in random order; a cycle one time in three.</summary>
    public static async Task<string?> RandomGraphAsync(Random rng, string work, CaseInput input)
    {
        var g = new Generator(rng, input);
        foreach (var i in Enumerable.Range(1, rng.Next(1, 3))) g.Store[$"in{i}"] = rng.Next(-50, 50);
        var graph = new FlowModel(g.NewName("graph"), Kind.Graph);
        int n = rng.Next(3, 11);
        var tasks = new List<TaskModel>();
        var edges = new HashSet<(int, int)>();
        for (int j = 0; j < n; j++)
        {
            var t = new TaskModel(g.NewName("t")) { Provides = null };
            t.Provides = "v_" + t.Name;
            foreach (var s in g.Store.Keys) if (rng.Next(3) == 0) t.Required.Add((s, s));
            for (int i = 0; i < j; i++)
            {
                int edge = rng.Next(6);
                if (edge == 0) { t.Required.Add((tasks[i].Provides!, tasks[i].Provides!)); edges.Add((i, j)); }
                else if (edge == 1) { graph.Links.Add((tasks[i], t)); edges.Add((i, j)); }
            }
            tasks.Add(t);
            g.Tasks.Add(t);
            g.RetryScopeOf[t] = null;
            graph.Children.Add(t);
        }
        HashSet<string>? cycle = null;
        if (rng.Next(3) == 0)
        {
            // Close a cycle: an edge back from a task to one of its ancestors.
            var reach = Reachability(n, edges);
            var candidates = Enumerable.Range(0, n).SelectMany(i => Enumerable.Range(0, n).Where(j => reach[i, j]).Select(j => (i, j))).ToList();
            if (candidates.Count > 0)
            {
                var (from, to) = candidates[rng.Next(candidates.Count)]; // from ⇝ to exists; add to → from
                if (rng.Next(2) == 0) tasks[from].Required.Add((tasks[to].Provides!, tasks[to].Provides!));
                else graph.Links.Add((tasks[to], tasks[from]));
                cycle = [.. Enumerable.Range(0, n).Where(k => (k == from || reach[from, k]) && (k == to || reach[k, to])).Select(k => tasks[k].Name)];
            }
        }
        input.Add(Describe(graph));
        File.WriteAllText(Path.Combine(work, "graph.txt"), Describe(graph));
        input.Add("store " + string.Join(",", g.Store.Select(kv => $"{kv.Key}={kv.Value}")));
        var defect = cycle is null ? null : new DefectSpec("cycle", typeof(DependencyCycleException), []);
        return await RunAsync(g, graph, rng, work, input, defect, links: cycle is null ? edges.Select(e => (tasks[e.Item1].Name, tasks[e.Item2].Name)).ToList() : null, cycle);
    }

    private static bool[,] Reachability(int n, HashSet<(int, int)> edges)
    {
        var reach = new bool[n, n];
        foreach (var (a, b) in edges) reach[a, b] = true;
        for (int k = 0; k < n; k++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    if (reach[i, k] && reach[k, j]) reach[i, j] = true;
        return reach;
    }

    private static async Task<string?> RunAsync(Generator g, FlowModel root, Random rng, string work, CaseInput input, DefectSpec? defect,
        List<(string From, string To)>? links, HashSet<string>? cycle = null)
    {
        var log = new List<string>();
        var backendKind = rng.Next(3);
        bool parallel = rng.Next(2) == 0;
        input.Add($"engine {(parallel ? "parallel" : "serial")}");
        File.AppendAllText(Path.Combine(work, "engine.txt"), $"engine {(parallel ? "parallel" : "serial")} backend {backendKind}\n");
        IPersistenceBackend backend = backendKind switch
        {
            0 => new InMemoryPersistenceBackend(),
            1 => new SqlitePersistenceBackend($"Data Source={Path.Combine(work, "tree.db")}"),
            _ => new DirectoryPersistenceBackend(Path.Combine(work, "store")),
        };
        if (BadInputChaos.Broken == "drop-saves") backend = new DropSavesBackend(backend);
        await using var _ = backend;
        FlowEngine? engine = null;
        Exception? error = null;
        var built = new Dictionary<TaskModel, FlowTask>();
        try
        {
            var flow = Build(root, log, rng, built);
            var options = new EngineOptions { Persistence = backend };
            foreach (var (k, v) in g.Store) options.Store[k] = v;
            engine = parallel ? FlowEngine.CreateParallel(flow, options) : FlowEngine.CreateSerial(flow, options);
            await engine.RunAsync();
        }
        catch (Exception e)
        {
            error = e;
        }

        if (await CheckStoreAsync(backend, engine) is { } corrupted) return corrupted;
        if (defect is not null)
        {
            if (error is null) return $"{defect.Kind}: the flow ran to {engine?.State.ToTaskFlowName()} instead of being refused";
            if (!defect.Exception.IsInstanceOfType(error))
                return $"{defect.Kind}: expected {defect.Exception.Name}, got {error.GetType().FullName}: {error.Message}";
            foreach (var name in defect.MustName)
                if (!error.Message.Contains(name, StringComparison.Ordinal)) return $"{defect.Kind}: the {error.GetType().Name} does not name '{name}': {error.Message}";
            if (cycle is not null && cycle.Count(n => error.Message.Contains(n, StringComparison.Ordinal)) < Math.Min(2, cycle.Count))
                return $"cycle: the {error.GetType().Name} names fewer than two of the cycle's atoms ({string.Join(", ", cycle)}): {error.Message}";
            if (log.Count > 0) return $"{defect.Kind}: tasks ran although the flow is invalid: {string.Join(", ", log.Take(5))}";
            return null;
        }

        var expected = Predict(g, root);
        if (expected.State == FlowState.Success && error is not null)
            return $"the flow should succeed but threw {error.GetType().FullName}: {error.Message}";
        if (engine is null) return "no engine";
        if (engine.State != expected.State) return $"the flow ended {engine.State.ToTaskFlowName()}, the model predicts {expected.State.ToTaskFlowName()} ({error?.GetType().Name}: {error?.Message})";
        if (expected.State == FlowState.Reverted)
        {
            // One failure is rethrown as itself; several (parallel scopes failing together) as one WrappedFailureException.
            bool own = error is InvalidOperationException ioe && ioe.Message.EndsWith("failed on purpose", StringComparison.Ordinal)
                || error is WrappedFailureException w && w.Message.Contains(" failures: ", StringComparison.Ordinal)
                   && w.Message[(w.Message.IndexOf(" failures: ", StringComparison.Ordinal) + 11)..].Split("; ").All(f => f.EndsWith("failed on purpose", StringComparison.Ordinal));
            if (!own)
                return $"a reverted run must rethrow its task's failure, not {error?.GetType().FullName}: {error?.Message}";
        }
        var counts = log.GroupBy(l => l[(l.IndexOf(' ') + 1)..]).ToDictionary(
            x => x.Key, x => (Exec: x.Count(l => l.StartsWith("exec ", StringComparison.Ordinal)), Revert: x.Count(l => l.StartsWith("revert ", StringComparison.Ordinal))));
        var finalStates = engine.Storage.GetAtomStates();
        foreach (var t in g.Tasks)
        {
            var (exec, revert) = counts.GetValueOrDefault(t.Name);
            var state = finalStates[t.Name].State;
            string Calls() => $"executed {exec} and reverted {revert} times, ended {state.ToTaskFlowName()}, in a run that ended {expected.State.ToTaskFlowName()}";
            if (expected.State == FlowState.Success)
            {
                if (exec - revert != 1 || state != AtomState.Success) return $"task '{t.Name}' {Calls()}";
            }
            else if (expected.RevertsEverything || g.RetryScopeOf[t] is { } scope && expected.GivenUp.Contains(scope))
            {
                // Reverted with the run (or with its retry controller's flow): every execution undone.
                if (exec != revert || state is not (AtomState.Reverted or AtomState.Pending)) return $"task '{t.Name}' {Calls()}";
            }
            else if (exec - revert is not (0 or 1) || (state == AtomState.Success) != (exec - revert == 1)
                || state is not (AtomState.Success or AtomState.Reverted or AtomState.Pending))
            {
                return $"task '{t.Name}' outside the flows that were reverted {Calls()}";
            }
            if (state == AtomState.Success)
            {
                var value = ArgumentConverter.Convert<long>(engine.Storage.GetResult(t.Name), t.Name, "result");
                if (value != expected.Results[t.Name])
                {
                    static string Show(IReadOnlyDictionary<string, long>? a) => a is null ? "?" : string.Join(", ", a.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
                    return $"task '{t.Name}' was given ({Show(((ModelTask)built[t]).LastArguments)}), the model predicts ({Show(expected.Arguments[t.Name])})";
                }
            }
        }
        if (links is not null)
        {
            var firstExec = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = log.Count - 1; i >= 0; i--)
                if (log[i].StartsWith("exec ", StringComparison.Ordinal)) firstExec[log[i][5..]] = i;
            foreach (var (from, to) in links)
                if (firstExec[from] > firstExec[to]) return $"'{to}' ran before its predecessor '{from}'";
        }
        return null;
    }

    /// <summary>Whatever was saved loads, round-trips and agrees with the engine's final states.</summary>
    private static async Task<string?> CheckStoreAsync(IPersistenceBackend backend, FlowEngine? engine)
    {
        try
        {
            foreach (var book in await backend.ListLogBooksAsync())
                foreach (var detail in await backend.ListFlowDetailsAsync(book.Id))
                {
                    var again = PersistenceJson.DeserializeFlowDetail(PersistenceJson.Serialize(detail));
                    if (!again.Equals(detail)) return $"saved flow detail {detail.Id} does not round-trip";
                    if (engine?.FlowDetailId == detail.Id && engine.State is FlowState.Success or FlowState.Reverted)
                    {
                        if (detail.State != engine.State) return $"the saved run is {detail.State.ToTaskFlowName()}, the engine ended {engine.State.ToTaskFlowName()}";
                        foreach (var (name, (state, _)) in engine.Storage.GetAtomStates())
                            if (detail.FindAtom(name)?.State != state) return $"atom '{name}' is saved {detail.FindAtom(name)?.State}, the engine has it {state.ToTaskFlowName()}";
                    }
                }
        }
        catch (Exception e)
        {
            return $"the store no longer loads: {e.GetType().FullName}: {e.Message}";
        }
        return null;
    }
}
