using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using TaskFlow.Benchmarks.Cases;
using TaskFlow.Benchmarks.Compare;

namespace TaskFlow.Benchmarks.Suites;

/// <summary>
/// BenchmarkDotNet's view of every case: one engine run per invocation (a fresh flow and engine, compiled in the
/// iteration setup so only the run is measured), with the memory diagnoser, and columns dividing time and allocation
/// by the case's task count.
/// </summary>
[Config(typeof(PerTaskConfig))]
public class EngineBenchmarks
{
    private BenchBackends _backends = null!;
    private BenchCase.PreparedRun? _run;

    public static IEnumerable<string> Cases() => CompareHarness.Cases(quick: false).Where(c => !c.CompileOnly).Select(c => c.Name);

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void GlobalSetup() => _backends = new BenchBackends();

    [GlobalCleanup]
    public void GlobalCleanup() => _backends.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [IterationSetup]
    public void Prepare() => _run = CaseByName(Case).PrepareAsync(_backends).GetAwaiter().GetResult();

    [IterationCleanup]
    public void Cleanup() => _run?.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark]
    public Task<BenchSample> Run() => _run!.ExecuteAsync();

    internal static BenchCase CaseByName(string name) =>
        CompareHarness.Cases(quick: false).Concat(CompareHarness.Cases(quick: true)).FirstOrDefault(c => c.Name == name)
        ?? throw new ArgumentException($"No benchmark case named '{name}'.", nameof(name));
}

/// <summary>Compile + prepare + validate of large flows, per invocation a freshly built flow.</summary>
[Config(typeof(PerTaskConfig))]
public class CompileBenchmarks
{
    private BenchBackends _backends = null!;

    public static IEnumerable<string> Cases() => CompareHarness.Cases(quick: false).Where(c => c.CompileOnly).Select(c => c.Name);

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void GlobalSetup() => _backends = new BenchBackends();

    [GlobalCleanup]
    public void GlobalCleanup() => _backends.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark]
    public Task<BenchSample> BuildAndCompile() => EngineBenchmarks.CaseByName(Case).RunOnceAsync(_backends);
}

/// <summary>One invocation per iteration (an engine runs its flow once), plus per-task columns.</summary>
public sealed class PerTaskConfig : ManualConfig
{
    public PerTaskConfig()
    {
        AddJob(Job.Default.WithInvocationCount(1).WithUnrollFactor(1).WithWarmupCount(3).WithIterationCount(15));
        AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);
        AddColumn(new PerTaskColumn(allocation: false), new PerTaskColumn(allocation: true));
    }
}

/// <summary>Mean time, or allocated bytes, divided by the case's task count.</summary>
public sealed class PerTaskColumn(bool allocation) : IColumn
{
    public string Id => allocation ? "AllocPerTask" : "TimePerTask";
    public string ColumnName => allocation ? "Alloc/task" : "Time/task";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => allocation ? UnitType.Size : UnitType.Time;
    public string Legend => allocation ? "Bytes allocated per operation divided by the case's task count" : "Median divided by the case's task count";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var name = benchmarkCase.Parameters["Case"] as string;
        var report = summary[benchmarkCase];
        if (name is null || report?.ResultStatistics is null) return "-";
        int tasks = EngineBenchmarks.CaseByName(name).Tasks;
        if (allocation)
            return report.GcStats.GetBytesAllocatedPerOperation(benchmarkCase) is long bytes
                ? (bytes / (double)tasks).ToString("0", CultureInfo.InvariantCulture) + " B" : "-";
        return CompareHarness.Us(report.ResultStatistics.Median / 1000.0 / tasks);
    }
}
