using System.Collections;
using TaskFlow.Atoms;
using TaskFlow.Failures;
using TaskFlow.Retries;

namespace TaskFlow.Flows;

/// <summary>How far a decider's "no" reaches (TaskFlow's <c>deciders.Depth</c>).</summary>
public enum DeciderDepth
{
    /// <summary>The target and everything after it, nested flows included (the default).</summary>
    All,
    /// <summary>The target and the tasks after it in the same flow, not entering nested flows.</summary>
    Flow,
    /// <summary>The target and its direct task successors.</summary>
    Neighbors,
    /// <summary>The target only.</summary>
    Atom,
}

/// <summary>Decides, just before a link's target would run, whether it runs: gets the results of the link sources by atom name.</summary>
public delegate bool LinkDecider(IReadOnlyDictionary<string, object?> history);

/// <summary>An ordering constraint between two children of a flow.</summary>
/// <param name="From">Runs first.</param>
/// <param name="To">Runs after <paramref name="From"/>.</param>
/// <param name="Decider">Optional: decides whether <paramref name="To"/> runs.</param>
/// <param name="Depth">How far a "no" from the decider reaches.</param>
public sealed record FlowLink(FlowNode From, FlowNode To, LinkDecider? Decider = null, DeciderDepth Depth = DeciderDepth.All);

/// <summary>
/// A composition of atoms and other flows. <see cref="LinearFlow"/> runs its children in order,
/// <see cref="UnorderedFlow"/> with no order between them, <see cref="GraphFlow"/> in the order of its links and of
/// the dependencies between what children require and provide. A flow may have a retry controller for failures inside it.
/// </summary>
public abstract class Flow : FlowNode, IEnumerable<FlowNode>
{
    private protected readonly List<FlowNode> Children = [];
    private bool _frozen;

    /// <summary>Creates a flow.</summary>
    protected Flow(string name, RetryController? retry)
    {
        SetName(name);
        Retry = retry;
    }

    /// <summary>The retry controller for failures inside this flow, or null.</summary>
    public RetryController? Retry { get; }

    /// <summary>The direct children in the order they were added.</summary>
    public IReadOnlyList<FlowNode> Items => Children;

    /// <summary>How many direct children there are.</summary>
    public int Count => Children.Count;

    /// <summary>Adds children (at the end).</summary>
    public Flow Add(params FlowNode[] nodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        EnsureNotFrozen();
        for (int i = 0; i < nodes.Length; i++)
            if (nodes[i] is null) throw new ArgumentNullException(nameof(nodes), $"Child {i} added to flow '{Name}' is null.");
        foreach (var n in nodes)
            if (n is Flow child && child.Contains(this))
                throw new FlowDefinitionException(ReferenceEquals(child, this)
                    ? $"Flow '{Name}' cannot be added to itself."
                    : $"Flow '{child.Name}' cannot be added to flow '{Name}': it already contains '{Name}', so the nesting would be a loop. The flow is unchanged.");
        foreach (var n in nodes)
            if (n is Atom a) a.Freeze(); // surface bad rebind/provides at build time, as TaskFlow does
        AddCore(nodes);
        return this;
    }

    /// <summary>Whether <paramref name="flow"/> is this flow or nested anywhere inside it.</summary>
    private bool Contains(Flow flow)
    {
        var pending = new Stack<Flow>();
        var seen = new HashSet<Flow>(ReferenceEqualityComparer.Instance);
        pending.Push(this);
        while (pending.Count > 0)
        {
            var f = pending.Pop();
            if (ReferenceEquals(f, flow)) return true;
            if (!seen.Add(f)) continue;
            foreach (var c in f.Children) if (c is Flow nested) pending.Push(nested);
        }
        return false;
    }

    /// <summary>Adds one child (collection-initializer support).</summary>
    public void Add(FlowNode node) => Add([node]);

    private protected virtual void AddCore(FlowNode[] nodes) => Children.AddRange(nodes);

    /// <summary>The ordering constraints between direct children.</summary>
    public abstract IEnumerable<FlowLink> Links { get; }

    /// <summary>Every symbol the flow's atoms (and its retry) provide, nested flows included.</summary>
    public IReadOnlySet<string> ProvidedSymbols
    {
        get
        {
            var set = new HashSet<string>(StringComparer.Ordinal);
            if (Retry is not null) set.UnionWith(Retry.ProvidedSymbols);
            foreach (var c in Children) set.UnionWith(ProvidesOf(c));
            return set;
        }
    }

