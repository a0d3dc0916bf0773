using TaskFlow.Atoms;
using TaskFlow.Flows;

namespace TaskFlow.Benchmarks.Cases;

/// <summary>The flow shapes of the TaskFlow anchors (<c>bench/python/tfbench.py</c>), built the same way.</summary>
public static class BenchFlows
{
    /// <summary>B1/B5: a linear flow of <paramref name="n"/> no-op tasks t0..t(n-1).</summary>
    public static LinearFlow Linear(int n)
    {
        var flow = new LinearFlow("linear");
        var tasks = new FlowNode[n];
        for (int i = 0; i < n; i++) tasks[i] = new NoOpTask(Name(i));
        flow.Add(tasks);
        return flow;
    }

    /// <summary>B2: task i reads <c>v{i}</c> and provides <c>v{i+1}</c>; the store holds <c>v0 = 0</c>, so <c>v{n} == n</c>.</summary>
    public static LinearFlow Chain(int n)
    {
        var flow = new LinearFlow("chain");
        flow.Add(ChainTasks(n));
        return flow;
    }

    /// <summary>The chain of <see cref="Chain"/> in a graph flow, whose edges the compiler infers from the data.</summary>
    public static GraphFlow GraphChain(int n)
    {
        var flow = new GraphFlow("graph-chain");
        flow.Add(ChainTasks(n));
        return flow;
    }

    private static FlowNode[] ChainTasks(int n)
    {
        var tasks = new FlowNode[n];
        for (int i = 0; i < n; i++)
            tasks[i] = new IncrementTask(Name(i)) { Rebind = new[] { $"v{i}" }, Provides = $"v{i + 1}" };
        return tasks;
    }

    /// <summary>B3: start → n middle tasks → join in a graph flow, edges inferred from provides/requires (TaskFlow's "data" style).</summary>
    public static GraphFlow FanOut(int n, TimeSpan delay, bool exactTimer = false)
    {
        var flow = new GraphFlow("fanout");
        var nodes = new FlowNode[n + 2];
        nodes[0] = new NoOpTask("start") { Provides = "seed" };
        var results = new string[n];
        for (int i = 0; i < n; i++)
        {
            results[i] = $"r{i}";
            nodes[i + 2] = new DelayTask($"m{i}", delay, exactTimer) { Requires = ["seed"], Provides = results[i] };
        }
        nodes[1] = new NoOpTask("join") { Requires = results };
        flow.Add(nodes);
        return flow;
    }

    /// <summary>B4: an unordered flow of <paramref name="n"/> no-op tasks.</summary>
    public static UnorderedFlow Unordered(int n)
    {
        var flow = new UnorderedFlow("unordered");
        var tasks = new FlowNode[n];
        for (int i = 0; i < n; i++) tasks[i] = new NoOpTask(Name(i));
        flow.Add(tasks);
        return flow;
    }

    /// <summary>B6: <paramref name="n"/> - 1 no-op tasks, then one that fails, so all of them are reverted.</summary>
    public static LinearFlow FailLast(int n)
    {
        var flow = new LinearFlow("faillast");
        var tasks = new FlowNode[n];
        for (int i = 0; i < n - 1; i++) tasks[i] = new NoOpTask(Name(i));
        tasks[n - 1] = new FailingTask(Name(n - 1));
        flow.Add(tasks);
        return flow;
    }

    /// <summary>B7: <c>TimesRetry(n)</c> around a task that fails n - 1 times and then succeeds.</summary>
    public static LinearFlow Retry(int n, out FlakyTask flaky)
    {
        flaky = new FlakyTask("flaky", n - 1);
        var flow = new LinearFlow("retry", new Retries.TimesRetry(n));
        flow.Add(flaky);
        return flow;
    }

    private static string Name(int i) => "t" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
