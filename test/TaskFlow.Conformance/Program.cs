using TaskFlow.Conformance;

// dotnet run -c Release --project test/TaskFlow.Conformance -- [--persist memory|directory|sqlite] DIR... : runs every
// scenario in the folders (or files); with --persist each run is saved as it runs, and the saved run is checked.
var persistence = ScenarioRunner.Persistence.None;
if (args.Length >= 2 && args[0] == "--persist")
{
    if (!Enum.TryParse(args[1], ignoreCase: true, out persistence) || persistence == ScenarioRunner.Persistence.None)
    {
        Console.Error.WriteLine($"error: --persist takes memory, directory or sqlite, not '{args[1]}'.");
        return 2;
    }
    args = args[2..];
}
var inputs = args.Length > 0 ? args : [Path.Combine(AppContext.BaseDirectory, "scenarios")];
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
int passed = 0, failed = 0;
foreach (var file in files)
{
    var result = ScenarioRunner.RunFile(file, persistence);
    if (result.Passed) { passed++; Console.WriteLine($"PASS {result.Name}"); }
    else { failed++; Console.WriteLine($"FAIL {result.Name}: {result.Difference}"); }
}
Console.WriteLine($"{passed} passed, {failed} failed");
return failed == 0 && passed > 0 ? 0 : 1;
