namespace TaskFlow.Flows;

internal static class FlowOrder
{
    /// <summary>
    /// The order a flow's children are compiled and scoped in: insertion order, except for graph flows, which use
    /// a topological order by generations (Kahn's algorithm, ties in insertion order), as TaskFlow's networkx does.
    /// For a graph flow also each child's position in that order, by insertion index (null otherwise: the same).
    /// </summary>
    public static (IReadOnlyList<FlowNode> Children, int[]? Position) OrderedChildren(Flow flow)
    {
        if (flow is not GraphFlow graph) return (flow.Items, null);
        var (order, position) = graph.TopologicalOrder();
        return (order, position);
    }
}
