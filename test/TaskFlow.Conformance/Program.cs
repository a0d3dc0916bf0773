using TaskFlow.Conformance;

// dotnet run -c Release --project test/TaskFlow.Conformance -- [--persist memory|directory|sqlite]
//     [--engine local|distributed-memory|distributed-rabbitmq] [--subset N] DIR...
// Runs every scenario in the folders (or files). With --persist each run is saved as it runs, and the saved run is
// checked; --engine distributed-* runs each flow's tasks on a worker over a transport; --subset takes N scenarios
// spread over every area.
var persistence = ScenarioRunner.Persistence.None;
string engineName = "local";
int? subset = null;
var inputs = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--persist" when i + 1 < args.Length:
            if (!Enum.TryParse(args[++i], ignoreCase: true, out persistence) || persistence == ScenarioRunner.Persistence.None)
            {
                Console.Error.WriteLine($"error: --persist takes memory, directory or sqlite, not '{args[i]}'.");
                return 2;
            }
            break;
        case "--engine" when i + 1 < args.Length: engineName = args[++i]; break;
        case "--subset" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n > 0: subset = n; i++; break;
        case "--persist" or "--engine" or "--subset":
            Console.Error.WriteLine($"error: {args[i]} needs a value (--persist memory|directory|sqlite, --engine local|distributed-memory|distributed-rabbitmq, --subset N with N > 0).");
            return 2;
        default: inputs.Add(args[i]); break;
    }
}
if (inputs.Count == 0) inputs.Add(Path.Combine(AppContext.BaseDirectory, "scenarios"));
var files = new List<string>();
foreach (var input in inputs)
{
    if (Directory.Exists(input)) files.AddRange(Directory.GetFiles(input, "*.json").Order(StringComparer.Ordinal));
    else if (File.Exists(input)) files.Add(input);
    else
    {
        Console.Error.WriteLine($"error: '{input}' is neither a scenario file nor a folder of them.");
        return 2;
    }
}
if (subset is { } size) files = ScenarioSubset.Spread(files, size);

await using var rabbit = engineName == "distributed-rabbitmq" ? await RabbitMqConnection.OpenAsync() : null;
EngineMode mode;
try { mode = EngineMode.Parse(engineName, rabbit is null ? null : () => rabbit.Transport); }
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
int passed = 0, failed = 0;
foreach (var file in files)
{
    var result = ScenarioRunner.RunFile(file, persistence, mode);
    if (result.Passed) { passed++; Console.WriteLine($"PASS {result.Name}"); }
    else { failed++; Console.WriteLine($"FAIL {result.Name}: {result.Difference}"); }
}
Console.WriteLine($"{passed} passed, {failed} failed");
return failed == 0 && passed > 0 ? 0 : 1;
