using System.Diagnostics;
using System.Xml.Linq;
using TaskFlow.Cli.Tests.Infrastructure;
using TaskFlow.Diagrams;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.Tests.Diagrams;

namespace TaskFlow.Cli.Tests.Diagrams;

/// <summary>taskflow graph: Mermaid that the grammar accepts, DOT, SVG through Graphviz, and a saved run's states.</summary>
public sealed class GraphCommandTests
{
    private static Task<CliResult> Graph(params string[] args) => CliRunner.RunAsync(["graph", "--assembly", Repo.FlowsDll, .. args]);

    [Theory]
    [InlineData("Calculator.Create", new[] { "add", "multiply" })]
    [InlineData("Publishing.Create", new[] { "retry_twice", "fetch", "resize", "thumbnail", "publish" })]
    public async Task Mermaid_IsAcceptedByTheGrammarAndNamesEveryAtom(string factory, string[] atoms)
    {
        var result = await Graph("--factory", factory);

        Assert.True(result.ExitCode == 0, result.ToString());
        MermaidSyntax.Check(result.Output);
        foreach (var atom in atoms) Assert.Contains($"\"{atom}\"", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mermaid_HasOneArrowPerEdgeOfTheFlow()
    {
        var flow = FlowInfo.FromFlow(TaskFlow.Cli.Tests.Flows.Publishing.Create());

        var result = await Graph("--factory", "Publishing.Create", "--format", "mermaid");

        Assert.Equal(flow.Edges.Count, result.Output.Split('\n').Count(l => l.Contains(" --> ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task FlowDetail_ColoursTheAtomsByTheirSavedStates()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");
        var run = await CliRunner.RunAsync("run", "--assembly", Repo.FlowsDll, "--factory", "Calculator.Create", "--store", "x=1", "--store", "y=2", "--db", database);
        Assert.True(run.ExitCode == 0, run.ToString());
        Guid id;
        await using (var backend = new SqlitePersistenceBackend($"Data Source={database}"))
            id = Assert.Single(await backend.ListFlowDetailsAsync(Assert.Single(await backend.ListLogBooksAsync()).Id)).Id;

        var mermaid = await Graph("--factory", "Calculator.Create", "--flow-detail", id.ToString()[..8], "--db", database);
        var dot = await Graph("--factory", "Calculator.Create", "--format", "dot", "--flow-detail", id.ToString(), "--db", database);

        Assert.True(mermaid.ExitCode == 0, mermaid.ToString());
        MermaidSyntax.Check(mermaid.Output);
        Assert.Contains("classDef success ", mermaid.Output, StringComparison.Ordinal);
        Assert.Contains("SUCCESS", mermaid.Output, StringComparison.Ordinal);
        Assert.True(dot.ExitCode == 0, dot.ToString());
        Assert.StartsWith("digraph \"calculate\" {", dot.Output, StringComparison.Ordinal);
        Assert.Contains("SUCCESS", dot.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FlowDetail_WithoutDb_IsAUsageError()
    {
        var result = await Graph("--factory", "Calculator.Create", "--flow-detail", Guid.NewGuid().ToString());

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.StartsWith("error: --flow-detail needs --db", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FlowDetail_OfAnotherFlow_IsRefused()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");
        Assert.Equal(0, (await CliRunner.RunAsync("run", "--assembly", Repo.FlowsDll, "--factory", "Calculator.Create", "--store", "x=1", "--store", "y=2", "--db", database)).ExitCode);
        Guid id;
        await using (var backend = new SqlitePersistenceBackend($"Data Source={database}"))
            id = Assert.Single(await backend.ListFlowDetailsAsync(Assert.Single(await backend.ListLogBooksAsync()).Id)).Id;

        var result = await Graph("--factory", "Publishing.Create", "--flow-detail", id.ToString(), "--db", database);

        Assert.Equal(ExitCodes.InvalidFlow, result.ExitCode);
        Assert.Contains("has atoms that flow 'publish-image' does not: add, multiply", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Svg_IsDrawnByGraphvizWhenInstalled()
    {
        if (TaskFlow.Cli.Diagrams.Graphviz.FindDot() is null) return; // the next test covers a machine without Graphviz
        var result = await Graph("--factory", "Publishing.Create", "--format", "svg");

        Assert.True(result.ExitCode == 0, result.ToString());
        var svg = XDocument.Parse(result.Output);
        Assert.Equal("svg", svg.Root!.Name.LocalName);
        Assert.Contains("thumbnail", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Svg_WithoutGraphviz_SaysSoWithItsOwnExitCode()
    {
        using var emptyPath = new TemporaryDirectory();
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? Process.GetCurrentProcess().MainModule!.FileName;
        var psi = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "TaskFlow.Cli.dll"), "graph", "--assembly", Repo.FlowsDll, "--factory", "Calculator.Create", "--format", "svg" })
            psi.ArgumentList.Add(a);
        psi.Environment["PATH"] = emptyPath.Path;

        var result = await Processes.RunAsync(psi);

        Assert.Equal(ExitCodes.MissingTool, result.ExitCode);
        Assert.Equal("", result.Output);
        Assert.StartsWith("error: Graphviz's 'dot' is not installed", result.Error, StringComparison.Ordinal);
        Assert.Contains("hint: Install Graphviz", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownFormat_IsAUsageErrorOnOneLine()
    {
        var result = await Graph("--factory", "Calculator.Create", "--format", "png");

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Contains("png", lines[0], StringComparison.Ordinal);
    }
}
