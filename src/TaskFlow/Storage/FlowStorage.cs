using System.Collections;
using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Engines.Compilation;
using TaskFlow.Failures;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Storage;

/// <summary>
/// The runtime state of one flow run: every atom's state, intention, result or failure, retry histories, and the
/// flow-level store. Lookups follow TaskFlow's rules: atom injections, then the store, then visible atom results.
/// </summary>
public sealed class FlowStorage
{
    internal readonly CompiledFlow Compiled;
    internal readonly AtomState[] States;
    internal readonly AtomIntention[] Intentions;
    internal readonly object?[] Results;
    internal readonly Failure?[] FailureOf;
    internal readonly object?[] RevertResults;
    internal readonly Failure?[] RevertFailureOf;
    internal readonly RetryAttemptLog?[] Histories;
    internal readonly double[] Progress;
    // TaskFlow's failure cache: kept across resets by retries (see SPEC note N8), cleared only by a full reset.
    internal readonly FailuresByAtom ExecuteFailureCache;
    internal readonly FailuresByAtom RevertFailureCache;
    // Copy-on-write: argument lookups read the current dictionary without a lock; Inject publishes a new one.
    private volatile Dictionary<string, object?> _store;
    private readonly Lock _storeGate = new();
    // Each atom's first argument's resolution, then (for atoms with more) the others': most atoms have one or none,
    // and a per-atom array each would be a 100k arrays for a 100k-atom flow.
    private readonly ScopeResolution?[] _firstResolutions;
    private readonly ScopeResolution?[]?[] _otherResolutions;
    // The arguments of atoms that bind nothing, made here with the rest of the run's state rather than per call or
    // lazily during the run (an object first made in the middle of a large run is copied by its collections).
    private readonly TaskArguments?[] _noArguments;

