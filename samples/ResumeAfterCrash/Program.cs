// Crash and resume. Every state change of the run is saved to SQLite (resumeaftercrash.db in the current
// directory, or --db PATH) before the engine acts on it. Run this program twice:
//   1st invocation: starts a new run; the third task kills the whole process half way (as `kill -9` or a power
//                   cut would), after the first two tasks finished and were saved.
//   2nd invocation: finds the saved run and resumes it: the two finished tasks are not run again (their saved
//                   results are used), the interrupted task runs again, and the flow finishes.
// A third invocation finds the run finished and says so; `taskflow books show --db resumeaftercrash.db` shows it.
using System.Diagnostics;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

string dbPath = args.Length == 2 && args[0] == "--db" ? args[1]
    : args.Length == 0 ? "resumeaftercrash.db"
    : throw new ArgumentException($"Unexpected arguments '{string.Join(' ', args)}'; the only option is --db PATH.");

// One fixed id: the second invocation looks for the run the first one saved under it.
var flowDetailId = Guid.Parse("0193a5b0-0000-7000-8000-00000000c4a5");
await using var persistence = new SqlitePersistenceBackend($"Data Source={dbPath}");
await persistence.EnsureSchemaAsync();
var saved = await persistence.GetFlowDetailAsync(flowDetailId);
if (saved?.State == FlowState.Success)
{
    Console.WriteLine($"The run saved in {dbPath} already finished (flow detail {flowDetailId}, SUCCESS); delete the file to start over.");
    return 0;
}

bool freshRun = saved is null;
Console.WriteLine(freshRun
    ? $"Invocation 1: starting a new run, saved as flow detail {flowDetailId} in {dbPath}"
    : $"Invocation 2: resuming flow detail {flowDetailId} from {dbPath} (saved as {saved!.State.ToTaskFlowName()}; finished: {string.Join(", ", saved.Atoms.Where(a => a.State == AtomState.Success).Select(a => a.Name))})");

// The tasks note when they execute: the engine's notifications would not show the interrupted task again, as it
// was saved RUNNING and is simply run again, without a new state change.
var ran = new List<string>();
var flow = new LinearFlow("publish-report")
{
    new DownloadData(ran) { Name = "download_data", Provides = "rows" },
    new BuildReport(ran) { Name = "build_report", Provides = "report" },
    new UploadReport(ran, crashHalfWay: freshRun) { Name = "upload_report", Provides = "url" },
    new NotifyTeam(ran) { Name = "notify_team", Provides = "notice" },
};

var engine = FlowEngine.CreateSerial(flow, new EngineOptions
{
    Store = { ["day"] = "2026-11-22" },
    Persistence = persistence,
    FlowDetailId = flowDetailId,
});

await engine.RunAsync();
Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: {engine.Storage.Fetch<string>("notice")}");
Console.WriteLine($"Ran in this invocation: {string.Join(", ", ran)}");
Console.WriteLine($"Not run again: {string.Join(", ", flow.Select(t => t.Name).Except(ran))}");
return 0;

sealed class DownloadData(List<string> ran) : FlowTask
{
    public int Execute(string day)
    {
        ran.Add(Name);
        Console.WriteLine($"download_data: fetching the sales of {day}");
        return 1200;
    }
}

sealed class BuildReport(List<string> ran) : FlowTask
{
    public string Execute(string day, int rows)
    {
        ran.Add(Name);
        Console.WriteLine($"build_report: summarising {rows} rows");
        return $"sales-{day}.pdf";
    }
}

sealed class UploadReport(List<string> ran, bool crashHalfWay) : FlowTask
{
    public string Execute(string report)
    {
        ran.Add(Name);
        Console.WriteLine($"upload_report: uploading {report}");
        if (crashHalfWay)
        {
            Console.WriteLine("upload_report: the process dies half way through the upload");
            Console.Out.Flush();
            // No exception, no revert, no chance to save anything more: the process is gone, as with kill -9.
            Process.GetCurrentProcess().Kill();
        }
        return $"https://reports.example/{report}";
    }
}

sealed class NotifyTeam(List<string> ran) : FlowTask
{
    public string Execute(string url)
    {
        ran.Add(Name);
        Console.WriteLine($"notify_team: posting {url}");
        return $"team notified of {url}";
    }
}
