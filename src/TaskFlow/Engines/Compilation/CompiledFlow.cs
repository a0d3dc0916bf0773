using TaskFlow.Atoms;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Retries;

namespace TaskFlow.Engines.Compilation;

internal enum NodeKind : byte { Task, Retry, FlowEntry, FlowExit }

/// <summary>A node of the scope hierarchy: a flow (with its retry first, then its children) or an atom.</summary>
internal sealed class ScopeNode
{
    private List<ScopeNode>? _children; // atoms (most nodes) have none: no list for them

    public required FlowNode Item { get; init; }
    public ScopeNode? Parent { get; init; }
    public IReadOnlyList<ScopeNode> Children => (IReadOnlyList<ScopeNode>?)_children ?? [];
    public int ChildCount => _children?.Count ?? 0;
    public int IndexInParent { get; init; }
    /// <summary>Position in a right-to-left pre-order walk of the whole tree (TaskFlow's reverse scope order).</summary>
    public int ReversePreorder { get; set; }

    internal void AddChild(ScopeNode child, int expectedChildren) => (_children ??= new List<ScopeNode>(expectedChildren)).Add(child);
}

/// <summary>
/// The immutable result of compiling a flow tree: one execution graph over atoms and flow entry/exit markers,
/// the retry that owns each atom, the scope hierarchy, and which atoms provide each symbol.
/// </summary>
/// <remarks>
/// The arrays are read-only: one-element arrays are shared between lists with the same single entry (node i's
/// successors, node i+2's predecessors and the providers of what node i+1 provides are one array [i+1]).
/// </remarks>
internal sealed class CompiledFlow
{
    public required Flow Root { get; init; }
    public required NodeKind[] Kinds { get; init; }
    public required int[][] Successors { get; init; }
    public required int[][] Predecessors { get; init; }
    /// <summary>The atom at each node, null for flow markers.</summary>
    public required Atom?[] Atoms { get; init; }
    /// <summary>The flow each flow marker belongs to (for diagrams), null for atoms.</summary>
    public required Flow?[] Flows { get; init; }
    /// <summary>Nodes of atoms in registration order (TaskFlow's storage order).</summary>
    public required int[] AtomNodes { get; init; }
    public required Dictionary<string, int> NodeByAtomName { get; init; }
    /// <summary>The retry node that owns each node, or -1.</summary>
    public required int[] RetryOf { get; init; }
    /// <summary>Links with deciders, by (from node, to node).</summary>
    public required Dictionary<(int From, int To), FlowLink> DeciderEdges { get; init; }
    public required ScopeNode[] ScopeOfNode { get; init; }
    /// <summary>Symbol → atom nodes that provide it, in registration order.</summary>
    public required Dictionary<string, int[]> Providers { get; init; }

    /// <summary>
    /// Each node's position in a topological order of the graph: a node's predecessors all rank lower, so a backward
    /// search for a provider can skip every node ranked below it.
    /// </summary>
    public required int[] TopologicalRank { get; init; }

    public int NodeCount => Kinds.Length;

    public bool IsAtom(int node) => Kinds[node] <= NodeKind.Retry;
}

/// <summary>Compiles a flow tree into a <see cref="CompiledFlow"/> (TaskFlow's PatternCompiler, without per-node graph copies).</summary>
/// <remarks>
/// A flow of 100k atoms compiles to 100k nodes, so nothing here is allocated per node beyond what the result keeps:
/// node attributes and edges live in arrays sized once from a count of the tree, and each node's successor and
/// predecessor arrays are cut from the edge list at the end.
/// </remarks>
internal sealed class FlowCompiler
{
    private NodeKind[] _kinds;
    private Atom?[] _atoms;
    private Flow?[] _flows;
    private int[] _retryOf;
    private ScopeNode?[] _scope;
    private int _count;
    // Edges in the order they are added; each node's out-edges chained through _edgeNext (for the duplicate check).
    private int[] _edgeFrom;
    private int[] _edgeTo;
    private int[] _edgeNext;
    private int _edgeCount;
    private int[] _firstEdge;
    private int[] _outDegree;
    private readonly Dictionary<(int, int), FlowLink> _deciders = [];
    private readonly HashSet<FlowNode> _seenFlows = new(ReferenceEqualityComparer.Instance);
    // Atoms are marked with this compilation's token instead of being hashed into a set: a 100k-atom flow spent more
    // time hashing its atoms than compiling them. (Two engines compiling one tree at once could each overwrite the
    // other's marks and miss an atom used twice; the duplicate-name check after the walk still refuses such a tree.)
    private readonly object _token = new();
    private int[] _registration;
    private int _registered;

