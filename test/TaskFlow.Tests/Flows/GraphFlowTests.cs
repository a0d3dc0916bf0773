using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.States;

namespace TaskFlow.Tests.Flows;

public sealed class GraphFlowTests
{
    private static FlowTask Provider(string name, string symbol, object value) => FlowTask.Create(name, () => value, provides: symbol);

    [Fact]
    public void Add_InfersEdgesFromRequiresAndProvides()
    {
        var a = Provider("a", "x", 1);
        var b = FlowTask.Create("b", (int x) => x + 1, provides: "y");
        var flow = new GraphFlow("g");
        flow.Add(b, a);
        var link = Assert.Single(flow.Links);
        Assert.Same(a, link.From);
        Assert.Same(b, link.To);
    }

    [Fact]
    public void Add_TwoEarlierProviders_ThrowsAmbiguousNamingBoth()
    {
        var flow = new GraphFlow("g");
        var ex = Assert.Throws<AmbiguousDependencyException>(() =>
            flow.Add(Provider("p1", "x", 1), Provider("p2", "x", 2), FlowTask.Create("c", (int x) => x)));
        Assert.Contains("'p1'", ex.Message);
        Assert.Contains("'p2'", ex.Message);
        Assert.Equal(0, flow.Count); // unchanged
    }

    [Fact]
    public void Link_MakingACycle_ThrowsAndLeavesFlowUnchanged()
    {
        var a = FlowTask.Create("a", () => 1);
        var b = FlowTask.Create("b", () => 2);
        var flow = new GraphFlow("g");
        flow.Add(a, b);
        flow.Link(a, b);
        var ex = Assert.Throws<DependencyCycleException>(() => flow.Link(b, a));
        Assert.Contains("b -> a", ex.Message.Replace("'", ""));
        Assert.Single(flow.Links);
    }

    [Fact]
    public void Link_NodeNotInFlow_ThrowsNamingIt()
    {
        var flow = new GraphFlow("g");
        flow.Add(FlowTask.Create("a", () => 1));
        var stranger = FlowTask.Create("stranger", () => 1);
        var ex = Assert.Throws<ArgumentException>(() => flow.Link(flow.Items[0], stranger));
        Assert.Contains("stranger", ex.Message);
    }

    [Fact]
    public async Task Decider_SaysNo_TargetAndSuccessorsEndIgnore()
    {
        var ran = new List<string>();
        var a = FlowTask.Create("a", () => { ran.Add("a"); return 5; }, provides: "a_out");
        var b = FlowTask.Create("b", () => { ran.Add("b"); return 1; });
        var c = FlowTask.Create("c", () => { ran.Add("c"); return 1; });
        var flow = new GraphFlow("g");
        flow.Add(a, b, c);
        flow.Link(a, b, history => (int)history["a"]! > 10);
        flow.Link(b, c);
        var engine = FlowEngine.CreateSerial(flow);
        await engine.RunAsync();
        Assert.Equal(["a"], ran);
        Assert.Equal(AtomState.Ignore, engine.Storage.GetAtomState("b"));
        Assert.Equal(AtomState.Ignore, engine.Storage.GetAtomState("c"));
        Assert.Equal(FlowState.Success, engine.State);
    }

    [Fact]
    public async Task Decider_DepthAtom_OnlyTargetIgnored()
    {
        var ran = new List<string>();
        var a = FlowTask.Create("a", () => { ran.Add("a"); return 5; });
        var b = FlowTask.Create("b", () => { ran.Add("b"); return 1; });
        var c = FlowTask.Create("c", () => { ran.Add("c"); return 1; });
        var flow = new GraphFlow("g");
        flow.Add(a, b, c);
        flow.Link(a, b, _ => false, DeciderDepth.Atom);
        flow.Link(b, c);
        var engine = FlowEngine.CreateSerial(flow);
        await engine.RunAsync();
        Assert.Equal(["a", "c"], ran);
        Assert.Equal(AtomState.Ignore, engine.Storage.GetAtomState("b"));
        Assert.Equal(AtomState.Success, engine.Storage.GetAtomState("c"));
    }

    [Fact]
    public void Compile_SameTaskTwice_ThrowsDuplicate()
    {
        var t = FlowTask.Create("t", () => 1);
        var flow = new LinearFlow("f") { t, new LinearFlow("inner") { t } };
        Assert.Throws<DuplicateAtomNameException>(() => FlowEngine.CreateSerial(flow).Compile());
    }

