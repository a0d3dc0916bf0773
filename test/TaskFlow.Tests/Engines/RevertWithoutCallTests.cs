using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.States;

namespace TaskFlow.Tests.Engines;

/// <summary>
/// The serial engine reverts a task that has nothing to undo without calling it; every other task is still called,
/// and both kinds go through REVERTING to REVERTED with their notifications.
/// </summary>
public sealed class RevertWithoutCallTests
{
    private sealed class NothingToUndo(string name) : FlowTask(name)
    {
        public void Execute() { }
    }

    private sealed class WithRevertMethod(string name, List<string> log) : FlowTask(name)
    {
        public void Execute() { }

        public void Revert() => log.Add($"{Name}.revert");
    }

    private sealed class LowLevel(string name, List<string> log) : FlowTask(name)
    {
        public override ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context) => new((object?)null);

        public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
        {
            log.Add($"{Name}.revert({context.AtomName})");
            return new((object?)null);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Tasks_with_something_to_undo_are_called_and_every_task_is_reported_reverted(bool parallel)
    {
        var log = new List<string>();
        var flow = new LinearFlow("f")
        {
            new NothingToUndo("a"), new WithRevertMethod("b", log), new LowLevel("c", log), new NothingToUndo("d"),
            FlowTask.Create("boom", (Func<int>)(() => throw new InvalidOperationException("boom"))),
        };
        var engine = parallel ? FlowEngine.CreateParallel(flow) : FlowEngine.CreateSerial(flow);
        var changes = new List<(string, AtomState)>();
        using (engine.Notifications.Subscribe<AtomStateChanged>(e => { lock (changes) changes.Add((e.AtomName, e.State)); }))
            await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());

        Assert.Equal(["c.revert(c)", "b.revert"], log);
        foreach (var name in new[] { "a", "b", "c", "d" })
        {
            Assert.Equal(AtomState.Reverted, engine.Storage.GetAtomStates()[name].State);
            var reverting = changes.IndexOf((name, AtomState.Reverting));
            Assert.True(reverting >= 0 && reverting < changes.IndexOf((name, AtomState.Reverted)), $"{name}: REVERTING then REVERTED");
        }
        // Reverse order, one at a time on the serial engine: d, c, b, a.
        if (!parallel)
            Assert.Equal(["d", "c", "b", "a"], changes.Where(c => c.Item2 == AtomState.Reverted && c.Item1 != "boom").Select(c => c.Item1));
    }
}
