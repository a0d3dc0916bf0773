using TaskFlow.Conformance;

// dotnet run -c Release --project test/TaskFlow.Conformance -- [--persist memory|directory|sqlite]
//     [--engine local|distributed-memory|distributed-rabbitmq] [--subset N] [--stdin] DIR...
// Runs every scenario in the folders (or files). With --persist each run is saved as it runs, and the saved run is
// checked; --engine distributed-* runs each flow's tasks on a worker over a transport; --subset takes N scenarios
// spread over every area. --stdin reads scenario paths from standard input instead, one a line, and answers each with
// one PASS/FAIL line as soon as it has run (the minimiser keeps one runner process for all its candidates).
var persistence = ScenarioRunner.Persistence.None;
string engineName = "local";
int? subset = null;
bool fromStdin = false;
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
        case "--stdin": fromStdin = true; break;
        case "--subset" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n > 0: subset = n; i++; break;
        case "--persist" or "--engine" or "--subset":
            Console.Error.WriteLine($"error: {args[i]} needs a value (--persist memory|directory|sqlite, --engine local|distributed-memory|distributed-rabbitmq, --subset N with N > 0).");
            return 2;
        default: inputs.Add(args[i]); break;
    }
}
if (inputs.Count == 0 && !fromStdin) inputs.Add(Path.Combine(AppContext.BaseDirectory, "scenarios"));
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
void Run(string file)
{
    var result = ScenarioRunner.RunFile(file, persistence, mode);
    if (result.Passed) { passed++; Console.WriteLine($"PASS {result.Name}"); }
    // One line per scenario, whatever an exception message holds: the minimiser reads the answers line by line.
    else { failed++; Console.WriteLine($"FAIL {result.Name}: {result.Difference?.ReplaceLineEndings(" ")}"); }
    Console.Out.Flush();
}
foreach (var file in files) Run(file);
if (fromStdin)
{
    while (Console.ReadLine() is { } line)
        if (line.Trim() is { Length: > 0 } path)
        {
            if (File.Exists(path)) Run(path);
            else { failed++; Console.WriteLine($"FAIL {path}: runner error: no such scenario file"); Console.Out.Flush(); }
        }
    return 0;
}
Console.WriteLine($"{passed} passed, {failed} failed");
return failed == 0 && passed > 0 ? 0 : 1;
