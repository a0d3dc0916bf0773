// A graph flow: C needs what B makes, B needs what A makes. The tasks are added in reverse order on purpose:
// the engine orders them by the data they require and provide (A → B → C), not by the order they were added.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.States;

var flow = new GraphFlow("graph")
{
    FlowTask.Create("C", (string dough) => Print("C", $"baking {dough} into bread"), provides: "bread"),
    FlowTask.Create("B", (string flour) => Print("B", $"kneading {flour} into dough"), provides: "dough"),
    FlowTask.Create("A", (string grain) => Print("A", $"milling {grain} into flour"), provides: "flour"),
};

var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["grain"] = "wheat" } });
await engine.RunAsync();
Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: {engine.Storage.Fetch<string>("bread")}");

static string Print(string task, string what)
{
    Console.WriteLine($"{task}: {what}");
    return what[(what.LastIndexOf(" into ", StringComparison.Ordinal) + 6)..];
}
