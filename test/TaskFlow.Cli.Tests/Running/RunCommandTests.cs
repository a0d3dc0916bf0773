using TaskFlow.Cli.Tests.Infrastructure;
using TaskFlow.Persistence;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Cli.Tests.Running;

/// <summary>taskflow run: loading a factory from an assembly, store values, persistence, and every error path's exit code.</summary>
public sealed class RunCommandTests
{
    private static Task<CliResult> Run(params string[] args) => CliRunner.RunAsync(["run", "--assembly", Repo.FlowsDll, .. args]);

    private static string Row(CliResult result, string atom) =>
        Assert.Single(result.Output.Split('\n'), l => l.StartsWith($"| {atom} ", StringComparison.Ordinal));

    [Theory]
    [InlineData("TaskFlow.Cli.Tests.Flows.Calculator.Create", 2, 5)]
    [InlineData("Calculator.CreateAsync", -3, 7)]
    public async Task Run_WithStoreValues_RunsTheFlowAndSummarisesEachAtom(string factory, int x, int y)
    {
        var result = await Run("--factory", factory, "--store", $"x={x}", "--store", $"y={y}");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Error);
        Assert.StartsWith("Running flow 'calculate' (serial engine)", result.Output, StringComparison.Ordinal);
        Assert.Contains("  add RUNNING\n  add SUCCESS\n  multiply RUNNING\n  multiply SUCCESS\n", result.Output, StringComparison.Ordinal);
        Assert.Contains($"| SUCCESS | {x + y} ", Row(result, "add"), StringComparison.Ordinal);
        Assert.Contains($"| SUCCESS | {(x + y) * y} ", Row(result, "multiply"), StringComparison.Ordinal);
        Assert.EndsWith("Flow 'calculate' SUCCESS\n", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ParallelGraphWithRetry_Succeeds()
    {
        var result = await Run("--factory", "Publishing.Create", "--store", "url=https://example.test/cat.png", "--parallel", "2");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith("Running flow 'publish-image' (parallel engine, up to 2 at once)", result.Output, StringComparison.Ordinal);
        foreach (var atom in new[] { "retry_twice", "fetch", "resize", "thumbnail", "publish" })
            Assert.Contains("| SUCCESS ", Row(result, atom), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_WithDb_SavesTheRunAndBooksShowFindsIt()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");

        var result = await Run("--factory", "Calculator.Create", "--store", "x=4", "--store", "y=3", "--db", database);

        Assert.True(result.ExitCode == 0, result.ToString());
        await using var backend = new SqlitePersistenceBackend($"Data Source={database}");
        var book = Assert.Single(await backend.ListLogBooksAsync());
        var saved = Assert.Single(await backend.ListFlowDetailsAsync(book.Id));
        Assert.Contains($"saved as flow detail {saved.Id} in SQLite {database}", result.Output, StringComparison.Ordinal);
        Assert.Equal(FlowState.Success, saved.State);
        Assert.Equal((4 + 3) * 3, ((TaskDetail)saved.FindAtom("multiply")!).Result!.Value.GetInt32());

        var show = await CliRunner.RunAsync("books", "show", saved.Id.ToString(), "--db", database);
        Assert.True(show.ExitCode == 0, show.ToString());
        Assert.Contains($"| {(4 + 3) * 3} ", Row(show, "multiply"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_PersistedRetry_BooksShowsTheRetryWithItsHistory()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");
        var run = await Run("--factory", "Publishing.Create", "--store", "url=https://example.test/a.png", "--db", database);
        Assert.True(run.ExitCode == 0, run.ToString());
        await using var backend = new SqlitePersistenceBackend($"Data Source={database}");
        var saved = Assert.Single(await backend.ListFlowDetailsAsync(Assert.Single(await backend.ListLogBooksAsync()).Id));
        var retry = Assert.IsType<RetryDetail>(saved.FindAtom("retry_twice"));

        var show = await CliRunner.RunAsync("books", "show", "--db", database);
        var json = await CliRunner.RunAsync("books", "show", "--json", "--db", database);

        Assert.Contains($"| retry | SUCCESS | EXECUTE   | {retry.History.Count} attempt", Row(show, "retry_twice"), StringComparison.Ordinal);
        using var document = System.Text.Json.JsonDocument.Parse(json.Output);
        var node = document.RootElement.GetProperty("flowDetails")[0].GetProperty("atoms").EnumerateArray()
            .Single(a => a.GetProperty("name").GetString() == "retry_twice");
        Assert.Equal("retry", node.GetProperty("kind").GetString());
        var history = node.GetProperty("history").EnumerateArray().ToList();
        Assert.Equal(retry.History.Count, history.Count);
        Assert.True(System.Text.Json.JsonElement.DeepEquals(retry.History[0].Value!.Value, history[0].GetProperty("value")));
        Assert.False(node.TryGetProperty("result", out _));
    }

    [Fact]
    public async Task Run_ResumeOfAFinishedRun_RunsNothingAgain()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");
        var first = await Run("--factory", "Calculator.Create", "--store", "x=1", "--store", "y=2", "--db", database);
        Assert.True(first.ExitCode == 0, first.ToString());
        await using var backend = new SqlitePersistenceBackend($"Data Source={database}");
        var saved = Assert.Single(await backend.ListFlowDetailsAsync(Assert.Single(await backend.ListLogBooksAsync()).Id));

        var resumed = await Run("--factory", "Calculator.Create", "--db", database, "--resume", saved.Id.ToString());

        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.DoesNotContain(" RUNNING", resumed.Output, StringComparison.Ordinal);
        Assert.Contains($"| SUCCESS | {(1 + 2) * 2} ", Row(resumed, "multiply"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ResumeTakesTheStartOfAnId_AsBooksDoes()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");
        Assert.Equal(0, (await Run("--factory", "Calculator.Create", "--store", "x=1", "--store", "y=2", "--db", database)).ExitCode);
        await using var backend = new SqlitePersistenceBackend($"Data Source={database}");
        var saved = Assert.Single(await backend.ListFlowDetailsAsync(Assert.Single(await backend.ListLogBooksAsync()).Id));

        var resumed = await Run("--factory", "Calculator.Create", "--db", database, "--resume", saved.Id.ToString()[..13]);

        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Contains($"saved as flow detail {saved.Id}", resumed.Output, StringComparison.Ordinal);
        var malformed = await Run("--factory", "Calculator.Create", "--db", database, "--resume", "not-an-id");
        Assert.Equal(ExitCodes.Usage, malformed.ExitCode);
        Assert.DoesNotContain("System.Nullable", malformed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_OnAnotherApplicationsSqliteFile_IsRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TemporaryDirectory();
        var foreign = dir.ForeignSqliteFile("customers.db");
        var before = await File.ReadAllBytesAsync(foreign);

        var result = await Run("--factory", "Calculator.Create", "--store", "x=1", "--store", "y=2", "--db", foreign);

        Assert.Equal(ExitCodes.StoreError, result.ExitCode);
        Assert.Contains("is not a TaskFlow store", result.Error, StringComparison.Ordinal);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Assert.Equal(before, await File.ReadAllBytesAsync(foreign));
    }

    [Fact]
    public async Task Run_FailingFlow_RevertsAndExitsWithFlowFailed()
    {
        var result = await Run("--factory", "Failing.Create", "--store", "passenger=ada");

        Assert.Equal(ExitCodes.FlowFailed, result.ExitCode);
        Assert.Contains("  charge FAILURE\n", result.Output, StringComparison.Ordinal);
        Assert.Contains("| REVERTED ", Row(result, "reserve"), StringComparison.Ordinal);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["error: Flow 'book-trip' REVERTED: InvalidOperationException: card declined for seat for ada", "hint: Run with --verbose for the stack."], lines);
    }

    [Fact]
    public async Task Run_MissingInput_IsAnInvalidFlowNamingTheInput()
    {
        var result = await Run("--factory", "Calculator.Create", "--store", "x=1");

        Assert.Equal(ExitCodes.InvalidFlow, result.ExitCode);
        Assert.Contains("'y'", result.Error.Split('\n')[0], StringComparison.Ordinal);
        Assert.Equal("hint: Give the missing inputs with --store name=value.", result.Error.Split('\n')[1]);
    }

    [Theory]
    [InlineData("Nope.Create", ExitCodes.NotFound, "error: There is no type 'Nope' in TaskFlow.Cli.Tests.Flows.")]
    [InlineData("Calculator.Nope", ExitCodes.NotFound, "error: Type TaskFlow.Cli.Tests.Flows.Calculator has no public static method 'Nope'.")]
    [InlineData("Broken.NotAFlow", ExitCodes.InvalidFlow, "error: TaskFlow.Cli.Tests.Flows.Broken.NotAFlow must take no arguments and return a Flow (or Task<Flow>).")]
    [InlineData("Broken.WithArguments", ExitCodes.InvalidFlow, "error: TaskFlow.Cli.Tests.Flows.Broken.WithArguments must take no arguments and return a Flow (or Task<Flow>).")]
    [InlineData("Broken.Throws", ExitCodes.InvalidFlow, "error: The factory Broken.Throws threw InvalidOperationException: the factory's configuration is missing")]
    [InlineData("NoDot", ExitCodes.Usage, "error: --factory 'NoDot' is not of the form Type.Method.")]
    public async Task Run_BadFactory_IsOneErrorLineAndAHint(string factory, int exitCode, string error)
    {
        var result = await Run("--factory", factory);

        Assert.Equal(exitCode, result.ExitCode);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Equal(error, lines[0]);
        Assert.StartsWith("hint: ", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_UnknownFactory_HintListsTheFactoriesThere()
    {
        var result = await Run("--factory", "Calculator.Nope");

        Assert.Contains("TaskFlow.Cli.Tests.Flows.Calculator.Create", result.Error.Split('\n')[1], StringComparison.Ordinal);
        Assert.Contains("TaskFlow.Cli.Tests.Flows.Failing.Create", result.Error.Split('\n')[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_DuplicateAtomNames_IsAnInvalidFlow()
    {
        var result = await Run("--factory", "Broken.DuplicateNames");

        Assert.Equal(ExitCodes.InvalidFlow, result.ExitCode);
        Assert.StartsWith("error: Flow 'duplicates' is not valid: ", result.Error, StringComparison.Ordinal);
        Assert.Contains("same", result.Error.Split('\n')[0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_Verbose_PrintsTheStackAfterTheErrorLine()
    {
        var result = await Run("--factory", "Broken.Throws", "--verbose");

        Assert.Equal(ExitCodes.InvalidFlow, result.ExitCode);
        Assert.Contains("System.InvalidOperationException: the factory's configuration is missing", result.Error, StringComparison.Ordinal);
        Assert.Contains("at TaskFlow.Cli.Tests.Flows.Broken.Throws()", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_MissingAssembly_IsNotFound()
    {
        using var dir = new TemporaryDirectory();
        var result = await CliRunner.RunAsync("run", "--assembly", dir.File("Missing.dll"), "--factory", "A.B");

        Assert.Equal(ExitCodes.NotFound, result.ExitCode);
        Assert.StartsWith($"error: There is no assembly at '{dir.File("Missing.dll")}'.", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ResumeWithoutDb_IsAUsageError()
    {
        var result = await Run("--factory", "Calculator.Create", "--resume", Guid.NewGuid().ToString());

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.StartsWith("error: --resume needs --db", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ResumeOfAnUnknownFlowDetail_IsNotFound()
    {
        using var dir = new TemporaryDirectory();
        var database = dir.File("runs.db");
        Assert.Equal(0, (await Run("--factory", "Calculator.Create", "--store", "x=1", "--store", "y=1", "--db", database)).ExitCode);
        var unknown = Guid.NewGuid();

        var result = await Run("--factory", "Calculator.Create", "--db", database, "--resume", unknown.ToString());

        Assert.Equal(ExitCodes.NotFound, result.ExitCode);
        Assert.StartsWith($"error: SQLite {database} has no flow detail {unknown} to resume.", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--store", "novalue")]
    [InlineData("--parallel", "0")]
    [InlineData("--parallel", "many")]
    [InlineData("--no-such-option", "1")]
    public async Task Run_BadOption_IsAUsageError(string option, string value)
    {
        var result = await Run("--factory", "Calculator.Create", option, value);

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.StartsWith("error: ", result.Error, StringComparison.Ordinal);
        Assert.Contains("\nhint: ", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tool_AsAProcess_ExitsWithTheDocumentedCodes()
    {
        var ok = await CliRunner.RunProcessAsync("run", "--assembly", Repo.FlowsDll, "--factory", "Calculator.Create", "--store", "x=2", "--store", "y=2");
        Assert.True(ok.ExitCode == ExitCodes.Success, ok.ToString());
        Assert.Contains($"| SUCCESS | {(2 + 2) * 2} ", Row(ok, "multiply"), StringComparison.Ordinal);

        var failed = await CliRunner.RunProcessAsync("run", "--assembly", Repo.FlowsDll, "--factory", "Failing.Create", "--store", "passenger=bo");
        Assert.Equal(ExitCodes.FlowFailed, failed.ExitCode);

        var usage = await CliRunner.RunProcessAsync("books", "list");
        Assert.Equal(ExitCodes.Usage, usage.ExitCode);
        Assert.Contains("--db", usage.Error, StringComparison.Ordinal);
    }
}
