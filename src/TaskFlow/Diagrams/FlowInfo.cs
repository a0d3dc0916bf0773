using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Engines.Compilation;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;

namespace TaskFlow.Diagrams;

/// <summary>Which pattern a flow follows.</summary>
public enum FlowPattern
{
    /// <summary>A <see cref="LinearFlow"/>: children run one after another.</summary>
    Linear,
    /// <summary>An <see cref="UnorderedFlow"/>: children run in no particular order (in parallel on the parallel engine).</summary>
    Unordered,
    /// <summary>A <see cref="GraphFlow"/>: children run in the order of links and of data dependencies.</summary>
    Graph,
}

/// <summary>Something a flow contains: an <see cref="AtomInfo"/> or a nested <see cref="FlowInfo"/>.</summary>
public abstract class FlowItemInfo
{
    private protected FlowItemInfo(string name) => Name = name;

    /// <summary>The atom's or flow's name.</summary>
    public string Name { get; }

    /// <summary>The flow that contains this item, or null for the root flow.</summary>
    public FlowInfo? Parent { get; internal set; }
}

/// <summary>A task or retry controller of a compiled flow, with what it requires and provides.</summary>
public sealed class AtomInfo : FlowItemInfo
{
    internal AtomInfo(string name, AtomKind kind, IReadOnlyList<string> requires, IReadOnlyList<string> optional,
        IReadOnlyList<string> provides, string? retryName) : base(name)
    {
        Kind = kind;
        Requires = requires;
        Optional = optional;
        Provides = provides;
        RetryName = retryName;
    }

    /// <summary>Task or retry controller.</summary>
    public AtomKind Kind { get; }

    /// <summary>The symbols it must be given (after rebinding), in ordinal order.</summary>
    public IReadOnlyList<string> Requires { get; }

    /// <summary>The symbols it takes when available (after rebinding), in ordinal order.</summary>
    public IReadOnlyList<string> Optional { get; }

    /// <summary>The symbols its result provides, in declaration order.</summary>
    public IReadOnlyList<string> Provides { get; }

    /// <summary>The retry controller whose scope this atom is in (the nearest enclosing one), or null.</summary>
    public string? RetryName { get; }

    /// <inheritdoc />
    public override string ToString() => $"{(Kind == AtomKind.Retry ? "retry" : "task")} '{Name}'";
}

/// <summary>An ordering between two atoms of the compiled graph: <see cref="From"/> finishes before <see cref="To"/> starts.</summary>
/// <param name="From">The atom that runs first.</param>
/// <param name="To">The atom that runs after it.</param>
/// <param name="Decider">The depth of the decider on this edge when a graph link's decider guards it; null for a plain edge.</param>
public readonly record struct FlowEdge(string From, string To, DeciderDepth? Decider = null)
{
    /// <summary>Whether a decider guards this edge.</summary>
    public bool HasDecider => Decider is not null;
}

/// <summary>
/// A public, read-only description of a compiled flow, for diagrams and tools: its atoms with their kind, the nesting
/// of flows, the edges of the execution graph between atoms (flows' entry and exit points looked through), decider
/// edges, retry scopes, and what each atom requires and provides. Build one with <see cref="FromFlow"/> or
/// <see cref="FromEngine"/>.
/// </summary>
public sealed class FlowInfo : FlowItemInfo
{
    private FlowInfo(string name, FlowPattern pattern, AtomInfo? retry, IReadOnlyList<FlowItemInfo> children) : base(name)
    {
        Pattern = pattern;
        Retry = retry;
        Children = children;
        if (retry is not null) retry.Parent = this;
        foreach (var child in children) child.Parent = this;
    }

    /// <summary>Linear, unordered or graph.</summary>
    public FlowPattern Pattern { get; }

    /// <summary>The flow's retry controller (whose scope is everything inside this flow), or null.</summary>
    public AtomInfo? Retry { get; }

    /// <summary>The direct children, atoms and flows, in the order they were added.</summary>
    public IReadOnlyList<FlowItemInfo> Children { get; }

    /// <summary>
    /// The edges between atoms inside this flow (for the root: every edge of the run), ordered by source and then
    /// target as they appear in <see cref="Atoms"/>. An edge into or out of a nested flow appears as edges to its
    /// first and from its last atoms.
    /// </summary>
    public IReadOnlyList<FlowEdge> Edges { get; private set; } = [];

    /// <summary>Every atom inside this flow, nested ones included, retry controllers before their flow's children.</summary>
    public IEnumerable<AtomInfo> Atoms
    {
        get
        {
            if (Retry is not null) yield return Retry;
            foreach (var child in Children)
            {
                if (child is AtomInfo atom) yield return atom;
                else foreach (var nested in ((FlowInfo)child).Atoms) yield return nested;
            }
        }
    }

