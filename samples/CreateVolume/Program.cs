// A Cinder-style "create volume" flow: record the volume in the database, create it on a storage backend,
// then mark it available. The backend step fails (unless --no-fail), so the engine reverts what was done,
// in reverse order, and reports the original error.
//
// Every state change of the run is saved to a SQLite file (createvolume.db in the current directory, or
// --db PATH) before the engine acts on it; `taskflow books show --db createvolume.db` shows what was saved.
// On a terminal the run is drawn as a live table; when the output is redirected it is printed as plain lines.
using Spectre.Console;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

bool fail = !args.Contains("--no-fail");
string dbPath = OptionValue(args, "--db") ?? "createvolume.db";
var volumeRecords = new Dictionary<string, string>();

var flow = new LinearFlow("create-volume")
{
    new CreateDbRecord(volumeRecords) { Name = "create_db_record", Provides = "volume_record" },
    new CreateBackendVolume(fail) { Name = "create_backend_volume", Provides = "backend_path" },
    new MarkAvailable(volumeRecords) { Name = "mark_available" },
};

await using var persistence = new SqlitePersistenceBackend($"Data Source={dbPath}");
var flowDetailId = Guid.CreateVersion7();
var engine = FlowEngine.CreateSerial(flow, new EngineOptions
{
    Store = { ["volume_id"] = "vol-123", ["size_gb"] = 10 },
    Persistence = persistence,
    FlowDetailId = flowDetailId,
});

Console.WriteLine($"Creating volume vol-123 ({(fail ? "the backend will fail" : "all steps succeed")})");
Exception? error = null;
try
{
    if (Console.IsOutputRedirected) await RunPlainAsync(engine);
    else await RunLiveAsync(engine, flow);
}
catch (Exception e)
{
    error = e;
}

Console.WriteLine(error is null
    ? $"Flow {engine.State.ToTaskFlowName()}: volume at {engine.Storage.Fetch<string>("backend_path")}, status {volumeRecords["vol-123"]}"
    : $"Flow {engine.State.ToTaskFlowName()}: {error.GetType().Name}: {error.Message}");
if (error is not null) Console.WriteLine($"Volume records left: {volumeRecords.Count}");
Console.WriteLine($"Saved as flow detail {flowDetailId} in {dbPath}; look inside with: taskflow books show {flowDetailId} --db {dbPath}");
return error is null ? 0 : 1;

static async Task RunPlainAsync(FlowEngine engine)
{
    using var _ = engine.Notifications.Subscribe<AtomStateChanged>(e => Console.WriteLine($"  {e.AtomName,-22} {e.State.ToTaskFlowName()}"));
    await engine.RunAsync();
}

static async Task RunLiveAsync(FlowEngine engine, Flow flow)
{
    var table = new Table().Border(TableBorder.Rounded).AddColumn("Task").AddColumn("State");
    var rows = new Dictionary<string, int>(StringComparer.Ordinal);
    foreach (var node in flow)
    {
        rows[node.Name] = rows.Count;
        table.AddRow(node.Name, "[grey]PENDING[/]");
    }
    await AnsiConsole.Live(table).StartAsync(async context =>
    {
        using var _ = engine.Notifications.Subscribe<AtomStateChanged>(e =>
        {
            if (!rows.TryGetValue(e.AtomName, out var row)) return;
            table.UpdateCell(row, 1, $"[{Colour(e.State)}]{e.State.ToTaskFlowName()}[/]");
            context.Refresh();
        });
        await engine.RunAsync();
    });
}

static string Colour(AtomState state) => state switch
{
    AtomState.Running or AtomState.Reverting => "yellow",
    AtomState.Success => "green",
    AtomState.Failure or AtomState.RevertFailure => "red",
    AtomState.Reverted => "blue",
    _ => "grey",
};

static string? OptionValue(string[] args, string name)
{
    var i = Array.IndexOf(args, name);
    if (i < 0) return null;
    if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
        throw new ArgumentException($"{name} needs a value, e.g. {name} createvolume.db");
    return args[i + 1];
}

sealed class CreateDbRecord(Dictionary<string, string> records) : FlowTask
{
    public async Task<string> ExecuteAsync(string volume_id, int size_gb, CancellationToken cancellationToken)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(150), cancellationToken); // a database round trip
        records[volume_id] = "creating";
        return $"{volume_id}:{size_gb}GB";
    }

    public void Revert(string volume_id) => records.Remove(volume_id);
}

sealed class CreateBackendVolume(bool fail) : FlowTask
{
    public async Task<string> ExecuteAsync(string volume_id, string volume_record, CancellationToken cancellationToken)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(400), cancellationToken); // the storage backend at work
        if (fail) throw new IOException($"backend rejected {volume_record}: out of space");
        return $"/dev/pool/{volume_id}";
    }
}

sealed class MarkAvailable(Dictionary<string, string> records) : FlowTask
{
    public void Execute(string volume_id) => records[volume_id] = "available";
}