    /// <summary>The symbols the flow needs from outside (what its atoms require and nothing earlier in it provides).</summary>
    public abstract IReadOnlySet<string> RequiredSymbols { get; }

    /// <summary>The requirements a flow starts from: its retry's requirements, and (out) what its retry provides.</summary>
    private protected HashSet<string> RetryRequirements(out HashSet<string> retryProvides)
    {
        var requires = new HashSet<string>(StringComparer.Ordinal);
        retryProvides = new HashSet<string>(StringComparer.Ordinal);
        if (Retry is not null)
        {
            requires.UnionWith(Retry.RequiredSymbols);
            retryProvides.UnionWith(Retry.ProvidedSymbols);
        }
        return requires;
    }

    /// <summary>
    /// The distinct symbols a node provides: an atom's own array when it cannot repeat a name (no copy, and loops over
    /// an array need no enumerator: inference visits every child of a 100k-child graph).
    /// </summary>
    internal static string[] ProvidesOf(FlowNode node) => node switch
    {
        Atom { ProvidedSymbolArray.Length: <= 1 } a => a.ProvidedSymbolArray,
        Atom a => a.ProvidedSymbolArray.Distinct(StringComparer.Ordinal).ToArray(),
        Flow f => [.. f.ProvidedSymbols],
        _ => [],
    };

    /// <summary>The distinct symbols a node requires (an atom's own array: distinct already).</summary>
    internal static string[] RequiresOf(FlowNode node) => node switch
    {
        Atom a => a.RequiredSymbolArray,
        Flow f => [.. f.RequiredSymbols],
        _ => [],
    };

    /// <summary>Whether the flow has been compiled by an engine (and can no longer change).</summary>
    public bool IsFrozen => _frozen;

    internal void MarkFrozen() => _frozen = true;

    private protected void EnsureNotFrozen()
    {
        if (_frozen)
            throw new InvalidOperationException($"Flow '{Name}' was compiled by an engine and can no longer be changed; build a new flow instead.");
    }

    /// <inheritdoc />
    public IEnumerator<FlowNode> GetEnumerator() => Children.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>Runs its children one after another, in the order they were added.</summary>
public sealed class LinearFlow : Flow
{
    /// <summary>Creates the flow.</summary>
    public LinearFlow(string name, RetryController? retry = null) : base(name, retry) { }

    /// <inheritdoc />
    public override IEnumerable<FlowLink> Links
    {
        get
        {
            for (int i = 1; i < Children.Count; i++) yield return new FlowLink(Children[i - 1], Children[i]);
        }
    }

    /// <inheritdoc />
    public override IReadOnlySet<string> RequiredSymbols
    {
        get
        {
            var requires = RetryRequirements(out var prior);
            foreach (var c in Children)
            {
                foreach (var r in RequiresOf(c)) if (!prior.Contains(r)) requires.Add(r);
                prior.UnionWith(ProvidesOf(c));
            }
            return requires;
        }
    }
}

/// <summary>Runs its children with no order between them (in parallel on the parallel engine); they cannot see each other's results.</summary>
public sealed class UnorderedFlow : Flow
{
    /// <summary>Creates the flow.</summary>
    public UnorderedFlow(string name, RetryController? retry = null) : base(name, retry) { }

    /// <inheritdoc />
    public override IEnumerable<FlowLink> Links => [];

    /// <inheritdoc />
    public override IReadOnlySet<string> RequiredSymbols
    {
        get
        {
            var requires = RetryRequirements(out var retryProvides);
            foreach (var c in Children) requires.UnionWith(RequiresOf(c));
            requires.ExceptWith(retryProvides);
            return requires;
        }
    }
}

/// <summary>
/// Runs its children in the order of explicit links and of the dependencies inferred from what they require and
/// provide (TaskFlow's graph flow). A link may carry a decider that can skip its target.
/// </summary>
public sealed class GraphFlow : Flow
{
    // Children are numbered in insertion order. The edges between them (kept acyclic at every Add/Link) live in
    // arrays, so a graph of 100k children holds no per-child collections: each child's out-edges are chained in the
    // order they were made (the order Links gives), its in-edges chained for the backward searches of inference.
    private readonly Dictionary<FlowNode, int> _indexOf = new(ReferenceEqualityComparer.Instance);
    private int[] _firstOut = [];
    private int[] _lastOut = [];
    private int[] _firstIn = [];
    private int[] _outDegree = [];
    private int[] _inDegree = [];
    private int[] _edgeFrom = [];
    private int[] _edgeTo = [];
    private int[] _nextOut = [];
    private int[] _nextIn = [];
    // Per edge, only once some link has a decider or a depth (inferred edges have neither).
    private LinkDecider?[]? _edgeDecider;
    private DeciderDepth[]? _edgeDepth;
    private int _edgeCount;
    // Children in the order they first got an out-edge: where the cycle report's search starts, as it always has.
    private readonly List<int> _sources = [];
    // Scratch for searches: a child is marked when _mark[child] is the current generation (or one above, in a DFS).
    private int[] _mark = [];
    private int _generation;
    private int[] _work = [];

