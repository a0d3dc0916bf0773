// Watching a run: the engine publishes flow state changes, atom state changes and task progress as they
// happen; subscribers print them. Dispose a subscription to stop listening.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.States;

var flow = new LinearFlow("deploy")
{
    new Build { Name = "build", Provides = "artifact" },
    FlowTask.Create("publish", (string artifact) => $"registry/{artifact}", provides: "image"),
};

var engine = FlowEngine.CreateSerial(flow);
using var flowStates = engine.Notifications.Subscribe<FlowStateChanged>(e =>
    Console.WriteLine($"flow {e.FlowName}: {e.OldState.ToTaskFlowName()} -> {e.State.ToTaskFlowName()}"));
using var atomStates = engine.Notifications.Subscribe<AtomStateChanged>(e =>
    Console.WriteLine($"  {e.Kind.ToString().ToLowerInvariant()} {e.AtomName}: {e.OldState.ToTaskFlowName()} -> {e.State.ToTaskFlowName()}"
        + (e.State == AtomState.Success ? $" (result {e.Result})" : "")));
using var progress = engine.Notifications.Subscribe<TaskProgressChanged>(e =>
    Console.WriteLine($"    {e.AtomName} progress {e.Progress * 100:0}%{(e.Details is null ? "" : $" {e.Details}")}"));

await engine.RunAsync();
Console.WriteLine($"Done: {engine.Storage.Fetch<string>("image")}");

sealed class Build : FlowTask
{
    private static readonly string[] Steps = ["restore", "compile", "pack"];

    public string Execute(TaskContext context)
    {
        for (int i = 0; i < Steps.Length; i++)
            context.ReportProgress((i + 1) / (double)Steps.Length, Steps[i]);
        return "app-1.0.nupkg";
    }
}
