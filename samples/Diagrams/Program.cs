// Draws a flow as a Mermaid diagram, runs it (a step fails, so the engine reverts), and draws it again with the
// state every atom ended in. Paste either diagram into any Mermaid viewer (GitHub renders ```mermaid blocks).
using TaskFlow.Atoms;
using TaskFlow.Diagrams;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Listeners;
using TaskFlow.Retries;
using TaskFlow.States;

var boot = FlowTask.Create("boot", (string ip, string image, string disk) => $"server at {ip}", provides: "server");
var installAgent = FlowTask.Create("install_agent",
    new Func<string, string>(server => throw new InvalidOperationException($"agent download failed on {server}")));
var enableMonitoring = FlowTask.Create("enable_monitoring", (string server) => "monitored");
var configure = new GraphFlow("configure");
configure.Add(boot, installAgent, enableMonitoring);
// Monitoring is switched off for this server: the decider says no, so enable_monitoring is IGNOREd, never run. Its
// depth is Atom: only that task is skipped (the default, All, would skip everything after it too).
configure.Link(boot, enableMonitoring, history => false, DeciderDepth.Atom);

var flow = new LinearFlow("provision-server")
{
    FlowTask.Create("allocate_ip", () => "10.0.0.7", () => { }, provides: "ip"),
    new UnorderedFlow("prepare", new TimesRetry(2) { Name = "prepare_retry" })
    {
        FlowTask.Create("download_image", () => "debian-13", () => { }, provides: "image"),
        FlowTask.Create("reserve_disk", () => "disk-42", () => { }, provides: "disk"),
    },
    configure,
    FlowTask.Create("announce", (string server) => $"{server} is ready"),
};

var engine = FlowEngine.CreateSerial(flow);
var info = FlowInfo.FromEngine(engine);

Console.WriteLine("The flow:");
Console.Write(FlowDiagram.ToMermaid(info));
Console.WriteLine();

Console.WriteLine("Running it:");
using (new ConsoleListener(Console.Out).Attach(engine))
{
    try
    {
        await engine.RunAsync();
    }
    catch (InvalidOperationException e)
    {
        Console.WriteLine($"Run ended {engine.State.ToTaskFlowName()}: {e.Message}");
    }
}
Console.WriteLine();

Console.WriteLine("The flow after the run:");
Console.Write(FlowDiagram.ToMermaid(info, FlowDiagram.StatesOf(engine.Storage)));
