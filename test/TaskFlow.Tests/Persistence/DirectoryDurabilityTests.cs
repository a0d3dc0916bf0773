using TaskFlow.Persistence;

namespace TaskFlow.Tests.Persistence;

/// <summary>
/// The directory backend's durability steps, seen through its directory-sync seam: which directories are synced
/// when, and what a failing open or fsync turns into. (Running as root, a chmod cannot make a directory
/// unopenable, so failures are injected at the system-call boundary instead.)
/// </summary>
public sealed class DirectoryDurabilityTests : IDisposable
{
    private const int EIO = 5;
    private const int EACCES = 13;
    private const int EINVAL = 22;

    private readonly string _parent = Path.Combine(Path.GetTempPath(), "taskflow-dir-durability", Guid.NewGuid().ToString("N"));

    private string Root => Path.Combine(_parent, "store");

    public void Dispose()
    {
        if (Directory.Exists(_parent)) Directory.Delete(_parent, recursive: true);
    }

    /// <summary>Records every directory synced, in order; fails the calls a test chooses.</summary>
    private sealed class ScriptedSync : DirectorySync
    {
        private readonly List<string> _synced = [];

        public Func<string, int> OpenError { get; set; } = _ => 0;

        public Func<string, int> SyncError { get; set; } = _ => 0;

        public IReadOnlyList<string> Synced { get { lock (_synced) return [.. _synced]; } }

        private readonly Dictionary<int, string> _open = [];
        private int _next = 1000;

        protected override int Open(string directory, out int fd)
        {
            fd = -1;
            if (OpenError(directory) is var e and not 0) return e;
            // The directory must exist, as for the real open.
            if (!Directory.Exists(directory)) return 2;
            lock (_open) { fd = _next++; _open[fd] = directory; }
            return 0;
        }

        protected override int Sync(int fd)
        {
            string dir;
            lock (_open) dir = _open[fd];
            if (SyncError(dir) is var e and not 0) return e;
            lock (_synced) _synced.Add(Path.TrimEndingDirectorySeparator(dir));
            return 0;
        }

        protected override void Close(int fd)
        {
            lock (_open) _open.Remove(fd);
        }
    }

    private DirectoryPersistenceBackend Open(DirectorySync sync) => new(new DirectoryPersistenceOptions { Path = Root }, sync);

    [Fact]
    public async Task ANewStore_SyncsEveryDirectoryItCreates_AndTheParentOfEach()
    {
        var sync = new ScriptedSync();
        await using var backend = Open(sync);
        var book = LogBook.Create("book");
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "flow") with { Atoms = [TaskDetail.Create("a")] };
        var before = sync.Synced.Count;
        await backend.SaveFlowDetailAsync(flow);

        var bookDir = Path.Combine(Root, "flows", book.Id.ToString("D"));
        string[] created = [_parent, Root, Path.Combine(Root, "logbooks"), Path.Combine(Root, "flows"), bookDir];
        foreach (var dir in created)
        {
            Assert.Contains(dir, sync.Synced);
            Assert.Contains(Path.GetDirectoryName(dir)!, sync.Synced);
        }
        // The flow's first save: its logbook's new directory is made durable in 'flows' before the file is renamed
        // into it, and the directory is synced again after the rename.
        var flowSyncs = sync.Synced.Skip(before).ToList();
        Assert.Equal([bookDir, Path.Combine(Root, "flows"), bookDir], flowSyncs);
    }

    [Fact]
    public async Task EverySave_SyncsTheDirectoryOfTheFileItReplaced()
    {
        var sync = new ScriptedSync();
        await using var backend = Open(sync);
        var book = LogBook.Create("book");
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "flow") with { Atoms = [TaskDetail.Create("a")] };
        await backend.SaveFlowDetailAsync(flow);
        var bookDir = Path.Combine(Root, "flows", book.Id.ToString("D"));

        var before = sync.Synced.Count;
        await backend.SaveAtomDetailsAsync(flow.Id, [((TaskDetail)flow.Atoms[0]).WithSuccess(null)]);
        await backend.UpdateFlowStateAsync(flow.Id, States.FlowState.Success);
        await backend.SaveLogBookAsync(book with { Name = "renamed" });

        Assert.Equal([bookDir, bookDir, Path.Combine(Root, "logbooks")], sync.Synced.Skip(before));
    }

    [Fact]
    public async Task DirectoryThatCannotBeOpened_FailsTheSave_NamingTheDirectoryAndTheStep()
    {
        var sync = new ScriptedSync();
        await using var backend = Open(sync);
        var book = LogBook.Create("book");
        await backend.SaveLogBookAsync(book);
        var bookDir = Path.Combine(Root, "flows", book.Id.ToString("D"));
        sync.OpenError = dir => dir == bookDir ? EACCES : 0;

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveFlowDetailAsync(FlowDetail.Create(book.Id, "flow")));

        Assert.Contains($"Could not open the directory '{bookDir}' to fsync it", ex.Message);
        Assert.Contains($"creating the directory '{bookDir}'", ex.Message);
        Assert.Contains("errno 13", ex.Message);
    }

    [Fact]
    public async Task FailedFsyncAfterARename_FailsTheSave_SayingTheChangeMayNotBeDurable()
    {
        var sync = new ScriptedSync();
        await using var backend = Open(sync);
        await backend.EnsureSchemaAsync();
        var logBooks = Path.Combine(Root, "logbooks");
        sync.SyncError = dir => Path.TrimEndingDirectorySeparator(dir) == logBooks ? EIO : 0;
        var book = LogBook.Create("book");

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveLogBookAsync(book));

        Assert.Contains($"fsync of the directory '{logBooks}' failed", ex.Message);
        Assert.Contains("renaming the new '" + Path.Combine(logBooks, book.Id.ToString("D") + ".json") + "' into place", ex.Message);
        Assert.Contains("errno 5", ex.Message);
        Assert.Contains("may not survive a power loss", ex.Message);
    }

    [Fact]
    public async Task FileSystemThatCannotSyncDirectories_EINVAL_IsNotAnError()
    {
        var sync = new ScriptedSync { SyncError = _ => EINVAL };
        await using var backend = Open(sync);
        var book = LogBook.Create("book");

        await backend.SaveLogBookAsync(book);

        Assert.Equal("book", (await backend.GetLogBookAsync(book.Id))!.Name);
    }

    [Fact]
    public async Task RenameThatFails_IsAPersistenceExceptionNamingTheFile_AndLeavesNoTemporaryFile()
    {
        await using var backend = new DirectoryPersistenceBackend(Root);
        var book = LogBook.Create("book");
        await backend.EnsureSchemaAsync();
        // A directory where the logbook's file should be: the rename over it fails.
        var target = Path.Combine(Root, "logbooks", book.Id.ToString("D") + ".json");
        Directory.CreateDirectory(Path.Combine(target, "occupied"));

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveLogBookAsync(book));

        Assert.Contains($"Could not save '{target}'", ex.Message);
        Assert.Contains("renaming", ex.Message);
        Assert.Empty(Directory.EnumerateFiles(Root, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task RealSystemCalls_SyncWithoutErrors()
    {
        // The production seam on this machine's file system: every save returns, nothing is reported.
        await using var backend = new DirectoryPersistenceBackend(Root);
        var book = LogBook.Create("book");
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "flow") with { Atoms = [TaskDetail.Create("a")] };
        await backend.SaveFlowDetailAsync(flow);
        Assert.True(await backend.DeleteLogBookAsync(book.Id));
        Assert.Empty(await backend.ListLogBooksAsync());
    }
}
