namespace TaskFlow.Flows;

internal static class FlowOrder
{
    /// <summary>
    /// The order a flow's children are compiled and scoped in: insertion order, except for graph flows, which use
    /// a topological order by generations (Kahn's algorithm, ties in insertion order), as TaskFlow's networkx does.
    /// </summary>
    public static IReadOnlyList<FlowNode> OrderedChildren(Flow flow)
    {
        if (flow is not GraphFlow) return flow.Items;
        var items = flow.Items;
        var indegree = new Dictionary<FlowNode, int>(ReferenceEqualityComparer.Instance);
        var succ = new Dictionary<FlowNode, List<FlowNode>>(ReferenceEqualityComparer.Instance);
        foreach (var c in items) { indegree[c] = 0; succ[c] = []; }
        foreach (var link in flow.Links)
        {
            succ[link.From].Add(link.To);
            indegree[link.To]++;
        }
        var result = new List<FlowNode>(items.Count);
        var generation = items.Where(c => indegree[c] == 0).ToList();
        while (generation.Count > 0)
        {
            result.AddRange(generation);
            var next = new List<FlowNode>();
            foreach (var n in generation)
                foreach (var s in succ[n])
                    if (--indegree[s] == 0) next.Add(s);
            generation = next;
        }
        return result;
    }
}
