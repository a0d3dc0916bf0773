// A Cinder-style "create volume" flow: record the volume in the database, create it on a storage backend,
// then mark it available. The backend step fails (unless --no-fail), so the engine reverts what was done,
// in reverse order, and reports the original error.
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.States;

bool fail = !args.Contains("--no-fail");
var database = new Dictionary<string, string>();

var flow = new LinearFlow("create-volume")
{
    new CreateDbRecord(database) { Name = "create_db_record", Provides = "volume_record" },
    new CreateBackendVolume(fail) { Name = "create_backend_volume", Provides = "backend_path" },
    new MarkAvailable(database) { Name = "mark_available" },
};

var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["volume_id"] = "vol-123", ["size_gb"] = 10 } });
using var _ = engine.Notifications.Subscribe<AtomStateChanged>(e => Console.WriteLine($"  {e.AtomName,-22} {e.State.ToTaskFlowName()}"));

Console.WriteLine($"Creating volume vol-123 ({(fail ? "the backend will fail" : "all steps succeed")})");
try
{
    await engine.RunAsync();
    Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: volume at {engine.Storage.Fetch<string>("backend_path")}, status {database["vol-123"]}");
    return 0;
}
catch (Exception e)
{
    Console.WriteLine($"Flow {engine.State.ToTaskFlowName()}: {e.GetType().Name}: {e.Message}");
    Console.WriteLine($"Database rows left: {database.Count}");
    return 1;
}

sealed class CreateDbRecord(Dictionary<string, string> db) : FlowTask
{
    public string Execute(string volume_id, int size_gb)
    {
        db[volume_id] = "creating";
        return $"{volume_id}:{size_gb}GB";
    }

    public void Revert(string volume_id) => db.Remove(volume_id);
}

sealed class CreateBackendVolume(bool fail) : FlowTask
{
    public string Execute(string volume_id, string volume_record)
    {
        if (fail) throw new IOException($"backend rejected {volume_record}: out of space");
        return $"/dev/pool/{volume_id}";
    }
}

sealed class MarkAvailable(Dictionary<string, string> db) : FlowTask
{
    public void Execute(string volume_id) => db[volume_id] = "available";
}