    /// <summary>Creates the flow.</summary>
    public GraphFlow(string name, RetryController? retry = null) : base(name, retry) { }

    /// <summary>
    /// Makes <paramref name="to"/> run after <paramref name="from"/> (both direct children). With a decider,
    /// <paramref name="to"/> (and, by <paramref name="depth"/>, what follows it) is skipped when the decider says no.
    /// </summary>
    /// <exception cref="ArgumentException">A node is not a direct child of this flow.</exception>
    /// <exception cref="DependencyCycleException">The link would make a cycle; the flow is left unchanged.</exception>
    public GraphFlow Link(FlowNode from, FlowNode to, LinkDecider? decider = null, DeciderDepth depth = DeciderDepth.All)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        EnsureNotFrozen();
        if (!_indexOf.TryGetValue(from, out int u)) throw new ArgumentException($"Cannot link from '{from.Name}': it is not a child of graph flow '{Name}'.", nameof(from));
        if (!_indexOf.TryGetValue(to, out int v)) throw new ArgumentException($"Cannot link to '{to.Name}': it is not a child of graph flow '{Name}'.", nameof(to));
        int existing = FindEdge(u, v);
        if (existing >= 0)
        {
            // Same edge, new decider: the graph's shape (and so its acyclicity) does not change.
            SetLinkOptions(existing, decider, depth);
            return this;
        }
        int edgesBefore = _edgeCount, sourcesBefore = _sources.Count;
        AddEdge(u, v, decider, depth);
        if (HasCycleThroughEdgesFrom(edgesBefore))
        {
            string message = CycleMessage($"linking '{from.Name}' -> '{to.Name}'");
            RollBack(edgesBefore, sourcesBefore);
            throw new DependencyCycleException(message);
        }
        return this;
    }

    /// <inheritdoc />
    public override IEnumerable<FlowLink> Links
    {
        get
        {
            for (int from = 0; from < Children.Count; from++)
                for (int e = _firstOut[from]; e >= 0; e = _nextOut[e])
                    yield return new FlowLink(Children[from], Children[_edgeTo[e]], DeciderOf(e), DepthOf(e));
        }
    }

    /// <summary>
    /// Calls <paramref name="visit"/> with (from child index, to child index, the link when it has a decider, else null)
    /// for every edge, in the order of <see cref="Links"/>.
    /// </summary>
    internal void ForEachEdge(Action<int, int, FlowLink?> visit)
    {
        for (int from = 0; from < Children.Count; from++)
            for (int e = _firstOut[from]; e >= 0; e = _nextOut[e])
            {
                int to = _edgeTo[e];
                visit(from, to, DeciderOf(e) is { } d ? new FlowLink(Children[from], Children[to], d, DepthOf(e)) : null);
            }
    }

    /// <summary>
    /// The children in a topological order by generations (Kahn's algorithm, ties in insertion order), as TaskFlow's
    /// networkx does; and for each child (by insertion index) its position in that order.
    /// </summary>
    internal (FlowNode[] Order, int[] Position) TopologicalOrder()
    {
        int count = Children.Count;
        var indegree = new int[count];
        for (int e = 0; e < _edgeCount; e++) indegree[_edgeTo[e]]++;
        var order = new int[count];
        int done = 0;
        for (int i = 0; i < count; i++) if (indegree[i] == 0) order[done++] = i;
        // Each generation is order[start..end); the next one is appended after it.
        for (int start = 0; start < done;)
        {
            int end = done;
            for (int k = start; k < end; k++)
                for (int e = _firstOut[order[k]]; e >= 0; e = _nextOut[e])
                    if (--indegree[_edgeTo[e]] == 0) order[done++] = _edgeTo[e];
            start = end;
        }
        var nodes = new FlowNode[done];
        var position = new int[count];
        for (int k = 0; k < done; k++)
        {
            nodes[k] = Children[order[k]];
            position[order[k]] = k;
        }
        return (nodes, position);
    }

