using System.Text.Json;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.TestUtilities;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.Persistence.PostgreSql.Tests;

public sealed class PostgreSqlPersistenceBackendTests : DurablePersistenceBackendContract
{
    private readonly string _schema = PostgresTestServer.NewSchemaName();
    private string? _connectionString;

    protected override int SupportedSchemaVersion => PostgreSqlPersistenceBackend.SchemaVersion;

    protected override Task<IPersistenceBackend?> CreateBackendAsync(TimeProvider clock)
    {
        _connectionString = PostgresTestServer.ConnectionString;
        return Task.FromResult(_connectionString is null ? null : (IPersistenceBackend?)Reopen(clock));
    }

    protected override IPersistenceBackend Reopen(TimeProvider clock) =>
        new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = _connectionString!, Schema = _schema, TimeProvider = clock });

    protected override Task WriteSchemaVersionAsync(int version) =>
        PostgresTestServer.ExecuteAsync(_connectionString!, $"UPDATE \"{_schema}\".schema_version SET version = @v", ("v", version));

    // Version 2 only added flow_owners: without it, and marked 1, the schema is exactly what version 1 created.
    protected override async Task DowngradeToSchemaVersion1Async()
    {
        await PostgresTestServer.ExecuteAsync(_connectionString!, $"DROP TABLE \"{_schema}\".flow_owners");
        await WriteSchemaVersionAsync(1);
    }

    protected override IPersistenceBackend ReopenReadOnly(TimeProvider clock) =>
        new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = _connectionString!, Schema = _schema, TimeProvider = clock, ReadOnly = true });

    [Fact]
    public async Task ReadOnly_OnASchemaWithoutTaskFlowsTables_RefusesIt_AndRunsNoDdl()
    {
        if (PostgresTestServer.ConnectionString is not { } cs) return;
        var absent = PostgresTestServer.NewSchemaName();
        var foreign = PostgresTestServer.NewSchemaName();
        await PostgresTestServer.ExecuteAsync(cs, $"CREATE SCHEMA \"{foreign}\"; CREATE TABLE \"{foreign}\".customers (id int)");
        try
        {
            foreach (var schema in new[] { absent, foreign })
            {
                await using var reader = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = cs, Schema = schema, ReadOnly = true });
                var ex = await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync());
                Assert.Contains("is not a TaskFlow store", ex.Message);
                Assert.Contains(schema, ex.Message);
            }
            Assert.Equal(0L, await PostgresTestServer.ScalarAsync<long>(cs, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = @s", ("s", absent)));
            Assert.Equal(1L, await PostgresTestServer.ScalarAsync<long>(cs, "SELECT count(*) FROM information_schema.tables WHERE table_schema = @s", ("s", foreign)));
        }
        finally
        {
            await PostgresTestServer.DropSchemaAsync(cs, foreign);
            await PostgresTestServer.DropSchemaAsync(cs, absent);
        }
    }

    protected override Task DestroyStoreAsync() =>
        _connectionString is null ? Task.CompletedTask : PostgresTestServer.DropSchemaAsync(_connectionString, _schema);

    // A stale owner's save that has read the owner row but not committed yet, when the next owner takes over: the take-over
    // must wait for it (the owner row is read FOR SHARE), or the save would commit after the new owner read the flow detail.
    // The flow row is held by another transaction so the save stops right there, deterministically.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public Task StaleSaveInFlight_WhenTheNextOwnerTakesOver_LandsBeforeItsReadOrNotAtAll(bool checkedTransaction) => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var (stale, flow, _) = await OwnedFlowAsync(backend, new FencingToken("old", 1), x);
        await using var blocker = new Npgsql.NpgsqlConnection(_connectionString);
        await blocker.OpenAsync();
        var hold = await blocker.BeginTransactionAsync();
        await using (var lockRow = new Npgsql.NpgsqlCommand($"SELECT 1 FROM \"{_schema}\".flow_details WHERE id = @f FOR UPDATE", blocker, hold))
        {
            lockRow.Parameters.AddWithValue("f", flow.Id);
            await lockRow.ExecuteNonQueryAsync();
        }

        // The one-statement save of known atoms, or a save that is a transaction of several statements.
        var done = x.WithSuccess(Json("\"stale\""));
        var save = Task.Run(() => checkedTransaction ? stale.SaveFlowDetailAsync(flow with { Atoms = [done] }) : stale.SaveAtomDetailsAsync(flow.Id, [done]));
        await Task.Delay(300);
        var takeOver = Task.Run(async () =>
        {
            await Fenced(backend).TakeOwnershipAsync(flow.Id, new FencingToken("new", 2));
            return (await backend.GetFlowDetailAsync(flow.Id))!;
        });
        await Task.Delay(300);
        await hold.CommitAsync();
        var seen = await takeOver.WaitAsync(TimeSpan.FromSeconds(30));
        try { await save.WaitAsync(TimeSpan.FromSeconds(30)); }
        catch (StaleOwnerException) { }

        AssertSameFlow(seen, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task SaveAtomDetailsAsync_StringWithNul_IsRejectedAndNothingIsSaved() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "f", Clock) with { Atoms = [TaskDetail.Create("a")] };
        await backend.SaveFlowDetailAsync(flow);

        var nul = TaskDetail.Create("nul").WithSuccess(JsonSerializer.SerializeToElement("a\0b"));
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => backend.SaveAtomDetailsAsync(flow.Id, [flow.Atoms[0] with { State = States.AtomState.Running }, nul]));

        Assert.Contains("\\u0000", ex.Message);
        AssertSameFlow(flow, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Theory]
    [InlineData("Host=h", 32, 2)]
    [InlineData("Host=h;Max Auto Prepare=0", 0, 2)]
    [InlineData("Host=h;maxautoprepare=5;Auto Prepare Min Usages=7", 5, 7)]
    [InlineData("Host=h;AUTOPREPAREMINUSAGES=3", 32, 3)]
    public void AutoPrepare_IsOnByDefault_AndTheConnectionStringDecides(string connectionString, int maxAutoPrepare, int minUsages)
    {
        // Npgsql's own builder reads every keyword as present, so the defaults must look at what the string says.
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        PostgreSqlPersistenceBackend.ApplyAutoPrepareDefaults(builder, connectionString);
        Assert.Equal(maxAutoPrepare, builder.MaxAutoPrepare);
        Assert.Equal(minUsages, builder.AutoPrepareMinUsages);
    }

    [Theory]
    [InlineData("Host=h", "-c idle_in_transaction_session_timeout=10000")]
    [InlineData("Host=h;Options=-c search_path=x", "-c search_path=x -c idle_in_transaction_session_timeout=10000")]
    [InlineData("Host=h;Options=-c idle_in_transaction_session_timeout=0", "-c idle_in_transaction_session_timeout=0")]
    public void IdleInTransactionTimeout_IsSetUnlessTheConnectionStringSetsIt(string connectionString, string options)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        PostgreSqlPersistenceBackend.ApplySessionDefaults(builder);
        Assert.Equal(options, builder.Options);
    }

    /// <summary>A backend on this test's schema whose connections carry an application name of their own, to find them on the server.</summary>
    private PostgreSqlPersistenceBackend Tagged(string applicationName) =>
        new(new PostgreSqlPersistenceOptions { ConnectionString = $"{_connectionString};Application Name={applicationName}", Schema = _schema, TimeProvider = Clock });

    private async Task<long> ServerConnectionsAsync(string applicationName)
    {
        await using var connection = new Npgsql.NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var cmd = new Npgsql.NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE application_name = @a", connection);
        cmd.Parameters.AddWithValue("a", applicationName);
        return (long)(await cmd.ExecuteScalarAsync())!;
    }

    [Fact]
    public Task DisposeAsync_ClosesEveryConnection() => RunAsync(async _ =>
    {
        var name = "tf-close-" + Guid.NewGuid().ToString("N")[..12];
        var backend = Tagged(name);
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "f", Clock) with { Atoms = [TaskDetail.Create("a")] };
        await backend.SaveFlowDetailAsync(flow);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => (Task)backend.GetFlowDetailAsync(flow.Id)).Append(backend.ListLogBooksAsync()));
        Assert.True(await ServerConnectionsAsync(name) > 0);

        await backend.DisposeAsync();

        // The server notices a closed connection asynchronously; wait for it rather than for a fixed time.
        var remaining = await ServerConnectionsAsync(name);
        for (var i = 0; i < 100 && remaining > 0; i++)
        {
            await Task.Delay(50);
            remaining = await ServerConnectionsAsync(name);
        }
        Assert.Equal(0, remaining);
    });

    [Fact]
    public Task ConnectionsEndedByTheServer_FailOneCallClearly_AndTheNextOneWorks() => RunAsync(async _ =>
    {
        var name = "tf-kill-" + Guid.NewGuid().ToString("N")[..12];
        await using var backend = Tagged(name);
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var a = TaskDetail.Create("a");
        var flow = FlowDetail.Create(book.Id, "f", Clock) with { Atoms = [a] };
        await backend.SaveFlowDetailAsync(flow);
        await backend.SaveAtomDetailsAsync(flow.Id, [a with { State = States.AtomState.Running }]);

        // As a server restart would: every connection of this backend is ended under it.
        await PostgresTestServer.ExecuteAsync(_connectionString!, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = @a", ("a", name));
        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1"))]));
        Assert.Contains(_schema, ex.Message);
        Assert.Contains("could not save 1 atom(s)", ex.Message);

        await backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("2"))]);
        AssertSameAtom(a.WithSuccess(Json("2")), (await backend.GetFlowDetailAsync(flow.Id))!.Atoms[0]);
    });

    [Fact]
    public Task Tables_UseJsonbColumns() => RunAsync(async backend =>
    {
        await using var connection = new Npgsql.NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var cmd = new Npgsql.NpgsqlCommand(
            "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = @s AND data_type = 'jsonb' ORDER BY 1", connection);
        cmd.Parameters.AddWithValue("s", _schema);
        var columns = new List<string>();
        await using (var reader = await cmd.ExecuteReaderAsync())
            while (await reader.ReadAsync()) columns.Add(reader.GetString(0));

        Assert.Equal(["atom_details.data", "flow_details.meta", "logbooks.meta"], columns);
    });

    [Fact]
    public Task GetFlowDetailAsync_AtomDocumentWithWrongShape_NamesTheAtomAndTheFlow() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "billing", Clock) with { Atoms = [TaskDetail.Create("charge")] };
        await backend.SaveFlowDetailAsync(flow);
        await PostgresTestServer.ExecuteAsync(_connectionString!, $"UPDATE \"{_schema}\".atom_details SET data = jsonb_set(data, '{{state}}', '\"LOST\"')");

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.GetFlowDetailAsync(flow.Id));

        Assert.Contains($"atom 'charge' ({flow.Atoms[0].Id})", ex.Message);
        Assert.Contains($"flow detail 'billing' ({flow.Id})", ex.Message);
        Assert.Contains("'LOST'", ex.Message);
        Assert.Contains(_schema, ex.Message);
    });
}

