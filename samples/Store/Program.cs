// Arguments by name: x and y come from the store given to the engine; "add" requires x and y and provides
// "sum"; "multiply" requires sum and y and provides "product". Nothing is wired by hand.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.States;

var flow = new LinearFlow("calculate")
{
    FlowTask.Create("add", (int x, int y) => x + y, provides: "sum"),
    FlowTask.Create("multiply", (int sum, int y) => sum * y, provides: "product"),
};

var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["x"] = 2, ["y"] = 5 } });
using var _ = engine.Notifications.Subscribe<TaskFlow.Notifications.AtomStateChanged>(e =>
{
    if (e.State == AtomState.Success) Console.WriteLine($"{e.AtomName} -> {e.Result}");
});

await engine.RunAsync();
Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}");
foreach (var (name, value) in engine.Storage.FetchAll().OrderBy(p => p.Key, StringComparer.Ordinal))
    Console.WriteLine($"  {name} = {value}");
