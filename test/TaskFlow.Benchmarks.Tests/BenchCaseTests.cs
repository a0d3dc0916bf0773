using TaskFlow.Benchmarks.Cases;
using TaskFlow.Benchmarks.Compare;

namespace TaskFlow.Benchmarks.Tests;

/// <summary>Every benchmark case runs at a tiny size and does the work it measures, so the suite cannot rot.</summary>
public sealed class BenchCaseTests
{
    public static TheoryData<string> TinyCases()
    {
        var data = new TheoryData<string>();
        foreach (var c in Tiny()) data.Add(c.Name);
        return data;
    }

    private static IEnumerable<BenchCase> Tiny()
    {
        yield return BenchCase.Linear(5);
        yield return BenchCase.Chain(5);
        yield return BenchCase.FanOut(5, 0, 8);
        yield return BenchCase.FanOut(5, 2, -1);
        yield return BenchCase.FanOut(5, 2, 2, exactTimer: true);
        yield return BenchCase.Unordered(5);
        foreach (var backend in new[] { BenchBackend.Memory, BenchBackend.Directory, BenchBackend.SqliteFsync, BenchBackend.SqliteWal, BenchBackend.PostgreSql })
        {
            yield return BenchCase.Persisted(5, backend);
            yield return BenchCase.Persisted(5, backend, parallel: true);
        }
        yield return BenchCase.FailLast(5);
        yield return BenchCase.Retry(5);
        yield return BenchCase.Compile(5, graph: false);
        yield return BenchCase.Compile(5, graph: true);
    }

    [Theory]
    [MemberData(nameof(TinyCases))]
    public async Task Case_runs_and_passes_its_own_check(string name)
    {
        var c = Tiny().Single(x => x.Name == name);
        if (!BenchBackends.IsAvailable(c.Backend))
        {
            // Under CI the PostgreSQL server is part of the run: a missing one is a failure, not a skip.
            Assert.True(Environment.GetEnvironmentVariable("CI") != "true", $"{BenchBackends.PostgresVariable} is not set under CI=true.");
            return;
        }
        await using var backends = new BenchBackends();
        var sample = await c.RunOnceAsync(backends);
        Assert.True(sample.Compile > TimeSpan.Zero, "compile time was not measured");
        if (c.CompileOnly) Assert.Equal(TimeSpan.Zero, sample.Run);
        else Assert.True(sample.Run > TimeSpan.Zero, "run time was not measured");
        Assert.True(sample.CompileAllocatedBytes > 0, "compile allocations were not measured");
    }

    [Fact]
    public async Task Harness_reports_every_case_and_the_persistence_cost_against_its_baseline()
    {
        var cases = new[] { BenchCase.Linear(4), BenchCase.Persisted(4, BenchBackend.Memory), BenchCase.Retry(4), BenchCase.Compile(4, graph: false) };
        var log = new StringWriter();
        var results = await new CompareHarness(quick: true, log).RunAsync(cases, withAnchor: false);
        Assert.Equal(cases.Length, results.Count);
        var table = CompareHarness.Table(results);
        foreach (var c in cases.Where(c => !c.CompileOnly)) Assert.Contains(c.Name, table);
        Assert.Contains("compile+validate linear N=4", table);
        var persistence = CompareHarness.PersistenceTable(results);
        Assert.Contains("| memory | serial (linear) | 4 |", persistence);
        Assert.DoesNotContain("| — |", persistence.Split('\n').Single(l => l.StartsWith("| memory", StringComparison.Ordinal)));
        var b7 = CompareHarness.Targets(results).Split('\n').Single(l => l.StartsWith("| B7 ≤ 10 µs per retry round", StringComparison.Ordinal));
        // Measured at N = 4, not at the target's N = 1,000: shown, not judged.
        Assert.Contains("at N = 4 | judged at N = 1,000 only", b7);
        Assert.DoesNotContain("met", b7);
    }

    [Fact]
    public async Task Harness_runs_cases_that_leave_work_in_other_processes_last_and_reports_in_the_order_asked()
    {
        var cases = new[] { BenchCase.Persisted(4, BenchBackend.SqliteWal), BenchCase.Linear(4), BenchCase.Persisted(4, BenchBackend.Memory), BenchCase.FailLast(4) };
        Assert.Equal([cases[1], cases[2], cases[3], cases[0]], CompareHarness.RunOrder(cases));

        var log = new StringWriter();
        var results = await new CompareHarness(quick: true, log).RunAsync(cases, withAnchor: false);
        Assert.Equal(cases, results.Select(r => r.Case));
        var measured = log.ToString().Split('\n').Where(l => l.Contains("measured", StringComparison.Ordinal)).ToList();
        Assert.Contains(cases[0].Name, measured[^1]);
    }

    [Theory]
    [InlineData(0.002, "met")]
    [InlineData(0.020, "NOT met")]
    public void Targets_judge_B7_at_the_size_the_target_is_set_at(double runSeconds, string verdict)
    {
        var c = BenchCase.Retry(CompareHarness.TargetSize);
        var result = new CaseResult(c, 1, runSeconds, 0, runSeconds, 0, 0, null, null);
        var b7 = CompareHarness.Targets([result]).Split('\n').Single(l => l.StartsWith("| B7 ≤ 10 µs per retry round", StringComparison.Ordinal));
        Assert.EndsWith($"| {verdict} |", b7.TrimEnd());
    }

    [Fact]
    public async Task Harness_measures_delayed_fan_outs_against_the_same_waits_without_an_engine()
    {
        var cases = new[] { BenchCase.FanOut(4, 2, 2, exactTimer: true), BenchCase.FanOut(4, 2, -1) };
        var results = await new CompareHarness(quick: true, new StringWriter()).RunAsync(cases, withAnchor: false);
        // Four waits of 2 ms, two at a time, cannot take less than two rounds.
        Assert.True(results[0].NoEngineSeconds >= 0.004, $"no-engine baseline {results[0].NoEngineSeconds} s");
        Assert.NotNull(results[1].NoEngineSeconds);
        var targets = CompareHarness.Targets(results);
        Assert.Contains("B3 10 ms (Task.Delay), unbounded", targets);
    }

    [Theory]
    [InlineData(new[] { 3.0, 1.0, 2.0 }, 2.0)]
    [InlineData(new[] { 4.0, 1.0, 3.0, 2.0 }, 2.5)]
    public void Median_is_the_middle_value(double[] values, double expected) => Assert.Equal(expected, CompareHarness.Median(values));
}