/// <summary>Tests that need no server, or deliberately a wrong one.</summary>
public sealed class PostgreSqlPersistenceOptionsTests
{
    [Fact]
    public void ToString_NeverShowsThePassword()
    {
        var options = new PostgreSqlPersistenceOptions { ConnectionString = "Host=db;Username=app;Password=s3cr3t-pw;Database=app" };

        Assert.DoesNotContain("s3cr3t-pw", options.ToString());
        Assert.Contains("Host=db", options.ToString());
        Assert.DoesNotContain("s3cr3t-pw", new PostgreSqlPersistenceBackend(options).ToString());
    }

    [Theory]
    [InlineData("Public")]
    [InlineData("x; DROP TABLE y")]
    [InlineData("1abc")]
    [InlineData("")]
    public void Constructor_UnsafeSchemaName_IsRefused(string schema)
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = "Host=db", Schema = schema }));
        Assert.Contains("schema name", ex.Message);
    }

    [Fact]
    public async Task UnreachableServer_FailsWithAMessageWithoutThePassword()
    {
        // Port 9 (discard) on loopback: nothing listens there.
        await using var backend = new PostgreSqlPersistenceBackend(
            "Host=127.0.0.1;Port=9;Username=app;Password=s3cr3t-pw;Database=app;Timeout=2");

        var ex = await Assert.ThrowsAnyAsync<Exception>(() => backend.ListLogBooksAsync());

        for (Exception? e = ex; e is not null; e = e.InnerException)
            Assert.DoesNotContain("s3cr3t-pw", e.ToString());
        Assert.IsType<PersistenceException>(ex);
    }

    [Fact]
    public async Task WrongPassword_OnTheRealServer_FailsWithAMessageWithoutThePassword()
    {
        var real = PostgresTestServer.ConnectionString;
        if (real is null) return; // no server: the contract tests above report it (and fail under CI=true)
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(real) { Password = "wr0ng-s3cr3t" };
        await using var backend = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = builder.ConnectionString, Schema = PostgresTestServer.NewSchemaName() });

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.ListLogBooksAsync());

        for (Exception? e = ex; e is not null; e = e.InnerException)
            Assert.DoesNotContain("wr0ng-s3cr3t", e.ToString());
    }

    [Fact]
    public async Task PersistedRun_WhenTheServerRefusesTheLogin_FailsBeforeRunningAnyTaskWithoutThePassword()
    {
        var real = PostgresTestServer.ConnectionString;
        if (real is null) return;
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(real) { Password = "wr0ng-s3cr3t" };
        await using var backend = new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = builder.ConnectionString, Schema = PostgresTestServer.NewSchemaName() });
        int runs = 0;
        var flow = new TaskFlow.Flows.LinearFlow("f") { TaskFlow.Atoms.FlowTask.Create("a", () => ++runs) };
        var engine = TaskFlow.Engines.FlowEngine.CreateSerial(flow, new TaskFlow.Engines.EngineOptions { Persistence = backend });

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => engine.RunAsync());

        Assert.Equal(0, runs);
        for (Exception? e = ex; e is not null; e = e.InnerException)
            Assert.DoesNotContain("wr0ng-s3cr3t", e.ToString());
    }
}