    /// <inheritdoc />
    public override IReadOnlySet<string> RequiredSymbols
    {
        get
        {
            var requires = RetryRequirements(out var retryProvides);
            for (int i = 0; i < Children.Count; i++) requires.UnionWith(Unsatisfied(i, retryProvides));
            return requires;
        }
    }

    private protected override void AddCore(FlowNode[] nodes)
    {
        // TaskFlow's graph_flow.add: infer edges child by child; ambiguity and cycles leave the flow unchanged.
        var required = new Dictionary<string, Holders>(StringComparer.Ordinal);
        var provided = new Dictionary<string, Holders>(nodes.Length, StringComparer.Ordinal);
        var retryProvides = new HashSet<string>(StringComparer.Ordinal);
        if (Retry is not null)
        {
            foreach (var v in Retry.RequiredSymbols) Append(required, v, Retry);
            foreach (var v in Retry.ProvidedSymbols) { retryProvides.Add(v); Append(provided, v, Retry); }
        }
        int existing = Children.Count;
        for (int i = 0; i < existing; i++)
        {
            foreach (var v in Unsatisfied(i, retryProvides)) Append(required, v, Children[i]);
            foreach (var v in ProvidesOf(Children[i])) Append(provided, v, Children[i]);
        }

        int edgesBefore = _edgeCount, sourcesBefore = _sources.Count;
        EnsureChildCapacity(existing + nodes.Length);
        _indexOf.EnsureCapacity(existing + nodes.Length);
        EnsureEdgeCapacity(_edgeCount + nodes.Length); // a guess: chains and fans make about one edge per child
        int added = 0;
        _pending = nodes;
        try
        {
            for (; added < nodes.Length; added++)
            {
                var node = nodes[added];
                int index = existing + added;
                if (!_indexOf.TryAdd(node, index))
                    throw new DuplicateAtomNameException($"'{node.Name}' is already a child of graph flow '{Name}'; a node can be added only once.");
                _firstOut[index] = _lastOut[index] = _firstIn[index] = -1;
                _outDegree[index] = _inDegree[index] = 0;
                var unsatisfied = Unsatisfied(index, retryProvides);
                if (unsatisfied.Length > 1) unsatisfied = unsatisfied.Order(StringComparer.Ordinal).ToArray(); // (may be the atom's own array)
                foreach (var v in unsatisfied)
                {
                    if (provided.TryGetValue(v, out var providers))
                    {
                        if (providers.Count > 1)
                            throw new AmbiguousDependencyException(
                                $"Graph flow '{Name}': '{node.Name}' requires '{v}', which {string.Join(" and ", providers.All().Select(p => $"'{p.Name}'"))} both provide; " +
                                "rebind the requirement or link the intended provider explicitly.");
                        if (ReferenceEquals(providers.First, Retry)) continue;
                        Infer(_indexOf[providers.First], index);
                    }
                    else
                    {
                        Append(required, v, node);
                    }
                }
                var provides = ProvidesOf(node);
                foreach (var v in provides) Append(provided, v, node);
                foreach (var v in provides)
                {
                    if (required.Remove(v, out var requirees))
                        foreach (var requiree in requirees.All())
                            if (!ReferenceEquals(requiree, node) && !ReferenceEquals(requiree, Retry))
                                Infer(index, _indexOf[requiree]);
                }
            }
            if (HasCycleThroughEdgesFrom(edgesBefore))
                throw new DependencyCycleException(CycleMessage($"adding {string.Join(", ", nodes.Select(n => $"'{n.Name}'"))}"));
        }
        catch
        {
            for (int k = 0; k < added; k++) _indexOf.Remove(nodes[k]);
            if (added < nodes.Length && _indexOf.TryGetValue(nodes[added], out int at) && at == existing + added) _indexOf.Remove(nodes[added]);
            RollBack(edgesBefore, sourcesBefore);
            throw;
        }
        finally
        {
            _pending = null;
        }
        Children.AddRange(nodes);
    }

    /// <summary>The nodes holding a symbol (providers or requirers), in the order they were added: usually one, so no list.</summary>
    private struct Holders
    {
        public FlowNode First;
        public List<FlowNode>? More;

        public readonly int Count => More is null ? 1 : More.Count + 1;

        public readonly IEnumerable<FlowNode> All() => More is null ? [First] : [First, .. More];
    }

    private static void Append(Dictionary<string, Holders> map, string key, FlowNode node)
    {
        ref var holders = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(map, key, out bool exists);
        if (!exists) holders.First = node;
        else (holders.More ??= []).Add(node);
    }

