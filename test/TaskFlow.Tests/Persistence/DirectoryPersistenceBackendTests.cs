using System.Text;
using TaskFlow.Persistence;
using TaskFlow.States;
using TaskFlow.TestUtilities;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.Tests.Persistence;

public sealed class DirectoryPersistenceBackendTests : DurablePersistenceBackendContract
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "taskflow-dir-tests", Guid.NewGuid().ToString("N"));

    protected override int SupportedSchemaVersion => DirectoryPersistenceBackend.SchemaVersion;

    protected override Task<IPersistenceBackend?> CreateBackendAsync(TimeProvider clock) =>
        Task.FromResult<IPersistenceBackend?>(Open(clock));

    protected override IPersistenceBackend Reopen(TimeProvider clock) => Open(clock);

    private DirectoryPersistenceBackend Open(TimeProvider clock, int maxDocumentBytes = PersistenceJson.DefaultMaxDocumentBytes) =>
        new(new DirectoryPersistenceOptions { Path = _dir, TimeProvider = clock, MaxDocumentBytes = maxDocumentBytes });

    protected override Task WriteSchemaVersionAsync(int version) =>
        File.WriteAllTextAsync(Path.Combine(_dir, "schema.json"), $"{{\"version\":{version}}}");

    // Version 2 only added the owners directory.
    protected override Task DowngradeToSchemaVersion1Async()
    {
        Directory.Delete(Path.Combine(_dir, "owners"), recursive: true);
        return WriteSchemaVersionAsync(1);
    }

    protected override IPersistenceBackend ReopenReadOnly(TimeProvider clock) =>
        new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = _dir, TimeProvider = clock, ReadOnly = true });

    [Fact]
    public async Task ReadOnly_CreatesNoFile_NotEvenTheLock_AndRefusesADirectoryThatIsNotAStore()
    {
        var (flow, _) = await SavedFlowFileAsync();
        File.Delete(Path.Combine(_dir, ".lock"));
        var before = Directory.GetFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Order().ToArray();
        await using (var reader = ReopenReadOnly(Clock))
            Assert.NotNull(await reader.GetFlowDetailAsync(flow.Id));
        Assert.Equal(before, Directory.GetFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Order().ToArray());

        var typo = _dir + "-typo";
        await using (var reader = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = typo, ReadOnly = true }))
            Assert.Contains("does not exist", (await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync())).Message);
        Assert.False(Directory.Exists(typo));

        var other = Path.Combine(_dir, "logbooks");
        await using (var reader = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = other, ReadOnly = true }))
            Assert.Contains("is not a TaskFlow store", (await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync())).Message);
        Assert.Equal(before, Directory.GetFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Order().ToArray());
    }

    protected override Task DestroyStoreAsync()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    private async Task<(FlowDetail Flow, string Path)> SavedFlowFileAsync()
    {
        var book = LogBook.Create("book", Clock);
        await Backend!.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "billing", Clock) with { Atoms = [TaskDetail.Create("charge").WithSuccess(Json("""{"amount":"1.00"}"""))] };
        await Backend.SaveFlowDetailAsync(flow);
        var path = Path.Combine(_dir, "flows", book.Id.ToString("D"), flow.Id.ToString("D") + ".json");
        Assert.True(File.Exists(path), $"expected the flow detail at {path}");
        return (flow, path);
    }

    [Fact]
    public async Task GetFlowDetailAsync_TruncatedFile_ThrowsPersistenceExceptionNamingThePath()
    {
        var (flow, path) = await SavedFlowFileAsync();
        var bytes = await File.ReadAllBytesAsync(path);
        await File.WriteAllBytesAsync(path, bytes[..(bytes.Length / 2)]);

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));

        Assert.Contains(path, ex.Message);
        Assert.Contains("not valid JSON", ex.Message);
        // Writes that need the file fail the same way instead of overwriting it with a guess.
        await Assert.ThrowsAsync<PersistenceException>(() => Backend!.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create("x")]));
        Assert.Equal(bytes[..(bytes.Length / 2)], await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task GetFlowDetailAsync_HandEditedAtomState_NamesTheAtomTheFlowAndThePath()
    {
        var (flow, path) = await SavedFlowFileAsync();
        var text = await File.ReadAllTextAsync(path);
        Assert.Contains("\"state\":\"SUCCESS\"", text);
        await File.WriteAllTextAsync(path, text.Replace("\"state\":\"SUCCESS\"", "\"state\":\"DONE\""));

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));

        Assert.Contains("atom 'charge'", ex.Message);
        Assert.Contains("flow detail 'billing'", ex.Message);
        Assert.Contains("'DONE'", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public async Task GetFlowDetailAsync_FileLargerThanTheLimit_IsRefusedNamingThePath()
    {
        var (flow, path) = await SavedFlowFileAsync();
        await using var small = Open(Clock, maxDocumentBytes: 64);

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => small.GetFlowDetailAsync(flow.Id));

        Assert.Contains(path, ex.Message);
        Assert.Contains("MaxDocumentBytes", ex.Message);
    }

    [Fact]
    public async Task GetLogBookAsync_FileCopiedUnderAnotherId_IsRefused()
    {
        var book = LogBook.Create("book", Clock);
        await Backend!.SaveLogBookAsync(book);
        var other = Guid.NewGuid();
        var copy = Path.Combine(_dir, "logbooks", other.ToString("D") + ".json");
        File.Copy(Path.Combine(_dir, "logbooks", book.Id.ToString("D") + ".json"), copy);

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend.GetLogBookAsync(other));

        Assert.Contains(copy, ex.Message);
    }

    [Fact]
    public async Task Writes_LeaveNoTemporaryFiles_AndLeftoversFromACrashAreIgnoredThenRemoved()
    {
        var (flow, path) = await SavedFlowFileAsync();
        for (var i = 0; i < 5; i++)
            await Backend!.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create($"t{i}")]);
        Assert.Empty(Directory.EnumerateFiles(_dir, "*.tmp", SearchOption.AllDirectories));

        // A crash between writing and renaming leaves a temporary file: readers never see it.
        var leftover = path + ".deadbeef.tmp";
        await File.WriteAllTextAsync(leftover, "{\"half\":");
        Assert.Equal(6, (await Backend!.GetFlowDetailAsync(flow.Id))!.Atoms.Count);

        await using var reopened = Reopen(Clock);
        await reopened.EnsureSchemaAsync();
        Assert.False(File.Exists(leftover));
    }

    [Fact]
    public async Task WriterHoldingTheLockFile_MakesAnotherInstanceWaitThenFailWithAClearMessage()
    {
        await Backend!.EnsureSchemaAsync();
        await using var impatient = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = _dir, LockTimeout = TimeSpan.FromMilliseconds(200) });
        await impatient.EnsureSchemaAsync();
        var lockPath = Path.Combine(_dir, ".lock");

        using (new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var ex = await Assert.ThrowsAsync<PersistenceException>(() => impatient.SaveLogBookAsync(LogBook.Create("b", Clock)));
            Assert.Contains(lockPath, ex.Message);
        }

        await impatient.SaveLogBookAsync(LogBook.Create("b", Clock));
        Assert.Single(await impatient.ListLogBooksAsync());
    }

    [Fact]
    public async Task SchemaMarker_Malformed_IsReportedWithItsPath()
    {
        await Backend!.EnsureSchemaAsync();
        var marker = Path.Combine(_dir, "schema.json");
        await File.WriteAllTextAsync(marker, "{\"version\":");

        await using var reopened = Reopen(Clock);
        var ex = await Assert.ThrowsAsync<PersistenceException>(() => reopened.EnsureSchemaAsync());
        Assert.Contains(marker, ex.Message);
    }

    [Fact]
    public async Task StoredFiles_AreReadableJsonWithTaskFlowStateNames()
    {
        var (flow, path) = await SavedFlowFileAsync();
        await Backend!.SaveAtomDetailsAsync(flow.Id, [((TaskDetail)flow.Atoms[0]).WithFailure(SimpleFailure("x")).WithRevertFailure(SimpleFailure("y"))]);

        var text = Encoding.UTF8.GetString(await File.ReadAllBytesAsync(path));

        Assert.Contains("\"state\":\"REVERT_FAILURE\"", text);
        Assert.Contains("\"logbook_id\":\"" + flow.LogBookId.ToString("D") + "\"", text);
        Assert.DoesNotContain("$type", text);
        Assert.Equal(FlowState.Pending, (await Backend.GetFlowDetailAsync(flow.Id))!.State);
    }
}
