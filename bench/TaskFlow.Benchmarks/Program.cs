using BenchmarkDotNet.Running;
using TaskFlow.Benchmarks.Compare;

// compare [--quick] [--no-python] [--markdown FILE] [--only REGEX]: the side-by-side table (Stopwatch medians, TaskFlow's anchor script).
// bdn [BenchmarkDotNet arguments, e.g. --filter *Compile*]: the BenchmarkDotNet suite with the memory diagnoser.
// list: the case names.
var command = args.Length > 0 ? args[0] : "compare";
switch (command)
{
    case "compare":
    {
        bool quick = args.Contains("--quick");
        bool python = !args.Contains("--no-python");
        int md = Array.IndexOf(args, "--markdown");
        string? markdown = md >= 0 && md + 1 < args.Length ? args[md + 1] : null;
        int only = Array.IndexOf(args, "--only");
        var filter = only >= 0 && only + 1 < args.Length ? new System.Text.RegularExpressions.Regex(args[only + 1]) : null;
        var unknown = args.Skip(1).Where((a, i) => a.StartsWith("--", StringComparison.Ordinal) && a is not ("--quick" or "--no-python" or "--markdown" or "--only")).ToList();
        if (unknown.Count > 0) { Console.Error.WriteLine($"compare: unknown option {string.Join(", ", unknown)} (known: --quick, --no-python, --markdown FILE, --only REGEX)"); return 2; }
        var started = DateTime.UtcNow;
        Console.WriteLine($"TaskFlow for .NET benchmarks, {(quick ? "quick" : "full")} compare; {Environment.ProcessorCount} cores; load average {LoadAverage()}");
        var harness = new CompareHarness(quick, Console.Out);
        var results = await harness.RunAsync(CompareHarness.Cases(quick).Where(c => filter is null || filter.IsMatch(c.Name)).ToList(), python);
        var report = $"""

            {CompareHarness.Table(results)}
            {CompareHarness.PersistenceTable(results)}
            {CompareHarness.Targets(results)}
            Load average at the end: {LoadAverage()}; took {(DateTime.UtcNow - started).TotalSeconds:0} s.
            """;
        Console.WriteLine(report);
        if (markdown is not null) await File.WriteAllTextAsync(markdown, report);
        return 0;
    }
    case "profile":
    {
        // profile "<case name>" [runs]: runs one case repeatedly with no other work, for dotnet-trace / dotnet-counters.
        if (args.Length < 2) { Console.Error.WriteLine("profile: name a case (see list)."); return 2; }
        var c = TaskFlow.Benchmarks.Suites.EngineBenchmarks.CaseByName(args[1]);
        int runs = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 20;
        await using var backends = new TaskFlow.Benchmarks.Cases.BenchBackends();
        for (int i = 0; i < runs; i++)
        {
            var s = await c.RunOnceAsync(backends);
            Console.WriteLine($"{c.Name}: build {CompareHarness.Ms(s.Build.TotalSeconds)}, compile {CompareHarness.Ms(s.Compile.TotalSeconds)}, run {CompareHarness.Ms(s.Run.TotalSeconds)}, {s.RunAllocatedBytes / Math.Max(1, c.Tasks)} B/task, {s.RunCollections} GCs in the run ({s.RunOlderCollections} of gen 1-2)");
        }
        return 0;
    }
    case "list":
        foreach (var c in CompareHarness.Cases(quick: false)) Console.WriteLine(c.Name);
        return 0;
    case "bdn":
        BenchmarkSwitcher.FromAssembly(typeof(CompareHarness).Assembly).Run(args[1..]);
        return 0;
    default:
        Console.Error.WriteLine($"Unknown command '{command}'. Use: compare [--quick] [--no-python] [--markdown FILE] | bdn [BenchmarkDotNet args] | list");
        return 2;
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
