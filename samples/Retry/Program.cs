// A retry controller around a flow: TimesRetry(3) runs the flow up to three times. The upload fails on its
// first two attempts (the flaky network), so the engine reverts the flow and runs it again; the third attempt
// succeeds.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Retries;
using TaskFlow.States;

var flow = new LinearFlow("upload", new TimesRetry(3) { Name = "three_times" })
{
    new OpenConnection { Name = "open_connection", Provides = "connection" },
    new Upload(failures: 2) { Name = "upload", Provides = "url" },
};

var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["file"] = "report.pdf" } });
await engine.RunAsync();
Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: {engine.Storage.Fetch<string>("url")}");
Console.WriteLine($"Attempts: {engine.Storage.GetRetryHistory("three_times").Count}");

sealed class OpenConnection : FlowTask
{
    private int _opened;

    public string Execute()
    {
        _opened++;
        Console.WriteLine($"open_connection: connection #{_opened}");
        return $"conn-{_opened}";
    }

    public void Revert(TaskOutcome result) => Console.WriteLine($"open_connection: closing {result.Value}");
}

sealed class Upload(int failures) : FlowTask
{
    private int _calls;

    public string Execute(string file, string connection)
    {
        _calls++;
        Console.WriteLine($"upload: sending {file} over {connection} (try {_calls})");
        if (_calls <= failures) throw new IOException($"connection reset while sending {file}");
        return $"https://files.example/{file}";
    }
}