    /// <summary>Adds an inferred edge unless the two are linked already.</summary>
    private void Infer(int from, int to)
    {
        if (FindEdge(from, to) < 0) AddEdge(from, to, null, DeciderDepth.All);
    }

    /// <summary>The edge from → to, or -1; walks the shorter of the two chains (a hub with 100k edges is never walked for each of them).</summary>
    private int FindEdge(int from, int to)
    {
        if (_outDegree[from] <= _inDegree[to])
        {
            for (int e = _firstOut[from]; e >= 0; e = _nextOut[e])
                if (_edgeTo[e] == to) return e;
        }
        else
        {
            for (int e = _firstIn[to]; e >= 0; e = _nextIn[e])
                if (_edgeFrom[e] == from) return e;
        }
        return -1;
    }

    private void AddEdge(int from, int to, LinkDecider? decider, DeciderDepth depth)
    {
        if (_edgeCount == _edgeTo.Length) EnsureEdgeCapacity(Math.Max(8, _edgeCount * 2));
        int e = _edgeCount++;
        _edgeFrom[e] = from;
        _edgeTo[e] = to;
        SetLinkOptions(e, decider, depth);
        _nextOut[e] = -1;
        if (_lastOut[from] < 0) { _firstOut[from] = e; _sources.Add(from); }
        else _nextOut[_lastOut[from]] = e;
        _lastOut[from] = e;
        _nextIn[e] = _firstIn[to];
        _firstIn[to] = e;
        _outDegree[from]++;
        _inDegree[to]++;
    }

    private void EnsureEdgeCapacity(int size)
    {
        if (_edgeTo.Length >= size) return;
        size = Math.Max(size, _edgeTo.Length * 2); // adding children one at a time must not copy the edges each time
        Array.Resize(ref _edgeFrom, size);
        Array.Resize(ref _edgeTo, size);
        Array.Resize(ref _nextOut, size);
        Array.Resize(ref _nextIn, size);
        if (_edgeDecider is not null) Array.Resize(ref _edgeDecider, size);
        if (_edgeDepth is not null) Array.Resize(ref _edgeDepth, size);
    }

    private LinkDecider? DeciderOf(int edge) => _edgeDecider?[edge];

    private DeciderDepth DepthOf(int edge) => _edgeDepth?[edge] ?? DeciderDepth.All;

    private void SetLinkOptions(int edge, LinkDecider? decider, DeciderDepth depth)
    {
        if (_edgeDecider is null)
        {
            if (decider is null && depth == DeciderDepth.All) return;
            _edgeDecider = new LinkDecider?[_edgeTo.Length];
            _edgeDepth = new DeciderDepth[_edgeTo.Length];
        }
        _edgeDecider[edge] = decider;
        _edgeDepth![edge] = depth;
    }

    /// <summary>Removes the edges made since <paramref name="edgeCount"/> (newest first), leaving the graph as it was.</summary>
    private void RollBack(int edgeCount, int sourceCount)
    {
        for (int e = _edgeCount - 1; e >= edgeCount; e--)
        {
            int from = _edgeFrom[e], to = _edgeTo[e];
            _firstIn[to] = _nextIn[e]; // in-edges are chained newest first: e is the head
            int previous = -1;
            for (int x = _firstOut[from]; x != e; x = _nextOut[x]) previous = x; // out-edges oldest first: e is the tail
            if (previous < 0) _firstOut[from] = -1; else _nextOut[previous] = -1;
            _lastOut[from] = previous;
            SetLinkOptions(e, null, DeciderDepth.All);
            _outDegree[from]--;
            _inDegree[to]--;
        }
        _edgeCount = edgeCount;
        _sources.RemoveRange(sourceCount, _sources.Count - sourceCount);
    }

    private void EnsureChildCapacity(int count)
    {
        if (_firstOut.Length >= count) return;
        int size = Math.Max(count, _firstOut.Length * 2);
        Array.Resize(ref _firstOut, size);
        Array.Resize(ref _lastOut, size);
        Array.Resize(ref _firstIn, size);
        Array.Resize(ref _outDegree, size);
        Array.Resize(ref _inDegree, size);
        Array.Resize(ref _mark, size);
        Array.Resize(ref _work, size);
    }

    /// <summary>Starts a search: every child counts as unmarked afterwards.</summary>
    private int NextGeneration()
    {
        if (_generation > int.MaxValue - 4)
        {
            Array.Clear(_mark);
            _generation = 0;
        }
        return _generation += 2;
    }

