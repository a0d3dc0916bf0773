using System.Text.Json;
using TaskFlow.Cli.Tests.Infrastructure;
using TaskFlow.Persistence;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Cli.Tests.Books;

/// <summary>taskflow books list|show|delete against SQLite files left by real runs of the samples.</summary>
public sealed class BooksCommandTests(SampleDatabases databases) : IClassFixture<SampleDatabases>
{
    private static async Task<IReadOnlyList<FlowDetail>> SavedFlowDetails(string database)
    {
        await using var backend = new SqlitePersistenceBackend($"Data Source={database}");
        var all = new List<FlowDetail>();
        foreach (var book in await backend.ListLogBooksAsync()) all.AddRange(await backend.ListFlowDetailsAsync(book.Id));
        return all;
    }

    [Fact]
    public async Task Show_ResumeAfterCrashDatabase_ShowsEveryAtomWithItsStateAndResult()
    {
        var saved = Assert.Single(await SavedFlowDetails(databases.ResumeAfterCrash));

        var result = await CliRunner.RunAsync("books", "show", "--db", databases.ResumeAfterCrash);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"Flow detail {saved.Id}: {saved.Name}, SUCCESS", result.Output, StringComparison.Ordinal);
        Assert.Equal(4, saved.Atoms.Count);
        var lines = result.Output.Split('\n');
        foreach (var atom in saved.Atoms.Cast<TaskDetail>())
        {
            var row = Assert.Single(lines, l => l.StartsWith($"| {atom.Name} ", StringComparison.Ordinal));
            Assert.Equal(AtomState.Success, atom.State);
            Assert.Contains("| SUCCESS ", row, StringComparison.Ordinal);
            Assert.Contains($"| {JsonSerializer.Serialize(atom.Result!.Value, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping })} ", row, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Show_FailedRun_ShowsTheFailureTypeMessageAndStack()
    {
        var saved = Assert.Single(await SavedFlowDetails(databases.CreateVolume));
        var failed = Assert.Single(saved.Atoms.OfType<TaskDetail>(), a => a.Failure is not null);

        var result = await CliRunner.RunAsync("books", "show", saved.Id.ToString()[..23], "--db", databases.CreateVolume);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"Flow detail {saved.Id}: create-volume, REVERTED", result.Output, StringComparison.Ordinal);
        var row = Assert.Single(result.Output.Split('\n'), l => l.StartsWith($"| {failed.Name} ", StringComparison.Ordinal));
        Assert.Contains($"IOException: {failed.Failure!.Message}", row, StringComparison.Ordinal);
        Assert.Contains($"{failed.Name} failed: System.IO.IOException: {failed.Failure.Message}", result.Output, StringComparison.Ordinal);
        Assert.Contains("at CreateBackendVolume.ExecuteAsync", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task List_ShowsEachLogbookWithItsFlowDetails()
    {
        var saved = Assert.Single(await SavedFlowDetails(databases.ResumeAfterCrash));

        var result = await CliRunner.RunAsync("books", "list", "--db", databases.ResumeAfterCrash);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith($"SQLite {databases.ResumeAfterCrash}: 1 logbook, 1 flow detail", result.Output, StringComparison.Ordinal);
        var row = Assert.Single(result.Output.Split('\n'), l => l.Contains(saved.Id.ToString(), StringComparison.Ordinal));
        Assert.Contains($"| {saved.LogBookId} ", row, StringComparison.Ordinal);
        Assert.Contains("| publish-report ", row, StringComparison.Ordinal);
        Assert.Contains("| SUCCESS ", row, StringComparison.Ordinal);
        Assert.Contains($"| {saved.Atoms.Count} ", row, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ListJson_HasLogBooksWithFlowDetailSummaries()
    {
        var saved = Assert.Single(await SavedFlowDetails(databases.ResumeAfterCrash));

        var result = await CliRunner.RunAsync("books", "list", "--json", "--db", databases.ResumeAfterCrash);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(result.Output);
        Assert.Equal($"SQLite {databases.ResumeAfterCrash}", json.RootElement.GetProperty("store").GetString());
        var book = Assert.Single(json.RootElement.GetProperty("logBooks").EnumerateArray());
        Assert.Equal(saved.LogBookId, book.GetProperty("id").GetGuid());
        Assert.Equal(JsonValueKind.String, book.GetProperty("name").ValueKind);
        var flow = Assert.Single(book.GetProperty("flowDetails").EnumerateArray());
        Assert.Equal(saved.Id, flow.GetProperty("id").GetGuid());
        Assert.Equal(saved.Name, flow.GetProperty("name").GetString());
        Assert.Equal("SUCCESS", flow.GetProperty("state").GetString());
        Assert.Equal(saved.Atoms.Count, flow.GetProperty("atomCount").GetInt32());
        Assert.Equal(saved.UpdatedAt, flow.GetProperty("updatedAt").GetDateTimeOffset());
    }

    [Fact]
    public async Task ShowJson_HasEveryAtomWithTheSavedResultsAndFailures()
    {
        var saved = Assert.Single(await SavedFlowDetails(databases.CreateVolume));

        var result = await CliRunner.RunAsync("books", "show", saved.Id.ToString(), "--json", "--db", databases.CreateVolume);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(result.Output);
        var flow = Assert.Single(json.RootElement.GetProperty("flowDetails").EnumerateArray());
        Assert.Equal(saved.Id, flow.GetProperty("id").GetGuid());
        Assert.Equal(saved.LogBookId, flow.GetProperty("logBookId").GetGuid());
        Assert.Equal(saved.State.ToTaskFlowName(), flow.GetProperty("state").GetString());
        Assert.True(JsonElement.DeepEquals(saved.Metadata["store"], flow.GetProperty("metadata").GetProperty("store")));
        var atoms = flow.GetProperty("atoms").EnumerateArray().ToList();
        Assert.Equal(saved.Atoms.Select(a => a.Name), atoms.Select(a => a.GetProperty("name").GetString()));
        foreach (var (atom, node) in saved.Atoms.Cast<TaskDetail>().Zip(atoms))
        {
            Assert.Equal(atom.Id, node.GetProperty("id").GetGuid());
            Assert.Equal("task", node.GetProperty("kind").GetString());
            Assert.Equal(atom.State.ToTaskFlowName(), node.GetProperty("state").GetString());
            Assert.Equal(atom.Intention.ToTaskFlowName(), node.GetProperty("intention").GetString());
            if (atom.Result is { } value) Assert.True(JsonElement.DeepEquals(value, node.GetProperty("result")), atom.Name);
            else Assert.False(node.TryGetProperty("result", out _), $"{atom.Name} has no result, yet the JSON has one");
            if (atom.Failure is { } failure)
            {
                var f = node.GetProperty("failure");
                Assert.Equal(failure.ExceptionTypeName, f.GetProperty("type").GetString());
                Assert.Equal(failure.ExceptionTypeNames, f.GetProperty("types").EnumerateArray().Select(t => t.GetString()));
                Assert.Equal(failure.Message, f.GetProperty("message").GetString());
                Assert.Equal(failure.StackTrace, f.GetProperty("stackTrace").GetString());
            }
            else Assert.Equal(JsonValueKind.Null, node.GetProperty("failure").ValueKind);
        }
    }

    [Fact]
    public async Task Delete_FlowDetailThenLogBook_RemovesThemFromTheStore()
    {
        using var dir = new TemporaryDirectory();
        var database = databases.CopyOf(databases.ResumeAfterCrash, dir);
        var saved = Assert.Single(await SavedFlowDetails(database));

        var deleteFlow = await CliRunner.RunAsync("books", "delete", saved.Id.ToString(), "--db", database);
        Assert.True(deleteFlow.ExitCode == 0, deleteFlow.ToString());
        Assert.Contains($"Deleted flow detail {saved.Id} (publish-report)", deleteFlow.Output, StringComparison.Ordinal);
        Assert.Empty(await SavedFlowDetails(database));

        var deleteBook = await CliRunner.RunAsync("books", "delete", saved.LogBookId.ToString(), "--db", database);
        Assert.True(deleteBook.ExitCode == 0, deleteBook.ToString());
        Assert.Contains($"Deleted logbook {saved.LogBookId}", deleteBook.Output, StringComparison.Ordinal);
        await using var backend = new SqlitePersistenceBackend($"Data Source={database}");
        Assert.Empty(await backend.ListLogBooksAsync());

        var again = await CliRunner.RunAsync("books", "delete", saved.LogBookId.ToString(), "--db", database);
        Assert.Equal(ExitCodes.NotFound, again.ExitCode);
        Assert.Equal($"error: No logbook or flow detail has the id '{saved.LogBookId}'.", again.Error.Split('\n')[0]);
        Assert.StartsWith("hint: ", again.Error.Split('\n')[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Show_MissingDatabaseFile_IsNotFoundWithoutCreatingIt()
    {
        using var dir = new TemporaryDirectory();
        var missing = dir.File("nothing-here.db");

        var result = await CliRunner.RunAsync("books", "show", "--db", missing);

        Assert.Equal(ExitCodes.NotFound, result.ExitCode);
        Assert.Equal("", result.Output);
        Assert.StartsWith($"error: There is no SQLite database at '{missing}'.", result.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(missing));
    }

    [Fact]
    public async Task List_OnAnotherApplicationsSqliteFile_RefusesIt_AndLeavesItByteForByte()
    {
        using var dir = new TemporaryDirectory();
        var foreign = dir.ForeignSqliteFile("customers.db");
        var before = await File.ReadAllBytesAsync(foreign);

        foreach (var args in new[] { new[] { "books", "list", "--db", foreign }, ["books", "show", "--db", foreign], ["books", "delete", "0123abcd", "--db", foreign] })
        {
            var result = await CliRunner.RunAsync(args);

            Assert.True(result.ExitCode == ExitCodes.StoreError, result.ToString());
            Assert.Contains("is not a TaskFlow store", result.Error, StringComparison.Ordinal);
            Assert.Contains("customers", result.Error, StringComparison.Ordinal);
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();

        Assert.Equal(before, await File.ReadAllBytesAsync(foreign));
        Assert.Equal([foreign], Directory.GetFiles(dir.Path));
    }

    [Fact]
    public async Task List_OnATypoedPath_CreatesNothing()
    {
        using var dir = new TemporaryDirectory();
        foreach (var typo in new[] { dir.File("runs.dbb"), dir.File("nested/runs.db"), dir.File("store-dir") + "/" })
        {
            var result = await CliRunner.RunAsync("books", "list", "--db", typo);

            Assert.Equal(ExitCodes.NotFound, result.ExitCode);
        }
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public async Task List_ReadsADirectoryStore_WithoutAddingAFile()
    {
        using var dir = new TemporaryDirectory();
        var storePath = dir.File("store");
        await using (var backend = new DirectoryPersistenceBackend(storePath))
        {
            var book = LogBook.Create("book");
            await backend.SaveLogBookAsync(book);
            await backend.SaveFlowDetailAsync(FlowDetail.Create(book.Id, "billing"));
        }
        File.Delete(Path.Combine(storePath, ".lock"));
        var before = Directory.GetFileSystemEntries(storePath, "*", SearchOption.AllDirectories).Order().ToArray();

        var result = await CliRunner.RunAsync("books", "list", "--db", storePath);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("billing", result.Output, StringComparison.Ordinal);
        Assert.Equal(before, Directory.GetFileSystemEntries(storePath, "*", SearchOption.AllDirectories).Order().ToArray());
    }

    [Fact]
    public async Task List_TakesTheStoreFromAFileOrTheEnvironment_AndWarnsOfAPasswordOnTheCommandLine()
    {
        using var dir = new TemporaryDirectory();
        var copy = databases.CopyOf(databases.ResumeAfterCrash, dir);
        var file = dir.File("db.txt");
        await File.WriteAllTextAsync(file, "# the store\n" + copy + "\n");

        var fromFile = await CliRunner.RunAsync("books", "list", "--db-file", file);
        Assert.True(fromFile.ExitCode == 0, fromFile.ToString());
        Assert.Contains("logbook", fromFile.Output, StringComparison.OrdinalIgnoreCase);

        var none = await CliRunner.RunAsync("books", "list");
        if (Environment.GetEnvironmentVariable(CommonOptionsVariable) is null)
        {
            Assert.Equal(ExitCodes.Usage, none.ExitCode);
            Assert.Contains("No store given", none.Error, StringComparison.Ordinal);
        }

        var withPassword = await CliRunner.RunAsync("books", "list", "--db", $"Data Source={copy};Password=s3cr3t-pw");
        Assert.Contains("warning: --db holds a password on the command line", withPassword.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cr3t-pw", withPassword.All, StringComparison.Ordinal);
    }

    private const string CommonOptionsVariable = "TASKFLOW_DB";

    [Theory]
    [InlineData("xyz")]
    [InlineData("12")]
    public async Task Show_MalformedId_IsAUsageError(string id)
    {
        var result = await CliRunner.RunAsync("books", "show", id, "--db", databases.ResumeAfterCrash);

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.StartsWith($"error: '{id}' is not an id", result.Error, StringComparison.Ordinal);
    }
}
