using TaskFlow.Atoms;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Retries;

namespace TaskFlow.Engines.Compilation;

internal enum NodeKind : byte { Task, Retry, FlowEntry, FlowExit }

/// <summary>A node of the scope hierarchy: a flow (with its retry first, then its children) or an atom.</summary>
internal sealed class ScopeNode
{
    public required FlowNode Item { get; init; }
    public ScopeNode? Parent { get; init; }
    public List<ScopeNode> Children { get; } = [];
    public int IndexInParent { get; init; }
    public int Depth { get; init; }
    /// <summary>Position in a right-to-left pre-order walk of the whole tree (TaskFlow's reverse scope order).</summary>
    public int ReversePreorder { get; set; }
}

/// <summary>
/// The immutable result of compiling a flow tree: one execution graph over atoms and flow entry/exit markers,
/// the retry that owns each atom, the scope hierarchy, and which atoms provide each symbol.
/// </summary>
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
    public required Dictionary<string, List<int>> Providers { get; init; }

    /// <summary>
    /// Each node's position in a topological order of the graph: a node's predecessors all rank lower, so a backward
    /// search for a provider can skip every node ranked below it.
    /// </summary>
    public required int[] TopologicalRank { get; init; }

    public int NodeCount => Kinds.Length;

    public bool IsAtom(int node) => Kinds[node] <= NodeKind.Retry;
}

/// <summary>Compiles a flow tree into a <see cref="CompiledFlow"/> (TaskFlow's PatternCompiler, without per-node graph copies).</summary>
internal sealed class FlowCompiler
{
    private readonly List<NodeKind> _kinds = [];
    private readonly List<Atom?> _atoms = [];
    private readonly List<Flow?> _flows = [];
    private readonly List<List<int>> _succ = [];
    private readonly List<int> _retryOf = [];
    private readonly List<ScopeNode?> _scope = [];
    private readonly Dictionary<(int, int), FlowLink> _deciders = [];
    private readonly HashSet<FlowNode> _seen = new(ReferenceEqualityComparer.Instance);
    private readonly List<int> _registration = [];

    public static CompiledFlow Compile(Flow root)
    {
        ArgumentNullException.ThrowIfNull(root);
        var c = new FlowCompiler();
        var rootScope = new ScopeNode { Item = root, Parent = null, IndexInParent = 0, Depth = 0 };
        c.CompileFlow(root, rootScope);
        return c.Finish(root, rootScope);
    }

    private int NewNode(NodeKind kind, Atom? atom, Flow? flow, ScopeNode? scope)
    {
        _kinds.Add(kind);
        _atoms.Add(atom);
        _flows.Add(flow);
        _succ.Add([]);
        _retryOf.Add(-1);
        _scope.Add(scope);
        return _kinds.Count - 1;
    }

    private void AddEdge(int from, int to, FlowLink? link)
    {
        var list = _succ[from];
        if (!list.Contains(to)) list.Add(to);
        if (link?.Decider is not null) _deciders[(from, to)] = link;
    }

