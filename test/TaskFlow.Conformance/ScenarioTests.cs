using Xunit;

namespace TaskFlow.Conformance;

/// <summary>Every scenario of the corpus as its own test case.</summary>
public sealed class ScenarioTests
{
    public static TheoryData<string> Scenarios()
    {
        var data = new TheoryData<string>();
        foreach (var folder in new[] { "scenarios", "extra" })
            foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, folder), "*.json").Order(StringComparer.Ordinal))
                data.Add(Path.Combine(folder, Path.GetFileName(f)));
        return data;
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Scenario_MatchesTaskFlow(string file)
    {
        var result = ScenarioRunner.RunFile(Path.Combine(AppContext.BaseDirectory, file));
        Assert.True(result.Passed, result.Difference);
    }

    /// <summary>The same runs saved to SQLite as they run: same outcome, and what was saved is what the run holds.</summary>
    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Scenario_MatchesTaskFlow_WhenPersistedToSqlite(string file)
    {
        var result = ScenarioRunner.RunFile(Path.Combine(AppContext.BaseDirectory, file), ScenarioRunner.Persistence.Sqlite);
        Assert.True(result.Passed, result.Difference);
    }
}
