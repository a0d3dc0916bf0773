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
}