    private void Track(FlowNode item)
    {
        if (!_seen.Add(item))
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
                _registration.Add(n);
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
        if (flow.Retry is not null)
        {
            Track(flow.Retry);
            flow.Retry.Freeze();
            scope.Children.Add(new ScopeNode { Item = flow.Retry, Parent = scope, IndexInParent = 0, Depth = scope.Depth + 1 });
        }
        var children = FlowOrder.OrderedChildren(flow);
        var parts = new (int Start, int Source, int Sink)[children.Count];
        for (int i = 0; i < parts.Length; i++)
        {
            var child = children[i];
            if (child is Atom a) a.Freeze();
            var childScope = new ScopeNode { Item = child, Parent = scope, IndexInParent = scope.Children.Count, Depth = scope.Depth + 1 };
            scope.Children.Add(childScope);
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
        var compiled = new Dictionary<FlowNode, (int Start, int Source, int Sink)>(parts.Length, ReferenceEqualityComparer.Instance);
        for (int i = 0; i < parts.Length; i++) compiled[children[i]] = parts[i];
        var hasIncoming = new HashSet<FlowNode>(ReferenceEqualityComparer.Instance);
        var hasOutgoing = new HashSet<FlowNode>(ReferenceEqualityComparer.Instance);
        foreach (var link in flow.Links)
        {
            var u = compiled[link.From];
            var v = compiled[link.To];
            AddEdge(u.Sink, v.Source, link);
            hasIncoming.Add(link.To);
            hasOutgoing.Add(link.From);
        }
        int from = AttachRetry(flow, scope, entry, firstChildNode);
        foreach (var child in children)
            if (!hasIncoming.Contains(child)) AddEdge(from, compiled[child].Source, null);
        int exit = NewNode(NodeKind.FlowExit, null, flow, null);
        bool anySink = false;
        foreach (var child in children)
            if (!hasOutgoing.Contains(child)) { AddEdge(compiled[child].Sink, exit, null); anySink = true; }
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
        _registration.Add(retryNode);
        AddEdge(entry, retryNode, null);
        for (int n = firstChildNode; n < retryNode; n++)
            if (_retryOf[n] < 0) _retryOf[n] = retryNode;
        return retryNode;
    }

    private CompiledFlow Finish(Flow root, ScopeNode rootScope)
    {
        int count = _kinds.Count;
        var succ = new int[count][];
        var predLists = new List<int>[count];
        for (int i = 0; i < count; i++) predLists[i] = [];
        for (int i = 0; i < count; i++)
        {
            succ[i] = _succ[i].ToArray();
            foreach (var s in succ[i]) predLists[s].Add(i);
        }
        var pred = predLists.Select(l => l.ToArray()).ToArray();

        // Duplicate names (TaskFlow checks at compile time, listing all duplicates).
        var byName = new Dictionary<string, int>(StringComparer.Ordinal);
        var dups = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var n in _registration)
            if (!byName.TryAdd(_atoms[n]!.Name, n)) dups.Add(_atoms[n]!.Name);
        if (dups.Count > 0)
            throw new DuplicateAtomNameException(
                $"Flow '{root.Name}' has atoms with duplicate names: {string.Join(", ", dups.Select(d => $"'{d}'"))}. Atom names must be unique within a flow tree.");

        var providers = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        foreach (var n in _registration)
            foreach (var sym in _atoms[n]!.ProvidedSymbols)
            {
                if (!providers.TryGetValue(sym, out var l)) providers[sym] = l = [];
                l.Add(n);
            }

        // Right-to-left pre-order numbering of the scope tree.
        int counter = 0;
        var stack = new Stack<ScopeNode>();
        stack.Push(rootScope);
        while (stack.Count > 0)
        {
            var s = stack.Pop();
            s.ReversePreorder = counter++;
            foreach (var c in s.Children) stack.Push(c);
        }

        // Kahn's algorithm over the whole graph (it is acyclic: flows and links are checked when built).
        var rank = new int[count];
        var indegree = new int[count];
        for (int i = 0; i < count; i++) indegree[i] = pred[i].Length;
        var ready = new Queue<int>();
        for (int i = 0; i < count; i++) if (indegree[i] == 0) ready.Enqueue(i);
        int ranked = 0;
        while (ready.Count > 0)
        {
            int n = ready.Dequeue();
            rank[n] = ranked++;
            foreach (var s in succ[n]) if (--indegree[s] == 0) ready.Enqueue(s);
        }
        if (ranked != count) throw new DependencyCycleException($"Flow '{root.Name}' compiles to a graph with a cycle; no order can run it.");

        var scopes = new ScopeNode[count];
        for (int i = 0; i < count; i++) scopes[i] = _scope[i]!;

        return new CompiledFlow
        {
            Root = root,
            Kinds = _kinds.ToArray(),
            Successors = succ,
            Predecessors = pred,
            Atoms = _atoms.ToArray(),
            Flows = _flows.ToArray(),
            AtomNodes = _registration.ToArray(),
            NodeByAtomName = byName,
            RetryOf = _retryOf.ToArray(),
            DeciderEdges = _deciders,
            ScopeOfNode = scopes,
            Providers = providers,
            TopologicalRank = rank,
        };
    }
}