    private FlowCompiler(int expectedNodes)
    {
        int n = Math.Max(expectedNodes, 4);
        _kinds = new NodeKind[n];
        _atoms = new Atom?[n];
        _flows = new Flow?[n];
        _retryOf = new int[n];
        _scope = new ScopeNode?[n];
        _firstEdge = new int[n];
        _outDegree = new int[n];
        _registration = new int[n];
        // A linear flow or a chain has about one edge per node; wider shapes grow the arrays.
        _edgeFrom = new int[n + 16];
        _edgeTo = new int[n + 16];
        _edgeNext = new int[n + 16];
    }

    public static CompiledFlow Compile(Flow root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var c = new FlowCompiler(CountNodes(root, 0));
        var rootScope = new ScopeNode { Item = root, Parent = null, IndexInParent = 0 };
        c.CompileFlow(root, rootScope);
        return c.Finish(root, rootScope);
    }

    /// <summary>How many nodes the tree compiles to (a capacity: a tree using an object twice is reported by <see cref="Track"/>).</summary>
    private static int CountNodes(Flow flow, int depth)
    {
        if (depth > 1000) return 0; // flows cannot contain themselves (Add refuses); this only bounds the estimate
        int n = flow.Retry is null ? 2 : 3;
        foreach (var child in flow.Items) n += child is Flow f ? CountNodes(f, depth + 1) : 1;
        return n;
    }

    private int NewNode(NodeKind kind, Atom? atom, Flow? flow, ScopeNode? scope)
    {
        if (_count == _kinds.Length)
        {
            int size = _count * 2;
            Array.Resize(ref _kinds, size);
            Array.Resize(ref _atoms, size);
            Array.Resize(ref _flows, size);
            Array.Resize(ref _retryOf, size);
            Array.Resize(ref _scope, size);
            Array.Resize(ref _firstEdge, size);
            Array.Resize(ref _outDegree, size);
        }
        int n = _count++;
        _kinds[n] = kind;
        _atoms[n] = atom;
        _flows[n] = flow;
        _retryOf[n] = -1;
        _scope[n] = scope;
        _firstEdge[n] = -1;
        return n;
    }

    private void Register(int node)
    {
        if (_registered == _registration.Length) Array.Resize(ref _registration, _registered * 2);
        _registration[_registered++] = node;
    }

    private void AddEdge(int from, int to, FlowLink? link)
    {
        for (int e = _firstEdge[from]; e >= 0; e = _edgeNext[e])
            if (_edgeTo[e] == to) goto decider; // already there
        if (_edgeCount == _edgeFrom.Length)
        {
            int size = _edgeCount * 2;
            Array.Resize(ref _edgeFrom, size);
            Array.Resize(ref _edgeTo, size);
            Array.Resize(ref _edgeNext, size);
        }
        int edge = _edgeCount++;
        _edgeFrom[edge] = from;
        _edgeTo[edge] = to;
        // Chained newest first: the check above only needs membership; the order kept is the edge list's.
        _edgeNext[edge] = _firstEdge[from];
        _firstEdge[from] = edge;
        _outDegree[from]++;
        decider:
        if (link?.Decider is not null) _deciders[(from, to)] = link;
    }

    private void Track(FlowNode item)
    {
        bool seen;
        if (item is Atom)
        {
            seen = ReferenceEquals(item.CompileMark, _token);
            item.CompileMark = _token;
        }
        else
        {
            seen = !_seenFlows.Add(item);
        }
        if (seen)
            throw new DuplicateAtomNameException(
                $"{item} appears more than once in the flow tree (or a flow contains itself); every atom and flow object may be used only once. Create a new instance for each use.");
    }

    // Returns (first node index of the subgraph, sources, sinks) — for flows one entry and one exit.
    private (int Start, int Source, int Sink) CompileItem(FlowNode item, ScopeNode scope)
    {
        switch (item)
        {
            case Flow f:
                return CompileFlow(f, scope);
            case FlowTask t:
            {
                Track(t);
                int n = NewNode(NodeKind.Task, t, null, scope);
                Register(n);
                return (n, n, n);
            }
            case RetryController r:
                throw new FlowDefinitionException($"Retry controller '{r.Name}' cannot be a child of a flow; pass it as the flow's retry instead.");
            case Atom a:
                throw new FlowDefinitionException($"Atom '{a.Name}' of type {a.GetType().Name} is neither a task nor a retry controller.");
            default:
                throw new FlowDefinitionException($"Unknown flow item {item.GetType().Name}.");
        }
    }