    /// <summary>Every flow inside this one, nested ones included (not this flow itself), outer before inner.</summary>
    public IEnumerable<FlowInfo> Flows
    {
        get
        {
            foreach (var child in Children)
                if (child is FlowInfo flow)
                {
                    yield return flow;
                    foreach (var nested in flow.Flows) yield return nested;
                }
        }
    }

    /// <summary>
    /// Describes <paramref name="flow"/>. The flow is compiled for this (so definition errors surface here, as they
    /// would in an engine) and, like any compiled flow, frozen: add nothing to it afterwards.
    /// </summary>
    public static FlowInfo FromFlow(Flow flow)
    {
        ArgumentNullException.ThrowIfNull(flow);
        return Describe(FlowCompiler.Compile(flow));
    }

    /// <summary>Describes the flow <paramref name="engine"/> runs, from the engine's own compiled graph.</summary>
    public static FlowInfo FromEngine(FlowEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        engine.Compile();
        return Describe(engine.Compiled);
    }

    /// <inheritdoc />
    public override string ToString() => $"{Pattern.ToString().ToLowerInvariant()} flow '{Name}'";

    private static FlowInfo Describe(CompiledFlow compiled)
    {
        var atoms = new Dictionary<Atom, AtomInfo>(ReferenceEqualityComparer.Instance);
        foreach (int node in compiled.AtomNodes)
        {
            var atom = compiled.Atoms[node]!;
            int retryNode = compiled.RetryOf[node];
            atoms[atom] = new AtomInfo(
                atom.Name,
                atom is RetryController ? AtomKind.Retry : AtomKind.Task,
                atom.RequiredSymbols.Order(StringComparer.Ordinal).ToArray(),
                atom.OptionalSymbols.Order(StringComparer.Ordinal).ToArray(),
                atom.ProvidedSymbols.ToArray(),
                retryNode < 0 ? null : compiled.Atoms[retryNode]!.Name);
        }
        var root = Build(compiled.Root, atoms);
        // Edges in reading order: by their source, then their target, as atoms appear in the description.
        var order = root.Atoms.Select((a, i) => (a.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.Ordinal);
        var edges = CollapseMarkers(compiled).OrderBy(e => order[e.From]).ThenBy(e => order[e.To]).ToArray();
        root.Edges = edges;
        foreach (var flow in root.Flows)
        {
            var inside = flow.Atoms.Select(a => a.Name).ToHashSet(StringComparer.Ordinal);
            flow.Edges = edges.Where(e => inside.Contains(e.From) && inside.Contains(e.To)).ToArray();
        }
        return root;
    }

    private static FlowInfo Build(Flow flow, Dictionary<Atom, AtomInfo> atoms)
    {
        var pattern = flow switch
        {
            LinearFlow => FlowPattern.Linear,
            UnorderedFlow => FlowPattern.Unordered,
            GraphFlow => FlowPattern.Graph,
            _ => throw new NotSupportedException($"Flow '{flow.Name}' is a {flow.GetType().Name}, which diagrams do not know; expected a linear, unordered or graph flow."),
        };
        var children = flow.Items
            .Select(child => child is Flow nested ? (FlowItemInfo)Build(nested, atoms) : atoms[(Atom)child])
            .ToArray();
        return new FlowInfo(flow.Name, pattern, flow.Retry is null ? null : atoms[flow.Retry], children);
    }

    /// <summary>Edges between atoms: each atom's successors in graph order, looking through flow entry and exit markers.</summary>
    private static FlowEdge[] CollapseMarkers(CompiledFlow c)
    {
        var edges = new List<FlowEdge>();
        var seen = new HashSet<(int, int)>();
        var visited = new HashSet<int>();
        foreach (int from in c.AtomNodes)
        {
            visited.Clear();
            Follow(from, from, null);
        }
        return edges.ToArray();

        void Follow(int from, int node, DeciderDepth? decider)
        {
            foreach (int next in c.Successors[node])
            {
                var edgeDecider = c.DeciderEdges.TryGetValue((node, next), out var link) ? link.Depth : decider;
                if (c.IsAtom(next))
                {
                    if (seen.Add((from, next))) edges.Add(new FlowEdge(c.Atoms[from]!.Name, c.Atoms[next]!.Name, edgeDecider));
                }
                else if (visited.Add(next))
                {
                    Follow(from, next, edgeDecider);
                }
            }
        }
    }
}