    internal FlowStorage(CompiledFlow compiled, IEnumerable<KeyValuePair<string, object?>> store)
    {
        Compiled = compiled;
        int n = compiled.NodeCount;
        States = new AtomState[n];
        Intentions = new AtomIntention[n];
        Results = new object?[n];
        FailureOf = new Failure?[n];
        RevertResults = new object?[n];
        RevertFailureOf = new Failure?[n];
        Histories = new RetryAttemptLog?[n];
        ExecuteFailureCache = new FailuresByAtom(compiled);
        RevertFailureCache = new FailuresByAtom(compiled);
        Progress = new double[n];
        _firstResolutions = new ScopeResolution?[n];
        _otherResolutions = new ScopeResolution?[n][];
        _noArguments = new TaskArguments?[n];
        foreach (var node in compiled.AtomNodes)
        {
            if (compiled.Kinds[node] == NodeKind.Retry) Histories[node] = new RetryAttemptLog();
            var atom = compiled.Atoms[node]!;
            if (atom.Map.Execute.Length == 0 || atom.Map.Revert.Length == 0) _noArguments[node] = TaskArguments.Empty(atom.Name);
        }
        var initial = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in store)
        {
            ArgumentNullException.ThrowIfNull(k, "store key");
            initial[k] = v;
        }
        _store = initial;
    }

    /// <summary>
    /// The current store snapshot: a new object whenever the store changes (it is copied on write and never changed
    /// in place), so whatever was checked against one snapshot still holds while it is current.
    /// </summary>
    internal object StoreVersion => _store;

    /// <summary>The flow-level store (a copy).</summary>
    public IReadOnlyDictionary<string, object?> Store => new Dictionary<string, object?>(_store, StringComparer.Ordinal);

    /// <summary>
    /// Adds or replaces flow-level values (TaskFlow's <c>storage.inject</c>). In a persisted run they are saved with the
    /// flow detail (at the engine's next save point), so they must serialize to JSON.
    /// </summary>
    public void Inject(IEnumerable<KeyValuePair<string, object?>> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var pairs = values.ToArray();
        foreach (var (k, v) in pairs)
        {
            if (string.IsNullOrWhiteSpace(k)) throw new ArgumentException("Store keys must be non-empty symbol names.", nameof(values));
            // A persisted run saves the store: refuse what cannot be saved before anything changes.
            if (Journal is not null) Engines.Journaling.RunJournal.ToStoreJson(k, v);
        }
        lock (_storeGate)
        {
            var next = new Dictionary<string, object?>(_store, StringComparer.Ordinal);
            foreach (var (k, v) in pairs) next[k] = v;
            _store = next;
        }
        Journal?.MarkStoreDirty();
    }

    /// <summary>The run's journal when it is persisted (set once by the engine before the run starts), else null.</summary>
    internal Engines.Journaling.RunJournal? Journal { get; set; }

    /// <summary>Sets an atom's intention; a persisted run saves it before acting on it.</summary>
    internal void SetIntention(int node, AtomIntention intention)
    {
        if (Intentions[node] == intention) return;
        Intentions[node] = intention;
        Journal?.MarkDirty(node);
    }

    /// <summary>Replaces the whole store (a resumed run: the saved store with the engine's store laid over it).</summary>
    internal void ReplaceStore(Dictionary<string, object?> store)
    {
        lock (_storeGate) _store = store;
    }

    internal bool TryGetStore(string symbol, out object? value) => _store.TryGetValue(symbol, out value);

    internal bool StoreContains(string symbol) => _store.ContainsKey(symbol);

    /// <summary>The state of an atom.</summary>
    public AtomState GetAtomState(string atomName) => States[NodeOf(atomName)];

    /// <summary>The intention of an atom.</summary>
    public AtomIntention GetAtomIntention(string atomName) => Intentions[NodeOf(atomName)];

    /// <summary>Every atom's state, by name.</summary>
    public IReadOnlyDictionary<string, (AtomState State, AtomIntention Intention)> GetAtomStates()
    {
        var d = new Dictionary<string, (AtomState, AtomIntention)>(StringComparer.Ordinal);
        foreach (var n in Compiled.AtomNodes) d[Compiled.Atoms[n]!.Name] = (States[n], Intentions[n]);
        return d;
    }

    /// <summary>The execute failures recorded so far, by atom name (TaskFlow's <c>get_failures</c>).</summary>
    public IReadOnlyDictionary<string, Failure> GetFailures() => ExecuteFailureCache.ByName();

    /// <summary>The revert failures recorded so far, by atom name.</summary>
    public IReadOnlyDictionary<string, Failure> GetRevertFailures() => RevertFailureCache.ByName();

    /// <summary>A retry controller's history.</summary>
    public RetryHistory GetRetryHistory(string retryName)
    {
        int n = NodeOf(retryName);
        return Histories[n] is { } h ? h.Snapshot(FailureOf[n]) : throw new ArgumentException($"'{retryName}' is not a retry controller.", nameof(retryName));
    }

    /// <summary>An atom's execute result: its value, or its <see cref="Failure"/> if it failed.</summary>
    /// <exception cref="NotFoundException">The atom has no accessible result in its current state.</exception>
    public object? GetResult(string atomName)
    {
        int n = NodeOf(atomName);
        if (TryGetExecuteResult(n, out var value, out var ignored)) return value;
        throw new NotFoundException(ignored
            ? $"Result of atom '{atomName}' is not known: it was ignored."
            : $"Result of atom '{atomName}' is not known in state {States[n].ToTaskFlowName()}.");
    }

    /// <summary>The value published under <paramref name="name"/> (the store first, then the first atom that produced it).</summary>
    /// <exception cref="NotFoundException">Nothing holds a value for the name.</exception>
    public T Fetch<T>(string name)
    {
        var values = FetchMany(name, firstOnly: true);
        if (values is null || values.Count == 0) throw new NotFoundException($"Nothing holds a value for '{name}': no store entry, and no atom that provides it has produced it.");
        return ArgumentConverter.Convert<T>(values[0], "storage", name);
    }

    /// <summary>Tries to fetch the value published under <paramref name="name"/>.</summary>
    public bool TryFetch<T>(string name, out T value)
    {
        var values = FetchMany(name, firstOnly: true);
        if (values is null || values.Count == 0) { value = default!; return false; }
        value = ArgumentConverter.Convert<T>(values[0], "storage", name);
        return true;
    }

    /// <summary>
    /// Every symbol some holder currently has a value for (TaskFlow's <c>fetch_all</c>): one holder gives the value,
    /// several give an <see cref="IReadOnlyList{T}"/> of their values (store first, then registration order).
    /// </summary>
    public IReadOnlyDictionary<string, object?> FetchAll() =>
        FetchAllHolders().ToDictionary(kv => kv.Key, kv => kv.Value.Count == 1 ? kv.Value[0] : (object?)kv.Value, StringComparer.Ordinal);

    /// <summary>Like <see cref="FetchAll"/>, but every symbol maps to the list of its holders' values (one per holder).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<object?>> FetchAllHolders()
    {
        var result = new Dictionary<string, IReadOnlyList<object?>>(StringComparer.Ordinal);
        var names = _store.Keys.Union(Compiled.Providers.Keys, StringComparer.Ordinal).ToList();
        foreach (var name in names)
        {
            var values = FetchMany(name, firstOnly: false);
            if (values is { Count: > 0 }) result[name] = values;
        }
        return result;
    }

    /// <summary>Values of a symbol across holders; null when TaskFlow's fetch would raise NotFound.</summary>
    internal List<object?>? FetchMany(string name, bool firstOnly)
    {
        var values = new List<object?>();
        if (TryGetStore(name, out var sv))
        {
            values.Add(sv);
            if (firstOnly) return values;
        }
        if (Compiled.Providers.TryGetValue(name, out var providers))
        {
            foreach (var p in providers)
            {
                if (!TryGetExecuteResult(p, out var container, out var ignored))
                {
                    if (ignored) continue;
                    return null; // TaskFlow: an inaccessible provider makes the whole fetch fail
                }
                if (!TryExtract(Compiled.Atoms[p]!, container, name, out var item)) return null;
                values.Add(item);
                if (firstOnly) return values;
            }
        }
        return values;
    }

    /// <summary>TaskFlow's <c>_get(last_results, failure)</c>: a failure if one is recorded, else the result when the state allows it.</summary>
    internal bool TryGetExecuteResult(int node, out object? value, out bool ignored)
    {
        ignored = false;
        if (FailureOf[node] is { } f) { value = f; return true; }
        var s = States[node];
        if (s is AtomState.Success or AtomState.Failure or AtomState.Reverting)
        {
            if (Histories[node] is { } h)
            {
                if (h.Count == 0) { value = null; return false; }
                value = h[^1].Value;
                return true;
            }
            value = Results[node];
            return true;
        }
        ignored = s == AtomState.Ignore;
        value = null;
        return false;
    }

    /// <summary>Extracts a provided symbol from a result per the atom's provides (whole, index or key).</summary>
    internal static bool TryExtract(Atom atom, object? container, string symbol, out object? item)
    {
        var spec = atom.Provides;
        switch (spec.Kind)
        {
            case ProvidesSpec.ProvidesKind.Whole:
                item = container;
                return true;
            case ProvidesSpec.ProvidesKind.Positional:
            {
                // With duplicate names the last position wins, as in a Python dict built from the names.
                int index = spec.Names.Count - 1;
                while (index >= 0 && spec.Names[index] != symbol) index--;
                switch (container)
                {
                    case string text when index < text.Length:
                        item = text[index].ToString(); // TaskFlow indexes the result: a string gives its characters
                        return true;
                    case IList list when index < list.Count:
                        item = list[index];
                        return true;
                    case JsonElement { ValueKind: JsonValueKind.Array } je when index < je.GetArrayLength():
                        item = je[index];
                        return true;
                    case JsonElement { ValueKind: JsonValueKind.String } js when js.GetString() is { } saved && index < saved.Length:
                        item = saved[index].ToString(); // a string result loaded from a saved run indexes like the live one
                        return true;
                    case System.Runtime.CompilerServices.ITuple tuple when index < tuple.Length:
                        item = tuple[index];
                        return true;
                }
                item = null;
                return false;
            }
            case ProvidesSpec.ProvidesKind.Keys:
                switch (container)
                {
                    case IDictionary<string, object?> d when d.TryGetValue(symbol, out var v):
                        item = v;
                        return true;
                    case IReadOnlyDictionary<string, object?> rd when rd.TryGetValue(symbol, out var v2):
                        item = v2;
                        return true;
                    case IDictionary nd when nd.Contains(symbol):
                        item = nd[symbol];
                        return true;
                    case JsonElement { ValueKind: JsonValueKind.Object } je when je.TryGetProperty(symbol, out var p):
                        item = p;
                        return true;
                }
                item = null;
                return false;
            default:
                item = null;
                return false;
        }
    }

    private int NodeOf(string atomName)
    {
        ArgumentNullException.ThrowIfNull(atomName);
        return Compiled.NodeByAtomName.TryGetValue(atomName, out var n)
            ? n
            : throw new NotFoundException($"No atom named '{atomName}' in flow '{Compiled.Root.Name}'.");
    }

    // ---- argument resolution (TaskFlow's fetch_mapped_args and its scope walker) ----

    internal sealed class ScopeResolution
    {
        /// <summary>Visible providers grouped by scope level, innermost first, nearest first within a level.</summary>
        public int[][] Levels { get; init; } = [];
        /// <summary>Instead of <see cref="Levels"/>, the only level (most arguments have one provider: no wrapper array each).</summary>
        public int[]? OnlyLevel { get; init; }
        /// <summary>Whether some atom anywhere provides the symbol.</summary>
        public required bool Registered { get; init; }

        public bool HasVisibleProvider => OnlyLevel is not null || Levels.Length > 0;
    }

    internal ScopeResolution Resolve(int node, int bindingIndex, ArgumentBinding binding, bool revert)
    {
        // An atom whose revert binds as its execute does (the same bindings) resolves each argument once for both.
        var map = Compiled.Atoms[node]!.Map;
        bool shared = ReferenceEquals(map.Revert, map.Execute);
        int slot = revert && !shared ? map.Execute.Length + bindingIndex : bindingIndex;
        if (slot == 0) return _firstResolutions[node] ??= ComputeResolution(node, binding.Symbol);
        var others = _otherResolutions[node] ??= new ScopeResolution?[(shared ? map.Execute.Length : map.Execute.Length + map.Revert.Length) - 1];
        return others[slot - 1] ??= ComputeResolution(node, binding.Symbol);
    }

    // Resolutions without providers are all alike: shared (validating a 100k-atom flow resolves 100k symbols).
    private static readonly ScopeResolution Unregistered = new() { Registered = false };
    private static readonly ScopeResolution NoVisibleProvider = new() { Registered = true };

    private ScopeResolution ComputeResolution(int node, string symbol)
    {
        if (!Compiled.Providers.TryGetValue(symbol, out var providers))
            return Unregistered;
        var consumerScope = Compiled.ScopeOfNode[node];
        if (providers.Length == 1)
        {
            // The common case, one provider: it is the only level if it is visible and runs before the consumer.
            int provider = providers[0];
            return provider != node && VisibleLevel(consumerScope, Compiled.ScopeOfNode[provider]) >= 0 && IsAncestor(provider, node)
                ? new ScopeResolution { OnlyLevel = providers, Registered = true } // providers is [provider], read-only
                : NoVisibleProvider;
        }
        var candidates = new List<(int Level, int Node)>();
        foreach (var p in providers)
        {
            if (p == node) continue;
            var level = VisibleLevel(consumerScope, Compiled.ScopeOfNode[p]);
            if (level >= 0) candidates.Add((level, p));
        }
        if (candidates.Count == 0) return NoVisibleProvider;
        var ancestors = AncestorsAmong(node, candidates);
        if (candidates.Count == 1)
            return new ScopeResolution { Levels = ancestors.Count == 1 ? [[candidates[0].Node]] : [], Registered = true };
        var byLevel = new SortedDictionary<int, List<(int Order, int Node)>>();
        foreach (var (level, p) in candidates)
        {
            if (!ancestors.Contains(p)) continue;
            if (!byLevel.TryGetValue(level, out var list)) byLevel[level] = list = [];
            list.Add((Compiled.ScopeOfNode[p].ReversePreorder, p));
        }
        return new ScopeResolution
        {
            Levels = byLevel.Values.Select(l => l.OrderBy(x => x.Order).Select(x => x.Node).ToArray()).ToArray(),
            Registered = true,
        };
    }

    /// <summary>The scope level (0 = the consumer's own flow) at which a provider is visible, or -1.</summary>
    private static int VisibleLevel(ScopeNode consumer, ScopeNode provider)
    {
        // Siblings (the common case): visible at the consumer's own level when the provider comes first.
        if (provider.Parent is not null && ReferenceEquals(provider.Parent, consumer.Parent))
            return provider.IndexInParent < consumer.IndexInParent ? 0 : -1;
        // Ancestors of the provider, for the LCA test.
        var providerPath = new Dictionary<ScopeNode, ScopeNode>(ReferenceEqualityComparer.Instance); // ancestor → child on the path
        for (var c = provider; c.Parent is not null; c = c.Parent) providerPath[c.Parent] = c;
        int level = 0;
        for (var last = consumer; last.Parent is not null; last = last.Parent, level++)
        {
            if (providerPath.TryGetValue(last.Parent, out var providerBranch))
                return providerBranch.IndexInParent < last.IndexInParent ? level : -1;
        }
        return -1;
    }

    /// <summary>Whether <paramref name="provider"/> is a transitive predecessor of <paramref name="node"/> (usually a direct one: no search).</summary>
    private bool IsAncestor(int provider, int node)
    {
        if (Compiled.TopologicalRank[provider] >= Compiled.TopologicalRank[node]) return false;
        if (Array.IndexOf(Compiled.Predecessors[node], provider) >= 0) return true;
        return AncestorsAmong(node, [(0, provider)]).Count == 1;
    }

    /// <summary>
    /// Which of the candidate providers are transitive predecessors of <paramref name="node"/>. Searches backwards from
    /// the node, never below the lowest topological rank still sought, and stops once every candidate is found, so a
    /// consumer next to its provider costs a step instead of a walk over everything before it.
    /// </summary>
    private HashSet<int> AncestorsAmong(int node, List<(int Level, int Node)> candidates)
    {
        var rank = Compiled.TopologicalRank;
        var sought = new HashSet<int>();
        int floor = int.MaxValue;
        foreach (var (_, p) in candidates)
            if (rank[p] < rank[node] && sought.Add(p)) floor = Math.Min(floor, rank[p]);
        var found = new HashSet<int>();
        if (sought.Count == 0) return found;
        var seen = new HashSet<int>();
        var stack = new Stack<int>();
        stack.Push(node);
        while (stack.Count > 0 && found.Count < sought.Count)
        {
            foreach (var p in Compiled.Predecessors[stack.Pop()])
            {
                if (rank[p] < floor || !seen.Add(p)) continue;
                if (sought.Contains(p)) found.Add(p);
                stack.Push(p);
            }
        }
        return found;
    }

    /// <summary>Binds an atom's arguments for a call; throws <see cref="NotFoundException"/> as TaskFlow's lookup does.</summary>
    internal TaskArguments FetchArguments(int node, bool revert)
    {
        var atom = Compiled.Atoms[node]!;
        var map = atom.Map;
        var bindings = revert ? map.Revert : map.Execute;
        if (bindings.Length == 0) return _noArguments[node]!; // immutable, so one per atom serves every call
        var values = new object?[bindings.Length];
        var present = new bool[bindings.Length];
        var inject = atom.Inject;
        var store = _store;
        for (int i = 0; i < bindings.Length; i++)
        {
            var b = bindings[i];
            if (inject is not null && inject.TryGetValue(b.Symbol, out var iv)) { values[i] = iv; present[i] = true; continue; }
            if (store.TryGetValue(b.Symbol, out var sv)) { values[i] = sv; present[i] = true; continue; }
            var resolution = Resolve(node, i, b, revert);
            if (!resolution.Registered)
            {
                if (b.IsOptional) { values[i] = b.DefaultValue; continue; }
                throw new NotFoundException($"Atom '{atom.Name}' parameter '{b.Parameter}' reads '{b.Symbol}', which no store entry or atom provides.");
            }
            if (!TryFromProviders(atom, resolution, b, out values[i]))
                throw new NotFoundException($"Atom '{atom.Name}' parameter '{b.Parameter}' reads '{b.Symbol}', but no provider visible to it has produced that value.");
            present[i] = true;
        }
        return new TaskArguments(atom.Name, revert ? map.RevertNames : map.ExecuteNames, values, present);
    }

    private bool TryFromProviders(Atom consumer, ScopeResolution resolution, ArgumentBinding b, out object? value)
    {
        if (resolution.OnlyLevel is { } only) return TryFromLevel(consumer, only, b, out value);
        foreach (var level in resolution.Levels)
            if (TryFromLevel(consumer, level, b, out value)) return true;
        value = null;
        return false;
    }

    /// <summary>
    /// The value from the first provider of one scope level that has a result; false when none has one (the next level
    /// is asked); throws when a provider's result is not available or has no element for the symbol.
    /// </summary>
    private bool TryFromLevel(Atom consumer, int[] level, ArgumentBinding b, out object? value)
    {
        if (level.Length == 1)
        {
            // One provider, nearly always: no list of the results found (this runs for every argument of every call).
            int only = level[0];
            if (!TryGetExecuteResult(only, out var result, out var skipped))
            {
                if (!skipped) throw ResultNotAvailable(consumer, b, only);
                value = null;
                return false;
            }
            if (TryExtract(Compiled.Atoms[only]!, result, b.Symbol, out value)) return true;
            throw NoElement(consumer, b, [only]);
        }
        List<(int Node, object? Container)>? found = null;
        foreach (var p in level)
        {
            if (!TryGetExecuteResult(p, out var container, out var ignored))
            {
                if (ignored) continue;
                throw ResultNotAvailable(consumer, b, p);
            }
            (found ??= []).Add((p, container));
        }
        if (found is null)
        {
            value = null;
            return false;
        }
        foreach (var (p, container) in found)
            if (TryExtract(Compiled.Atoms[p]!, container, b.Symbol, out value)) return true;
        throw NoElement(consumer, b, found.Select(f => f.Node));
    }

    private NotFoundException ResultNotAvailable(Atom consumer, ArgumentBinding b, int provider) => new(
        $"Atom '{consumer.Name}' parameter '{b.Parameter}' expects '{b.Symbol}' from '{Compiled.Atoms[provider]!.Name}', whose result is not available in state {States[provider].ToTaskFlowName()}.");

    private NotFoundException NoElement(Atom consumer, ArgumentBinding b, IEnumerable<int> providers) => new(
        $"Atom '{consumer.Name}' parameter '{b.Parameter}': the result of {string.Join(", ", providers.Select(p => $"'{Compiled.Atoms[p]!.Name}'"))} has no element for '{b.Symbol}'.");

    /// <summary>Whether a requirement can be satisfied at all (TaskFlow's validation: any visible potential provider).</summary>
    internal bool IsSatisfiable(int node, int bindingIndex, ArgumentBinding b, bool revert)
    {
        var atom = Compiled.Atoms[node]!;
        if (b.IsOptional) return true;
        if (atom.Inject is not null && atom.Inject.ContainsKey(b.Symbol)) return true;
        if (StoreContains(b.Symbol)) return true;
        var r = Resolve(node, bindingIndex, b, revert);
        return r.HasVisibleProvider;
    }
}