    private (int Start, int Source, int Sink) CompileFlow(Flow flow, ScopeNode scope)
    {
        Track(flow);
        flow.MarkFrozen();
        int entry = NewNode(NodeKind.FlowEntry, null, flow, null);
        int start = entry;
        int expectedChildren = flow.Count + (flow.Retry is null ? 0 : 1);
        if (flow.Retry is not null)
        {
            Track(flow.Retry);
            flow.Retry.Freeze();
            scope.AddChild(new ScopeNode { Item = flow.Retry, Parent = scope, IndexInParent = 0 }, expectedChildren);
        }
        // Graph flows compile in a topological order of their children; position[i] is where child i (in insertion order) is.
        var (children, position) = FlowOrder.OrderedChildren(flow);
        var parts = new (int Start, int Source, int Sink)[children.Count];
        for (int i = 0; i < parts.Length; i++)
        {
            var child = children[i];
            if (child is Atom a) a.Freeze();
            var childScope = new ScopeNode { Item = child, Parent = scope, IndexInParent = scope.ChildCount };
            scope.AddChild(childScope, expectedChildren);
            parts[i] = CompileItem(child, childScope);
        }
        int firstChildNode = entry + 1;
        if (flow is LinearFlow)
        {
            // A chain needs no link objects or lookups: the same edges, added in the same order as the general case.
            for (int i = 1; i < parts.Length; i++) AddEdge(parts[i - 1].Sink, parts[i].Source, null);
            int chainFrom = AttachRetry(flow, scope, entry, firstChildNode);
            if (parts.Length > 0) AddEdge(chainFrom, parts[0].Source, null);
            int chainExit = NewNode(NodeKind.FlowExit, null, flow, null);
            AddEdge(parts.Length > 0 ? parts[^1].Sink : chainFrom, chainExit, null);
            return (start, entry, chainExit);
        }
        // hasIncoming/hasOutgoing by position in the compile order.
        var hasIncoming = new bool[parts.Length];
        var hasOutgoing = new bool[parts.Length];
        if (flow is GraphFlow graph && position is not null)
        {
            // The graph's own edges by child index, in the order its Links enumerates them: no link objects or lookups.
            graph.ForEachEdge((from, to, link) =>
            {
                int u = position[from], v = position[to];
                AddEdge(parts[u].Sink, parts[v].Source, link);
                hasIncoming[v] = true;
                hasOutgoing[u] = true;
            });
        }
        else
        {
            Dictionary<FlowNode, int>? at = null;
            foreach (var link in flow.Links)
            {
                if (at is null)
                {
                    at = new Dictionary<FlowNode, int>(parts.Length, ReferenceEqualityComparer.Instance);
                    for (int i = 0; i < parts.Length; i++) at[children[i]] = i;
                }
                int u = at[link.From], v = at[link.To];
                AddEdge(parts[u].Sink, parts[v].Source, link);
                hasIncoming[v] = true;
                hasOutgoing[u] = true;
            }
        }
        int from = AttachRetry(flow, scope, entry, firstChildNode);
        for (int i = 0; i < parts.Length; i++)
            if (!hasIncoming[i]) AddEdge(from, parts[i].Source, null);
        int exit = NewNode(NodeKind.FlowExit, null, flow, null);
        bool anySink = false;
        for (int i = 0; i < parts.Length; i++)
            if (!hasOutgoing[i]) { AddEdge(parts[i].Sink, exit, null); anySink = true; }
        if (!anySink) AddEdge(from, exit, null);
        return (start, entry, exit);
    }

    /// <summary>
    /// Adds the flow's retry node after its children (entry → retry) and makes it the owner of every node compiled
    /// inside the flow that no nearer retry owns. Returns where the children hang from: the retry, or the entry.
    /// </summary>
    private int AttachRetry(Flow flow, ScopeNode scope, int entry, int firstChildNode)
    {
        if (flow.Retry is null) return entry;
        int retryNode = NewNode(NodeKind.Retry, flow.Retry, null, scope.Children[0]);
        Register(retryNode);
        AddEdge(entry, retryNode, null);
        for (int n = firstChildNode; n < retryNode; n++)
            if (_retryOf[n] < 0) _retryOf[n] = retryNode;
        return retryNode;
    }

