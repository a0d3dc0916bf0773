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

    internal static IReadOnlySet<string> ProvidesOf(FlowNode node) => node switch
    {
        Atom a => new HashSet<string>(a.ProvidedSymbols, StringComparer.Ordinal),
        Flow f => f.ProvidedSymbols,
        _ => new HashSet<string>(),
    };

    internal static IReadOnlySet<string> RequiresOf(FlowNode node) => node switch
    {
        Atom a => new HashSet<string>(a.RequiredSymbols, StringComparer.Ordinal),
        Flow f => f.RequiredSymbols,
        _ => new HashSet<string>(),
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
    // Edges between direct children: from → (to → link). Kept acyclic at every Add/Link.
    private readonly Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> _edges = new(ReferenceEqualityComparer.Instance);

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
        if (!Contains(from)) throw new ArgumentException($"Cannot link from '{from.Name}': it is not a child of graph flow '{Name}'.", nameof(from));
        if (!Contains(to)) throw new ArgumentException($"Cannot link to '{to.Name}': it is not a child of graph flow '{Name}'.", nameof(to));
        var edges = CloneEdges();
        AddEdge(edges, new FlowLink(from, to, decider, depth), overwrite: true);
        EnsureAcyclic(edges, $"linking '{from.Name}' -> '{to.Name}'");
        Swap(edges);
        return this;
    }

    /// <inheritdoc />
    public override IEnumerable<FlowLink> Links
    {
        get
        {
            foreach (var from in Children)
                if (_edges.TryGetValue(from, out var tos))
                    foreach (var link in tos.Values) yield return link;
        }
    }

    private bool Contains(FlowNode node)
    {
        foreach (var c in Children) if (ReferenceEquals(c, node)) return true;
        return false;
    }

    /// <inheritdoc />
    public override IReadOnlySet<string> RequiredSymbols
    {
        get
        {
            var requires = RetryRequirements(out var retryProvides);
            var preds = PredecessorsOf(_edges);
            foreach (var c in Children) requires.UnionWith(Unsatisfied(c, preds, retryProvides));
            return requires;
        }
    }

    private protected override void AddCore(FlowNode[] nodes)
    {
        // TaskFlow's graph_flow.add: infer edges child by child; ambiguity and cycles leave the flow unchanged.
        var required = new Dictionary<string, List<FlowNode>>(StringComparer.Ordinal);
        var provided = new Dictionary<string, List<FlowNode>>(StringComparer.Ordinal);
        var retryProvides = new HashSet<string>(StringComparer.Ordinal);
        if (Retry is not null)
        {
            foreach (var v in Retry.RequiredSymbols) Append(required, v, Retry);
            foreach (var v in Retry.ProvidedSymbols) { retryProvides.Add(v); Append(provided, v, Retry); }
        }
        var edges = CloneEdges();
        var preds = PredecessorsOf(edges); // kept in step with edges below
        foreach (var node in Children)
        {
            foreach (var v in Unsatisfied(node, preds, retryProvides)) Append(required, v, node);
            foreach (var v in ProvidesOf(node)) Append(provided, v, node);
        }
        void Infer(FlowNode from, FlowNode to)
        {
            if (AddEdge(edges, new FlowLink(from, to), overwrite: false))
            {
                if (!preds.TryGetValue(to, out var l)) preds[to] = l = [];
                l.Add(from);
            }
        }

        var members = new List<FlowNode>(Children);
        foreach (var node in nodes)
        {
            if (members.Exists(m => ReferenceEquals(m, node)))
                throw new DuplicateAtomNameException($"'{node.Name}' is already a child of graph flow '{Name}'; a node can be added only once.");
            members.Add(node);
            foreach (var v in Unsatisfied(node, preds, retryProvides).Order(StringComparer.Ordinal))
            {
                if (provided.TryGetValue(v, out var providers))
                {
                    if (providers.Count > 1)
                        throw new AmbiguousDependencyException(
                            $"Graph flow '{Name}': '{node.Name}' requires '{v}', which {string.Join(" and ", providers.Select(p => $"'{p.Name}'"))} both provide; " +
                            "rebind the requirement or link the intended provider explicitly.");
                    if (ReferenceEquals(providers[0], Retry)) continue;
                    Infer(providers[0], node);
                }
                else
                {
                    Append(required, v, node);
                }
            }
            foreach (var v in ProvidesOf(node)) Append(provided, v, node);
            foreach (var v in ProvidesOf(node))
            {
                if (required.TryGetValue(v, out var requirees))
                {
                    foreach (var requiree in requirees.ToArray())
                        if (!ReferenceEquals(requiree, node) && !ReferenceEquals(requiree, Retry))
                            Infer(node, requiree);
                    required.Remove(v);
                }
            }
        }
        EnsureAcyclic(edges, $"adding {string.Join(", ", nodes.Select(n => $"'{n.Name}'"))}");
        Children.AddRange(nodes);
        Swap(edges);
    }

    private static void Append(Dictionary<string, List<FlowNode>> map, string key, FlowNode node)
    {
        if (!map.TryGetValue(key, out var list)) map[key] = list = [];
        list.Add(node);
    }

    private static Dictionary<FlowNode, List<FlowNode>> PredecessorsOf(Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> edges)
    {
        var preds = new Dictionary<FlowNode, List<FlowNode>>(ReferenceEqualityComparer.Instance);
        foreach (var (from, tos) in edges)
            foreach (var to in tos.Keys)
            {
                if (!preds.TryGetValue(to, out var l)) preds[to] = l = [];
                l.Add(from);
            }
        return preds;
    }

    /// <summary>What <paramref name="node"/> requires that neither the retry nor any transitive predecessor provides.</summary>
    private static IEnumerable<string> Unsatisfied(FlowNode node, Dictionary<FlowNode, List<FlowNode>> preds, HashSet<string> retryProvides)
    {
        var requires = new HashSet<string>(RequiresOf(node), StringComparer.Ordinal);
        if (requires.Count == 0) return requires;
        requires.ExceptWith(retryProvides);
        if (requires.Count == 0) return requires;
        var seen = new HashSet<FlowNode>(ReferenceEqualityComparer.Instance);
        var queue = new Queue<FlowNode>();
        queue.Enqueue(node);
        while (queue.Count > 0 && requires.Count > 0)
        {
            var n = queue.Dequeue();
            if (!preds.TryGetValue(n, out var ps)) continue;
            foreach (var p in ps)
            {
                if (!seen.Add(p)) continue;
                requires.ExceptWith(ProvidesOf(p));
                queue.Enqueue(p);
            }
        }
        return requires;
    }

    private Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> CloneEdges()
    {
        var clone = new Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>>(ReferenceEqualityComparer.Instance);
        foreach (var (from, tos) in _edges)
            clone[from] = new Dictionary<FlowNode, FlowLink>(tos, ReferenceEqualityComparer.Instance);
        return clone;
    }

    /// <summary>Adds (or with <paramref name="overwrite"/> replaces) an edge; true when the edge is new.</summary>
    private static bool AddEdge(Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> edges, FlowLink link, bool overwrite)
    {
        if (!edges.TryGetValue(link.From, out var tos)) edges[link.From] = tos = new Dictionary<FlowNode, FlowLink>(ReferenceEqualityComparer.Instance);
        bool isNew = !tos.ContainsKey(link.To);
        if (overwrite || isNew) tos[link.To] = link;
        return isNew;
    }

    private void EnsureAcyclic(Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> edges, string what)
    {
        // Iterative three-colour DFS; reports one cycle by name.
        var color = new Dictionary<FlowNode, int>(ReferenceEqualityComparer.Instance);
        var parent = new Dictionary<FlowNode, FlowNode>(ReferenceEqualityComparer.Instance);
        foreach (var start in edges.Keys)
        {
            if (color.GetValueOrDefault(start) != 0) continue;
            var stack = new Stack<(FlowNode Node, IEnumerator<FlowNode> Next)>();
            color[start] = 1;
            stack.Push((start, Successors(edges, start).GetEnumerator()));
            while (stack.Count > 0)
            {
                var (n, it) = stack.Peek();
                if (it.MoveNext())
                {
                    var m = it.Current;
                    int c = color.GetValueOrDefault(m);
                    if (c == 0)
                    {
                        color[m] = 1;
                        parent[m] = n;
                        stack.Push((m, Successors(edges, m).GetEnumerator()));
                    }
                    else if (c == 1)
                    {
                        var cycle = new List<string> { m.Name };
                        for (var x = n; !ReferenceEquals(x, m); x = parent[x]) cycle.Add(x.Name);
                        cycle.Add(m.Name);
                        cycle.Reverse();
                        throw new DependencyCycleException(
                            $"Graph flow '{Name}': {what} makes a cycle ({string.Join(" -> ", cycle)}); no order can run it. The flow is unchanged.");
                    }
                }
                else
                {
                    color[n] = 2;
                    stack.Pop();
                }
            }
        }
    }

    private static IEnumerable<FlowNode> Successors(Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> edges, FlowNode n) =>
        edges.TryGetValue(n, out var tos) ? tos.Keys : [];

    private void Swap(Dictionary<FlowNode, Dictionary<FlowNode, FlowLink>> edges)
    {
        _edges.Clear();
        foreach (var (k, v) in edges) _edges[k] = v;
    }
}