    [Fact]
    public void Add_FlowToItself_IsRefusedAtOnce()
    {
        // TaskFlow only notices at compile time (a duplicate name); refusing the Add names the problem where it is made.
        var flow = new LinearFlow("f");
        var ex = Assert.Throws<FlowDefinitionException>(() => flow.Add(flow));
        Assert.Contains("'f'", ex.Message);
        Assert.Empty(flow.Items);
    }

    [Fact]
    public void Add_AfterCompile_Throws()
    {
        var flow = new LinearFlow("f") { FlowTask.Create("a", () => 1) };
        FlowEngine.CreateSerial(flow).Compile();
        var ex = Assert.Throws<InvalidOperationException>(() => flow.Add(FlowTask.Create("b", () => 1)));
        Assert.Contains("'f'", ex.Message);
    }

    [Fact]
    public void Add_Null_ThrowsNamingFlow()
    {
        var flow = new LinearFlow("f");
        var ex = Assert.Throws<ArgumentNullException>(() => flow.Add(new FlowNode[] { null! }));
        Assert.Contains("'f'", ex.Message);
    }

    [Fact]
    public async Task Add_CycleThroughAnExistingChild_ThrowsAndLeavesTheFlowAsItWas()
    {
        var a = FlowTask.Create("a", (int x) => x + 1, provides: "y");
        var flow = new GraphFlow("g");
        flow.Add(a);
        var b = FlowTask.Create("b", (int y) => y, provides: "x");
        Assert.Throws<DependencyCycleException>(() => flow.Add(b));
        Assert.Equal([a], flow.Items);
        Assert.Empty(flow.Links);

        // The refused child is not half-added: a provider of x still links to a, and b's requirement y is unmet.
        var c = Provider("c", "x", 1);
        flow.Add(c);
        var link = Assert.Single(flow.Links);
        Assert.Same(c, link.From);
        Assert.Same(a, link.To);
        var engine = FlowEngine.CreateSerial(flow);
        await engine.RunAsync();
        Assert.Equal(2, engine.Storage.Fetch<int>("y"));
    }

    [Fact]
    public void Add_BatchWithAChildAlreadyInTheFlow_ThrowsAndAddsNoneOfTheBatch()
    {
        var a = Provider("a", "x", 1);
        var b = FlowTask.Create("b", (int x) => x);
        var flow = new GraphFlow("g");
        flow.Add(a);
        Assert.Throws<DuplicateAtomNameException>(() => flow.Add(b, a));
        Assert.Equal([a], flow.Items);
        Assert.Empty(flow.Links);
        flow.Add(b);
        var link = Assert.Single(flow.Links);
        Assert.Same(a, link.From);
        Assert.Same(b, link.To);
    }

    [Fact]
    public void Add_OneChildAtATime_InfersTheSameLinksAsOneBatch()
    {
        static FlowTask[] Chain() =>
        [
            FlowTask.Create("t2", (int v2) => v2 + 1, provides: "v3"),
            FlowTask.Create("t0", () => 1, provides: "v1"),
            FlowTask.Create("t1", (int v1) => v1 + 1, provides: "v2"),
            FlowTask.Create("join", (int v1, int v3) => v1 + v3),
        ];
        static string[] Names(GraphFlow f) => f.Links.Select(l => $"{l.From.Name}->{l.To.Name}").ToArray();
        var batch = new GraphFlow("batch");
        batch.Add(Chain());
        var single = new GraphFlow("single");
        foreach (var t in Chain()) single.Add(t);
        Assert.Equal(["t2->join", "t0->t1", "t0->join", "t1->t2"], Names(batch));
        Assert.Equal(Names(batch).Order(), Names(single).Order());
    }

    [Fact]
    public void Link_OnAnInferredEdge_ReplacesItsDecider()
    {
        var a = Provider("a", "x", 1);
        var b = FlowTask.Create("b", (int x) => x);
        var flow = new GraphFlow("g");
        flow.Add(a, b);
        Assert.Null(Assert.Single(flow.Links).Decider);
        LinkDecider decider = _ => false;
        flow.Link(a, b, decider, DeciderDepth.Atom);
        var link = Assert.Single(flow.Links);
        Assert.Same(decider, link.Decider);
        Assert.Equal(DeciderDepth.Atom, link.Depth);
    }
}