    private CompiledFlow Finish(Flow root, ScopeNode rootScope)
    {
        int count = _count;
        // Successors in the order their edges were added; predecessors by source node, then that order (as before).
        // A node with one neighbour has the array [neighbour]; in a chain node i's successors and node i+2's
        // predecessors are both [i+1]: one read-only array serves every such list of that neighbour.
        var succ = new int[count][];
        var pred = new int[count][];
        var inDegree = new int[count];
        var single = new int[]?[count];
        for (int e = 0; e < _edgeCount; e++) inDegree[_edgeTo[e]]++;
        var filled = new int[count];
        for (int e = 0; e < _edgeCount; e++)
        {
            int from = _edgeFrom[e], to = _edgeTo[e];
            if (_outDegree[from] == 1) succ[from] = single[to] ??= [to];
            else (succ[from] ??= new int[_outDegree[from]])[filled[from]++] = to;
        }
        Array.Clear(filled);
        for (int i = 0; i < count; i++)
        {
            var successors = succ[i] ??= [];
            foreach (var s in successors)
            {
                if (inDegree[s] == 1) pred[s] = single[i] ??= [i];
                else (pred[s] ??= new int[inDegree[s]])[filled[s]++] = i;
            }
        }
        for (int i = 0; i < count; i++) pred[i] ??= [];

        var registration = _registration.AsSpan(0, _registered).ToArray();

        // Duplicate names (TaskFlow checks at compile time, listing all duplicates).
        var byName = new Dictionary<string, int>(registration.Length, StringComparer.Ordinal);
        SortedSet<string>? dups = null;
        int providedCount = 0;
        foreach (var n in registration)
        {
            var atom = _atoms[n]!;
            if (!byName.TryAdd(atom.Name, n)) (dups ??= new SortedSet<string>(StringComparer.Ordinal)).Add(atom.Name);
            providedCount += atom.ProvidedSymbolArray.Length;
        }
        if (dups is not null)
            throw new DuplicateAtomNameException(
                $"Flow '{root.Name}' has atoms with duplicate names: {string.Join(", ", dups.Select(d => $"'{d}'"))}. Atom names must be unique within a flow tree.");

        // Most symbols have one provider: an exact array each; the rare shared symbol collects in a list first.
        var providers = new Dictionary<string, int[]>(providedCount, StringComparer.Ordinal);
        Dictionary<string, List<int>>? shared = null;
        foreach (var n in registration)
            foreach (var sym in _atoms[n]!.ProvidedSymbolArray)
            {
                if (!providers.TryGetValue(sym, out var existing)) { providers[sym] = single[n] ??= [n]; continue; }
                shared ??= new Dictionary<string, List<int>>(StringComparer.Ordinal);
                if (!shared.TryGetValue(sym, out var list)) shared[sym] = list = [.. existing];
                list.Add(n);
            }
        if (shared is not null)
            foreach (var (sym, list) in shared) providers[sym] = [.. list];

        // Right-to-left pre-order numbering of the scope tree.
        int counter = 0;
        NumberRightToLeft(rootScope, ref counter);

        // Kahn's algorithm over the whole graph (it is acyclic: flows and links are checked when built).
        var rank = new int[count];
        var ready = new int[count]; // a FIFO queue: each node enters it once
        int head = 0, tail = 0;
        for (int i = 0; i < count; i++) if (inDegree[i] == 0) ready[tail++] = i;
        while (head < tail)
        {
            int n = ready[head];
            rank[n] = head++;
            foreach (var s in succ[n]) if (--inDegree[s] == 0) ready[tail++] = s;
        }
        if (head != count) throw new DependencyCycleException($"Flow '{root.Name}' compiles to a graph with a cycle; no order can run it.");

        return new CompiledFlow
        {
            Root = root,
            Kinds = Trim(_kinds, count),
            Successors = succ,
            Predecessors = pred,
            Atoms = Trim(_atoms, count),
            Flows = Trim(_flows, count),
            AtomNodes = registration,
            NodeByAtomName = byName,
            RetryOf = Trim(_retryOf, count),
            DeciderEdges = _deciders,
            ScopeOfNode = Trim(_scope, count)!,
            Providers = providers,
            TopologicalRank = rank,
        };
    }

    /// <summary>Numbers a scope, then its children's subtrees from the last child to the first (as deep as the flows nest, like the compile).</summary>
    private static void NumberRightToLeft(ScopeNode scope, ref int counter)
    {
        scope.ReversePreorder = counter++;
        var children = scope.Children;
        for (int i = children.Count - 1; i >= 0; i--) NumberRightToLeft(children[i], ref counter);
    }

    private static T[] Trim<T>(T[] array, int count) => array.Length == count ? array : array.AsSpan(0, count).ToArray();
}
