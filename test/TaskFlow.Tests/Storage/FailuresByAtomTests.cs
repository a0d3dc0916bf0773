using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Tests.Storage;

/// <summary>The failure cache hands every revert one by-name view per change, never one that changes afterwards.</summary>
public sealed class FailuresByAtomTests
{
    [Fact]
    public async Task Reverts_share_one_view_of_the_failures_so_far()
    {
        var seen = new List<IReadOnlyDictionary<string, Failure>>();
        var flow = new LinearFlow("f")
        {
            new RecordingTask("a", seen), new RecordingTask("b", seen),
            FlowTask.Create("x", (Func<int>)(() => throw new InvalidOperationException("x fails"))),
        };
        var engine = FlowEngine.CreateSerial(flow);
        await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());
        Assert.Equal(2, seen.Count);
        Assert.Same(seen[0], seen[1]); // built once for the change, not once per revert
        Assert.Equal(["x"], seen[0].Keys);
        Assert.Same(seen[0], engine.Storage.GetFailures());
    }

    [Fact]
    public void No_failures_is_the_shared_empty_view()
    {
        var engine = FlowEngine.CreateSerial(new LinearFlow("f") { FlowTask.Create("a", () => 1) });
        engine.Validate();
        Assert.Empty(engine.Storage.GetFailures());
        Assert.Same(engine.Storage.GetFailures(), engine.Storage.GetRevertFailures());
    }

    private sealed class RecordingTask(string name, List<IReadOnlyDictionary<string, Failure>> seen) : FlowTask(name)
    {
        public void Execute() { }

        public void Revert(IReadOnlyDictionary<string, Failure> flow_failures)
        {
            lock (seen) seen.Add(flow_failures);
        }
    }
}
