// An unordered flow: three independent tasks that need nothing from each other. The third fails, so every
// task that ran is reverted (the failed one too), and the run ends with its error.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.States;

var flow = new UnorderedFlow("provision")
{
    new Provision("dns") { Name = "create_dns_record" },
    new Provision("ip") { Name = "allocate_ip" },
    new Provision("disk", failWith: "quota exceeded") { Name = "attach_disk" },
};

// The serial engine runs unordered tasks one at a time in the order they were added, so the output is stable;
// FlowEngine.CreateParallel would run them at once.
var engine = FlowEngine.CreateSerial(flow);
try
{
    await engine.RunAsync();
    Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}");
    return 0;
}
catch (Exception e)
{
    Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: {e.GetType().Name}: {e.Message}");
    foreach (var (atom, (state, _)) in engine.Storage.GetAtomStates())
        Console.WriteLine($"  {atom,-18} {state.ToTaskFlowName()}");
    return 1;
}

sealed class Provision(string resource, string? failWith = null) : FlowTask
{
    public string Execute()
    {
        Console.WriteLine($"{Name}: creating the {resource}");
        if (failWith is not null) throw new InvalidOperationException($"{resource}: {failWith}");
        return resource;
    }

    public void Revert(TaskOutcome result) =>
        Console.WriteLine(result.IsFailure ? $"{Name}: the {resource} was never created" : $"{Name}: deleting the {resource}");
}
