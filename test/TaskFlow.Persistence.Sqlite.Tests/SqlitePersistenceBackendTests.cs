using Microsoft.Data.Sqlite;
using TaskFlow.Persistence;
using TaskFlow.Persistence.Sqlite;
using TaskFlow.TestUtilities;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.Persistence.Sqlite.Tests;

public sealed class SqlitePersistenceBackendTests : DurablePersistenceBackendContract
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "taskflow-sqlite-tests", Guid.NewGuid().ToString("N"));

    private string DbPath => Path.Combine(_dir, "taskflow.db");

    protected override int SupportedSchemaVersion => SqlitePersistenceBackend.SchemaVersion;

    protected override Task<IPersistenceBackend?> CreateBackendAsync(TimeProvider clock)
    {
        Directory.CreateDirectory(_dir);
        return Task.FromResult<IPersistenceBackend?>(Reopen(clock));
    }

    protected override IPersistenceBackend Reopen(TimeProvider clock) =>
        new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={DbPath}", TimeProvider = clock });

    protected override Task WriteSchemaVersionAsync(int version) =>
        ExecuteRawAsync("UPDATE schema_version SET version = $v", ("$v", version));

    // Version 2 only added flow_owners: without it, and marked 1, the database is exactly what version 1 created.
    protected override async Task DowngradeToSchemaVersion1Async()
    {
        SqliteConnection.ClearAllPools();
        await using (var connection = new SqliteConnection($"Data Source={DbPath};Pooling=False"))
        {
            await connection.OpenAsync();
            await using var cmd = connection.CreateCommand();
            cmd.CommandText = "DROP TABLE flow_owners";
            await cmd.ExecuteNonQueryAsync();
        }
        await WriteSchemaVersionAsync(1);
    }

    protected override IPersistenceBackend ReopenReadOnly(TimeProvider clock) =>
        new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={DbPath}", TimeProvider = clock, ReadOnly = true });

    [Fact]
    public async Task ReadOnly_OnAnotherApplicationsDatabase_RefusesIt_AndLeavesTheFileByteForByte()
    {
        var foreign = Path.Combine(_dir, "customers.db");
        using (var c = new SqliteConnection($"Data Source={foreign}"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('Ada'), ('Grace');";
            cmd.ExecuteNonQuery();
        }
        SqliteConnection.ClearAllPools();
        var before = await File.ReadAllBytesAsync(foreign);
        // Apart from the test's own store (whose -wal and -shm come and go with its connections).
        string[] Others() => [.. Directory.GetFiles(_dir).Where(f => !Path.GetFileName(f).StartsWith("taskflow.db", StringComparison.Ordinal)).Order()];
        var filesBefore = Others();

        await using (var reader = new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={foreign}", ReadOnly = true }))
        {
            var ex = await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync());
            Assert.Contains("is not a TaskFlow store", ex.Message);
            Assert.Contains("customers", ex.Message);
            Assert.Contains(foreign, ex.Message);
        }
        SqliteConnection.ClearAllPools();

        Assert.Equal(before, await File.ReadAllBytesAsync(foreign));
        Assert.Equal(filesBefore, Others());
    }

    [Fact]
    public async Task ReadOnly_OnAFileThatIsNotADatabase_OrNoFile_RefusesAndCreatesNothing()
    {
        var text = Path.Combine(_dir, "notes.txt");
        await File.WriteAllTextAsync(text, "root:x:0:0:root:/root:/bin/bash\n");
        var missing = Path.Combine(_dir, "typo.db");
        // Apart from the test's own store (whose -wal and -shm come and go with its connections).
        string[] Others() => [.. Directory.GetFiles(_dir).Where(f => !Path.GetFileName(f).StartsWith("taskflow.db", StringComparison.Ordinal)).Order()];
        var filesBefore = Others();

        await using (var reader = new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={text}", ReadOnly = true }))
        {
            var ex = await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync());
            Assert.Contains(text, ex.Message);
        }
        await using (var reader = new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={missing}", ReadOnly = true }))
            await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync());
        SqliteConnection.ClearAllPools();

        Assert.Equal("root:x:0:0:root:/root:/bin/bash\n", await File.ReadAllTextAsync(text));
        Assert.False(File.Exists(missing));
        Assert.Equal(filesBefore, Others());
    }

    protected override Task DestroyStoreAsync()
    {
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    /// <summary>Changes the database behind the backend's back, as a bad migration or a hand edit would.</summary>
    private async Task ExecuteRawAsync(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new SqliteConnection($"Data Source={DbPath};Pooling=False");
        await connection.OpenAsync();
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
        Assert.True(await cmd.ExecuteNonQueryAsync() > 0, $"no row changed by: {sql}");
    }

    private async Task<FlowDetail> SavedFlowAsync()
    {
        var book = LogBook.Create("book", Clock);
        await Backend!.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "billing", Clock) with
        {
            Atoms = [TaskDetail.Create("charge").WithSuccess(Json("""{"amount":"1.00"}""")), RetryDetail.Create("retry")],
        };
        await Backend.SaveFlowDetailAsync(flow);
        return flow;
    }

    [Fact]
    public async Task GetFlowDetailAsync_AtomRowWithInvalidJson_NamesTheAtomAndTheFlow()
    {
        var flow = await SavedFlowAsync();
        await ExecuteRawAsync("UPDATE atom_details SET data = '{\"kind\":\"task\",\"id\":' WHERE name = 'charge'");

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));

        Assert.Contains($"atom 'charge' ({flow.Atoms[0].Id})", ex.Message);
        Assert.Contains($"flow detail 'billing' ({flow.Id})", ex.Message);
        Assert.Contains(DbPath, ex.Message);
        Assert.Contains("not valid JSON", ex.Message);
    }

    [Fact]
    public async Task GetFlowDetailAsync_AtomRowWithWrongShape_NamesTheAtomAndTheProblem()
    {
        var flow = await SavedFlowAsync();
        await ExecuteRawAsync("UPDATE atom_details SET data = json_set(data, '$.history', 'oops') WHERE name = 'retry'");

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));

        Assert.Contains($"atom 'retry' ({flow.Atoms[1].Id}) of flow detail 'billing' ({flow.Id})", ex.Message);
        Assert.Contains("'history'", ex.Message);
        Assert.Contains(DbPath, ex.Message);
    }

    [Fact]
    public async Task GetFlowDetailAsync_AtomDocumentEditedToAnotherState_DisagreesWithItsRowAndIsRefused()
    {
        // A valid document with another state would otherwise load as a real atom (a SUCCESS edited to PENDING runs
        // again on resume); the state column every save writes beside it tells the edit apart.
        var flow = await SavedFlowAsync();
        await ExecuteRawAsync("UPDATE atom_details SET data = json_set(data, '$.state', 'PENDING') WHERE name = 'charge'");

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));

        Assert.Contains($"atom 'charge' ({flow.Atoms[0].Id})", ex.Message);
        Assert.Contains("its document task PENDING", ex.Message);
    }

    [Fact]
    public async Task GetFlowDetailAsync_FlowRowWithInvalidMetadataOrState_NamesTheFlow()
    {
        var flow = await SavedFlowAsync();
        await ExecuteRawAsync("UPDATE flow_details SET meta = '{not json' WHERE id = $id", ("$id", flow.Id.ToString("D")));

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));
        Assert.Contains($"flow detail 'billing' ({flow.Id})", ex.Message);

        await ExecuteRawAsync("UPDATE flow_details SET meta = '{}', state = 'FINISHED' WHERE id = $id", ("$id", flow.Id.ToString("D")));
        var state = await Assert.ThrowsAsync<PersistenceException>(() => Backend!.GetFlowDetailAsync(flow.Id));
        Assert.Contains("'FINISHED'", state.Message);
        Assert.Contains("flow detail 'billing'", state.Message);
    }

    [Fact]
    public async Task Database_UsesWalJournalAndForeignKeys()
    {
        await SavedFlowAsync();
        await using var connection = new SqliteConnection($"Data Source={DbPath};Pooling=False");
        await connection.OpenAsync();
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", (string?)await cmd.ExecuteScalarAsync());
        cmd.CommandText = "SELECT version FROM schema_version";
        Assert.Equal((long)SqlitePersistenceBackend.SchemaVersion, (long?)await cmd.ExecuteScalarAsync());
        cmd.CommandText = "SELECT count(*) FROM atom_details";
        Assert.Equal(2L, (long?)await cmd.ExecuteScalarAsync());
    }

    [Fact]
    public async Task DisposeAsync_ClosesEveryConnection_SoTheWalIsCheckpointedAndRemoved()
    {
        var path = Path.Combine(_dir, "closing.db");
        var backend = new SqlitePersistenceBackend($"Data Source={path}");
        var book = LogBook.Create("b", Clock);
        await backend.SaveLogBookAsync(book);
        var a = TaskDetail.Create("a");
        var flow = FlowDetail.Create(book.Id, "f", Clock) with { Atoms = [a] };
        await backend.SaveFlowDetailAsync(flow);
        // Reads next to each other and to a save, so more than one connection is kept open.
        await Task.WhenAll(
            backend.GetFlowDetailAsync(flow.Id),
            backend.ListLogBooksAsync(),
            backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1"))]));
        Assert.True(File.Exists(path + "-wal"), "the backend should be using a write-ahead log while open");

        await backend.DisposeAsync();

        // SQLite folds the log into the database and deletes it when the last connection to the file closes.
        Assert.False(File.Exists(path + "-wal"), "a connection to the database is still open after DisposeAsync");
    }

    [Fact]
    public async Task AfterADatabaseError_TheFailedCallIsReported_AndTheNextOneWorks()
    {
        var path = Path.Combine(_dir, "busy.db");
        await using var backend = new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = $"Data Source={path}", BusyTimeout = TimeSpan.Zero });
        var book = LogBook.Create("b", Clock);
        await backend.SaveLogBookAsync(book);
        var a = TaskDetail.Create("a");
        var flow = FlowDetail.Create(book.Id, "f", Clock) with { Atoms = [a] };
        await backend.SaveFlowDetailAsync(flow);
        await backend.SaveAtomDetailsAsync(flow.Id, [a with { State = States.AtomState.Running }]);

        await using (var holder = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            // Another writer holds the database's write lock, and the backend was told not to wait for it.
            await holder.OpenAsync();
            await using var tx = holder.BeginTransaction(deferred: false);
            var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1"))]));
            Assert.Contains(path, ex.Message);
            Assert.Contains("could not save 1 atom(s)", ex.Message);
        }

        await backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("2"))]);
        AssertSameAtom(a.WithSuccess(Json("2")), (await backend.GetFlowDetailAsync(flow.Id))!.Atoms[0]);
    }

    [Theory]
    [InlineData(SqliteDurability.FsyncEveryCommit)]
    [InlineData(SqliteDurability.WalNoFsync)]
    public async Task EitherDurability_StoresAndReopens(SqliteDurability durability)
    {
        var path = Path.Combine(_dir, $"{durability}.db");
        var options = new SqlitePersistenceOptions { ConnectionString = $"Data Source={path}", Durability = durability };
        var book = LogBook.Create("b", Clock);
        await using (var backend = new SqlitePersistenceBackend(options))
            await backend.SaveLogBookAsync(book);
        await using (var reopened = new SqlitePersistenceBackend(options))
            Assert.Equal(book, await reopened.GetLogBookAsync(book.Id));
    }

    [Theory]
    [InlineData("Data Source=:memory:")]
    [InlineData("Data Source=x;Mode=Memory;Cache=Shared")]
    [InlineData("")]
    public void Constructor_InMemoryOrEmptyDatabase_IsRefused(string connectionString)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => new SqlitePersistenceBackend(connectionString));
        Assert.NotEmpty(ex.Message);
    }

    [Fact]
    public void Options_ToString_HidesThePassword()
    {
        var options = new SqlitePersistenceOptions { ConnectionString = "Data Source=x.db;Password=hunter2" };
        Assert.DoesNotContain("hunter2", options.ToString());
        Assert.Contains("x.db", options.ToString());
    }

    [Fact]
    public async Task NonSqliteFile_IsReportedAsAPersistenceErrorNamingTheFile()
    {
        var path = Path.Combine(_dir, "not-a-db.db");
        await File.WriteAllTextAsync(path, new string('x', 4096));
        await using var backend = new SqlitePersistenceBackend($"Data Source={path}");

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.EnsureSchemaAsync());

        Assert.Contains(path, ex.Message);
    }

    [Theory]
    [InlineData(10)]
    [InlineData(10_000)]
    public async Task WalAutoCheckpointPages_bounds_the_write_ahead_log(int pages)
    {
        Directory.CreateDirectory(_dir);
        var path = Path.Combine(_dir, $"wal-{pages}.db");
        await using (var backend = new SqlitePersistenceBackend(new SqlitePersistenceOptions
        {
            ConnectionString = $"Data Source={path}",
            Durability = SqliteDurability.WalNoFsync,
            WalAutoCheckpointPages = pages,
        }))
        {
            var book = LogBook.Create("wal");
            await backend.SaveLogBookAsync(book);
            var atoms = Enumerable.Range(0, 200).Select(i => (AtomDetail)TaskDetail.Create($"t{i}")).ToList();
            var flow = FlowDetail.Create(book.Id, "wal") with { Atoms = atoms };
            await backend.SaveFlowDetailAsync(flow);
            var big = Json($"\"{new string('x', 3000)}\"");
            for (int i = 0; i < 400; i++)
                await backend.SaveAtomDetailsAsync(flow.Id, [((TaskDetail)atoms[i % 200]).WithSuccess(big)]);
            var walBytes = new FileInfo(path + "-wal").Length;
            // 400 commits of two or more pages: ~1,000 pages (4 MiB) unless checkpoints keep restarting the log.
            if (pages == 10) Assert.True(walBytes < 1_000_000, $"WAL {walBytes} bytes with checkpoints every {pages} pages");
            else Assert.True(walBytes > 2_000_000, $"WAL {walBytes} bytes with checkpoints every {pages} pages");
        }
    }

    [Fact]
    public void A_negative_WalAutoCheckpointPages_is_refused_by_name()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = "Data Source=x.db", WalAutoCheckpointPages = -1 }));
        Assert.Contains("WalAutoCheckpointPages", ex.Message);
    }
}
