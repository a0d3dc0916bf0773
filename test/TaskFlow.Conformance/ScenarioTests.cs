using Xunit;

namespace TaskFlow.Conformance;

/// <summary>Every scenario of the corpus as its own test case, on the local engines and on the distributed engine.</summary>
public sealed class ScenarioTests
{
    public static TheoryData<string> Scenarios()
    {
        var data = new TheoryData<string>();
        foreach (var file in AllFiles()) data.Add(file);
        return data;
    }

    /// <summary>The RabbitMQ subset: at least 30 scenarios, spread over every area.</summary>
    public static TheoryData<string> RabbitMqSubset()
    {
        var data = new TheoryData<string>();
        foreach (var file in ScenarioSubset.Spread(AllFiles(), 36)) data.Add(file);
        return data;
    }

    private static List<string> AllFiles() =>
        [.. new[] { "scenarios", "extra", "generated" }.SelectMany(folder =>
            Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, folder), "*.json").Order(StringComparer.Ordinal)
                .Select(f => Path.Combine(folder, Path.GetFileName(f))))];

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Scenario_MatchesTaskFlow(string file)
    {
        var result = ScenarioRunner.RunFile(Path.Combine(AppContext.BaseDirectory, file));
        Assert.True(result.Passed, result.Difference);
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Scenario_MatchesTaskFlow_OnDistributedEngineInMemory(string file)
    {
        var result = ScenarioRunner.RunFile(Path.Combine(AppContext.BaseDirectory, file), ScenarioRunner.Persistence.None, EngineMode.DistributedInMemory);
        Assert.True(result.Passed, result.Difference);
    }

    [Theory]
    [MemberData(nameof(RabbitMqSubset))]
    public async Task Scenario_MatchesTaskFlow_OnDistributedEngineOverRabbitMq(string file)
    {
        // No server on a developer machine: nothing to run against (under CI=true, Uri throws instead).
        if (RabbitMqConnection.Uri is null) return;
        await using var rabbit = await RabbitMqConnection.OpenAsync();
        var result = ScenarioRunner.RunFile(Path.Combine(AppContext.BaseDirectory, file), ScenarioRunner.Persistence.None, EngineMode.Distributed("distributed-rabbitmq", rabbit.Transport));
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
