using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Tests.Flows;

public sealed class FlowNestingTests
{
    [Fact]
    public void Add_FlowToItself_IsRefusedNamingIt()
    {
        var flow = new LinearFlow("loop") { FlowTask.Create("a", () => 1) };
        var ex = Assert.Throws<FlowDefinitionException>(() => flow.Add(flow));
        Assert.Contains("'loop'", ex.Message);
        Assert.Single(flow.Items);
    }

    [Fact]
    public void Add_FlowThatContainsTheTarget_IsRefusedAndLeavesBothUnchanged()
    {
        var outer = new UnorderedFlow("outer");
        var middle = new GraphFlow("middle");
        var inner = new LinearFlow("inner") { FlowTask.Create("a", () => 1) };
        middle.Add(inner);
        outer.Add(middle);
        var ex = Assert.Throws<FlowDefinitionException>(() => inner.Add(outer));
        Assert.Contains("'outer'", ex.Message);
        Assert.Contains("'inner'", ex.Message);
        Assert.Single(inner.Items);
        FlowEngine.CreateSerial(outer).Compile(); // still a valid tree
    }

    [Fact]
    public void Add_SameSubflowTwiceInSeparateBranches_IsNotALoop()
    {
        // A diamond of containment is not a loop; the compiler reports the subflow used twice.
        var shared = new LinearFlow("shared") { FlowTask.Create("s", () => 1) };
        var root = new LinearFlow("root") { new LinearFlow("left") { shared } };
        var ex = Assert.Throws<DuplicateAtomNameException>(() =>
        {
            root.Add(new LinearFlow("right") { shared });
            FlowEngine.CreateSerial(root).Compile();
        });
        Assert.Contains("'shared'", ex.Message);
    }

    private sealed class ByRefTask(string name) : FlowTask(name)
    {
        public int Execute(ref int x) => x;
    }

    [Fact]
    public void Compile_TaskWhoseExecuteCannotBeBound_NamesTheTask()
    {
        var ex = Assert.Throws<FlowDefinitionException>(() => FlowEngine.CreateSerial(new LinearFlow("f") { new ByRefTask("resize-disk") }).Compile());
        Assert.Contains("'resize-disk'", ex.Message);
        Assert.Contains("by reference", ex.Message);
    }
}
