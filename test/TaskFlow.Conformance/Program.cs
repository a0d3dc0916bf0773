using TaskFlow.Conformance;

// dotnet run -c Release --project test/TaskFlow.Conformance -- [--engine local|distributed-memory|distributed-rabbitmq]
//     [--subset N] DIR... : runs every scenario in the folders (or files); --subset takes N spread over every area.
var inputs = new List<string>();
string engineName = "local";
int? subset = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--engine" when i + 1 < args.Length: engineName = args[++i]; break;
        case "--subset" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n > 0: subset = n; i++; break;
        case "--engine" or "--subset":
            Console.Error.WriteLine($"error: {args[i]} needs a value (--engine local|distributed-memory|distributed-rabbitmq, --subset N with N > 0).");
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
    var result = ScenarioRunner.RunFile(file, mode);
    if (result.Passed) { passed++; Console.WriteLine($"PASS {result.Name}"); }
    else { failed++; Console.WriteLine($"FAIL {result.Name}: {result.Difference}"); }
}
Console.WriteLine($"{passed} passed, {failed} failed");
return failed == 0 && passed > 0 ? 0 : 1;
