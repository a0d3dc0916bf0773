using System.Text;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.States;
using TaskFlow.Storage;

namespace TaskFlow.Diagrams;

/// <summary>
/// Renders a <see cref="FlowInfo"/> as Graphviz DOT or as a Mermaid flowchart, without dependencies: each flow is a
/// cluster (subgraph) titled with its pattern and retry, each atom a node (retry controllers as hexagons), each edge
/// of the execution graph an arrow (decider edges dashed and labelled). Given atom states (from a live
/// <see cref="FlowStorage"/> or a persisted <see cref="FlowDetail"/>, see <see cref="StatesOf(FlowStorage)"/>), atoms
/// are coloured by state and their labels name it. Nodes get generated ids; names only ever appear escaped in labels.
/// </summary>
public static class FlowDiagram
{
    private readonly record struct Style(string Fill, string Stroke, string Text, bool Dashed = false);

    private static Style StyleOf(AtomState state) => state switch
    {
        AtomState.Pending => new("#f2f2f2", "#9e9e9e", "#333333"),
        AtomState.Running => new("#cfe2ff", "#0d6efd", "#052c65"),
        AtomState.Success => new("#d1e7dd", "#198754", "#0a3622"),
        AtomState.Failure => new("#f8d7da", "#dc3545", "#58151c"),
        AtomState.Reverting => new("#ffe5d0", "#fd7e14", "#552600"),
        AtomState.Reverted => new("#fff3cd", "#ffc107", "#664d03"),
        AtomState.RevertFailure => new("#842029", "#58151c", "#ffffff"),
        AtomState.Ignore => new("#e9ecef", "#adb5bd", "#6c757d", Dashed: true),
        AtomState.Retrying => new("#e0cffc", "#6f42c1", "#3d0a91"),
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>The atom states of a live run, by atom name.</summary>
    public static IReadOnlyDictionary<string, AtomState> StatesOf(FlowStorage storage)
    {
        ArgumentNullException.ThrowIfNull(storage);
        return storage.GetAtomStates().ToDictionary(p => p.Key, p => p.Value.State, StringComparer.Ordinal);
    }

    /// <summary>The atom states of a persisted run, by atom name.</summary>
    public static IReadOnlyDictionary<string, AtomState> StatesOf(FlowDetail detail)
    {
        ArgumentNullException.ThrowIfNull(detail);
        return detail.Atoms.ToDictionary(a => a.Name, a => a.State, StringComparer.Ordinal);
    }

    /// <summary>
    /// The flow as a Graphviz DOT digraph. With <paramref name="states"/>, atoms are filled with their state's colour
    /// and labelled with it; atoms missing from the dictionary are drawn without a state.
    /// </summary>
    /// <exception cref="ArgumentException">When <paramref name="states"/> names atoms that are not in the flow.</exception>
    public static string ToDot(FlowInfo flow, IReadOnlyDictionary<string, AtomState>? states = null)
    {
        ArgumentNullException.ThrowIfNull(flow);
        var ids = new Ids(flow, states);
        var sb = new StringBuilder();
        sb.Append("digraph ").Append(DotString(flow.Name)).Append(" {\n");
        sb.Append("    rankdir=TB;\n");
        sb.Append("    node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n");
        sb.Append("    edge [fontname=\"Helvetica\", fontsize=10];\n");
        WriteDotCluster(sb, flow, ids, states, 1);
        foreach (var e in flow.Edges)
        {
            sb.Append("    ").Append(ids.Atom(e.From)).Append(" -> ").Append(ids.Atom(e.To));
            if (e.Decider is { } depth) sb.Append(" [style=dashed, label=").Append(DotString(DeciderLabel(depth))).Append(']');
            sb.Append(";\n");
        }
        sb.Append("}\n");
        return sb.ToString();
    }

    /// <summary>
    /// The flow as a Mermaid flowchart. With <paramref name="states"/>, atoms get a class per state (coloured by
    /// <c>classDef</c>) and are labelled with it; atoms missing from the dictionary are drawn without a state.
    /// </summary>
    /// <exception cref="ArgumentException">When <paramref name="states"/> names atoms that are not in the flow.</exception>
    public static string ToMermaid(FlowInfo flow, IReadOnlyDictionary<string, AtomState>? states = null)
    {
        ArgumentNullException.ThrowIfNull(flow);
        var ids = new Ids(flow, states);
        var sb = new StringBuilder();
        sb.Append("flowchart TB\n");
        WriteMermaidSubgraph(sb, flow, ids, states, 1);
        foreach (var e in flow.Edges)
        {
            sb.Append("    ").Append(ids.Atom(e.From));
            if (e.Decider is { } depth) sb.Append(" -.->|").Append(MermaidString(DeciderLabel(depth))).Append("| ");
            else sb.Append(" --> ");
            sb.Append(ids.Atom(e.To)).Append('\n');
        }
        if (states is not null)
        {
            var used = flow.Atoms.Where(a => states.ContainsKey(a.Name)).GroupBy(a => states[a.Name]).OrderBy(g => g.Key);
            foreach (var group in used)
            {
                var style = StyleOf(group.Key);
                sb.Append("    classDef ").Append(ClassName(group.Key))
                  .Append(" fill:").Append(style.Fill).Append(",stroke:").Append(style.Stroke).Append(",color:").Append(style.Text);
                if (style.Dashed) sb.Append(",stroke-dasharray:4 3");
                sb.Append('\n');
                sb.Append("    class ").Append(string.Join(",", group.Select(a => ids.Atom(a.Name)))).Append(' ').Append(ClassName(group.Key)).Append('\n');
            }
        }
        return sb.ToString();
    }

    private static void WriteDotCluster(StringBuilder sb, FlowInfo flow, Ids ids, IReadOnlyDictionary<string, AtomState>? states, int depth)
    {
        var indent = new string(' ', depth * 4);
        sb.Append(indent).Append("subgraph cluster_").Append(ids.Flow(flow)).Append(" {\n");
        sb.Append(indent).Append("    label=").Append(DotString(FlowTitle(flow))).Append(";\n");
        sb.Append(indent).Append("    style=rounded;\n");
        if (flow.Retry is not null) WriteDotAtom(sb, flow.Retry, ids, states, indent + "    ");
        foreach (var child in flow.Children)
        {
            if (child is AtomInfo atom) WriteDotAtom(sb, atom, ids, states, indent + "    ");
            else WriteDotCluster(sb, (FlowInfo)child, ids, states, depth + 1);
        }
        sb.Append(indent).Append("}\n");
    }

    private static void WriteDotAtom(StringBuilder sb, AtomInfo atom, Ids ids, IReadOnlyDictionary<string, AtomState>? states, string indent)
    {
        sb.Append(indent).Append(ids.Atom(atom.Name)).Append(" [label=").Append(DotString(Label(atom, states)));
        if (atom.Kind == AtomKind.Retry) sb.Append(", shape=hexagon");
        if (states is not null && states.TryGetValue(atom.Name, out var state))
        {
            var style = StyleOf(state);
            sb.Append(", fillcolor=").Append(DotString(style.Fill)).Append(", color=").Append(DotString(style.Stroke))
              .Append(", fontcolor=").Append(DotString(style.Text));
            if (style.Dashed) sb.Append(", style=\"rounded,filled,dashed\"");
        }
        sb.Append("];\n");
    }

    private static void WriteMermaidSubgraph(StringBuilder sb, FlowInfo flow, Ids ids, IReadOnlyDictionary<string, AtomState>? states, int depth)
    {
        var indent = new string(' ', depth * 4);
        sb.Append(indent).Append("subgraph ").Append(ids.Flow(flow)).Append(" [").Append(MermaidString(FlowTitle(flow))).Append("]\n");
        if (flow.Retry is not null) WriteMermaidAtom(sb, flow.Retry, ids, states, indent + "    ");
        foreach (var child in flow.Children)
        {
            if (child is AtomInfo atom) WriteMermaidAtom(sb, atom, ids, states, indent + "    ");
            else WriteMermaidSubgraph(sb, (FlowInfo)child, ids, states, depth + 1);
        }
        sb.Append(indent).Append("end\n");
    }

    private static void WriteMermaidAtom(StringBuilder sb, AtomInfo atom, Ids ids, IReadOnlyDictionary<string, AtomState>? states, string indent)
    {
        var label = MermaidString(Label(atom, states));
        sb.Append(indent).Append(ids.Atom(atom.Name));
        if (atom.Kind == AtomKind.Retry) sb.Append("{{").Append(label).Append("}}");
        else sb.Append('[').Append(label).Append(']');
        sb.Append('\n');
    }

    private static string Label(AtomInfo atom, IReadOnlyDictionary<string, AtomState>? states) =>
        states is not null && states.TryGetValue(atom.Name, out var state) ? $"{atom.Name} ({state.ToTaskFlowName()})" : atom.Name;

    private static string FlowTitle(FlowInfo flow)
    {
        var pattern = flow.Pattern.ToString().ToLowerInvariant();
        return flow.Retry is null ? $"{flow.Name} ({pattern})" : $"{flow.Name} ({pattern}, retry {flow.Retry.Name})";
    }

    private static string DeciderLabel(DeciderDepth depth) => depth == DeciderDepth.All ? "decider" : $"decider, depth {depth.ToString().ToLowerInvariant()}";

    private static string ClassName(AtomState state) => state.ToTaskFlowName().ToLowerInvariant();

    /// <summary>A DOT quoted string: backslashes and quotes escaped, line breaks and other control characters as spaces.</summary>
    private static string DotString(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (char ch in text)
        {
            if (ch is '"' or '\\') sb.Append('\\').Append(ch);
            else if (char.IsControl(ch)) sb.Append(' ');
            else sb.Append(ch);
        }
        return sb.Append('"').ToString();
    }

    /// <summary>
    /// A Mermaid quoted label: characters Mermaid gives meaning to inside labels (quotes, <c>#</c> entity starts,
    /// markup and markdown delimiters) as Mermaid entity codes, control characters as spaces.
    /// </summary>
    private static string MermaidString(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (char ch in text)
        {
            switch (ch)
            {
                case '"': sb.Append("#quot;"); break;
                case '#': sb.Append("#35;"); break;
                case '<': sb.Append("#lt;"); break;
                case '>': sb.Append("#gt;"); break;
                case '&': sb.Append("#amp;"); break;
                case '`': sb.Append("#96;"); break;
                case '|': sb.Append("#124;"); break;
                default: sb.Append(char.IsControl(ch) ? ' ' : ch); break;
            }
        }
        return sb.Append('"').ToString();
    }

    /// <summary>Generated ids: <c>a0</c>, <c>a1</c>… for atoms in <see cref="FlowInfo.Atoms"/> order, <c>f0</c>… for flows outer first.</summary>
    private sealed class Ids
    {
        private readonly Dictionary<string, string> _atoms = new(StringComparer.Ordinal);
        private readonly Dictionary<FlowInfo, string> _flows = new(ReferenceEqualityComparer.Instance);

        public Ids(FlowInfo root, IReadOnlyDictionary<string, AtomState>? states)
        {
            foreach (var atom in root.Atoms) _atoms[atom.Name] = "a" + _atoms.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            _flows[root] = "f0";
            foreach (var flow in root.Flows) _flows[flow] = "f" + _flows.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (states is null) return;
            var unknown = states.Keys.Where(k => !_atoms.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
            if (unknown.Count > 0)
                throw new ArgumentException(
                    $"The states name atoms that flow '{root.Name}' does not have: {string.Join(", ", unknown.Select(u => $"'{u}'"))}. Pass the states of a run of this flow.",
                    nameof(states));
        }

        public string Atom(string name) => _atoms[name];

        public string Flow(FlowInfo flow) => _flows[flow];
    }
}