    /// <summary>
    /// What child <paramref name="child"/> requires that neither the retry nor any transitive predecessor provides,
    /// in the order of its requirements (the atom's own array when that is all of them: not to be changed).
    /// </summary>
    private string[] Unsatisfied(int child, HashSet<string> retryProvides)
    {
        var requirements = RequiresOf(ChildAt(child));
        if (requirements.Length == 0) return [];
        // A child with no predecessors and nothing from the retry (every new child) needs all its requirements: no copy.
        if (_firstIn[child] < 0 && retryProvides.Count == 0) return requirements;
        var requires = new List<string>(requirements.Length);
        foreach (var r in requirements) if (!retryProvides.Contains(r)) requires.Add(r);
        if (requires.Count > 0 && _firstIn[child] >= 0)
        {
            // Breadth-first backwards over in-edges until every requirement is met by an ancestor.
            int generation = NextGeneration();
            int head = 0, tail = 0;
            _work[tail++] = child;
            while (head < tail && requires.Count > 0)
            {
                int n = _work[head++];
                for (int e = _firstIn[n]; e >= 0; e = _nextIn[e])
                {
                    int p = _edgeFrom[e];
                    if (_mark[p] == generation) continue;
                    _mark[p] = generation;
                    foreach (var v in ProvidesOf(ChildAt(p))) requires.Remove(v);
                    _work[tail++] = p;
                }
            }
        }
        return requires.Count == 0 ? [] : requires.ToArray();
    }

    // During AddCore the new children are numbered (and linked) before they join Children.
    private FlowNode ChildAt(int index) => index < Children.Count ? Children[index] : _pending![index - Children.Count];

    private FlowNode[]? _pending;

    /// <summary>
    /// Whether some edge made since <paramref name="edgeCount"/> closes a cycle: the graph was acyclic before, so any
    /// cycle runs through a new edge and is found by a depth-first search from the new edges' targets.
    /// </summary>
    private bool HasCycleThroughEdgesFrom(int edgeCount)
    {
        if (edgeCount == _edgeCount) return false;
        int grey = NextGeneration(), black = grey + 1;
        var stack = new Stack<(int Node, int NextEdge)>();
        for (int start = edgeCount; start < _edgeCount; start++)
        {
            int root = _edgeTo[start];
            if (_mark[root] == grey || _mark[root] == black) continue;
            _mark[root] = grey;
            stack.Push((root, _firstOut[root]));
            while (stack.Count > 0)
            {
                var (n, e) = stack.Pop();
                if (e < 0)
                {
                    _mark[n] = black;
                    continue;
                }
                stack.Push((n, _nextOut[e]));
                int m = _edgeTo[e];
                if (_mark[m] == grey) return true;
                if (_mark[m] == black) continue;
                _mark[m] = grey;
                stack.Push((m, _firstOut[m]));
            }
        }
        return false;
    }

    /// <summary>
    /// The error for a cycle: the first cycle a three-colour search finds starting from the children in the order
    /// they first got an edge (the cycle this flow has always reported).
    /// </summary>
    private string CycleMessage(string what)
    {
        var color = new Dictionary<int, int>();
        var parent = new Dictionary<int, int>();
        foreach (var start in _sources)
        {
            if (color.GetValueOrDefault(start) != 0) continue;
            var stack = new Stack<(int Node, int NextEdge)>();
            color[start] = 1;
            stack.Push((start, _firstOut[start]));
            while (stack.Count > 0)
            {
                var (n, e) = stack.Pop();
                if (e < 0)
                {
                    color[n] = 2;
                    continue;
                }
                stack.Push((n, _nextOut[e]));
                int m = _edgeTo[e];
                int c = color.GetValueOrDefault(m);
                if (c == 0)
                {
                    color[m] = 1;
                    parent[m] = n;
                    stack.Push((m, _firstOut[m]));
                }
                else if (c == 1)
                {
                    var cycle = new List<string> { ChildAt(m).Name };
                    for (var x = n; x != m; x = parent[x]) cycle.Add(ChildAt(x).Name);
                    cycle.Add(ChildAt(m).Name);
                    cycle.Reverse();
                    return $"Graph flow '{Name}': {what} makes a cycle ({string.Join(" -> ", cycle)}); no order can run it. The flow is unchanged.";
                }
            }
        }
        return $"Graph flow '{Name}': {what} makes a cycle; no order can run it. The flow is unchanged.";
    }
}
