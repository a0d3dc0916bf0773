// A linear flow: A runs, then B. B fails, so the engine reverts B, then A (reverse order), and the run
// ends by rethrowing B's error.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.States;

var flow = new LinearFlow("linear")
{
    new ReserveSeat { Name = "A", Provides = "seat" },
    new ChargeCard { Name = "B" },
};

var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["passenger"] = "ada" } });
try
{
    await engine.RunAsync();
    Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}");
    return 0;
}
catch (Exception e)
{
    Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: {e.GetType().Name}: {e.Message}");
    return 1;
}

sealed class ReserveSeat : FlowTask
{
    public string Execute(string passenger)
    {
        Console.WriteLine($"A: reserving a seat for {passenger}");
        return "12C";
    }

    public void Revert(string passenger, TaskOutcome result) =>
        Console.WriteLine($"A: releasing seat {result.Value} of {passenger}");
}

sealed class ChargeCard : FlowTask
{
    public void Execute(string passenger, string seat)
    {
        Console.WriteLine($"B: charging {passenger} for seat {seat}");
        throw new InvalidOperationException($"card of {passenger} declined");
    }

    public void Revert(string passenger) => Console.WriteLine($"B: nothing charged to {passenger}, nothing to refund");
}
