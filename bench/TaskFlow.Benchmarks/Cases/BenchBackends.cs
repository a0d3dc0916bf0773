using Npgsql;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;

namespace TaskFlow.Benchmarks.Cases;

/// <summary>Where a benchmark run is persisted (B5).</summary>
public enum BenchBackend
{
    None,
    Memory,
    Directory,
    SqliteFsync,
    SqliteWal,
    PostgreSql,
}

/// <summary>
/// Creates persistence backends for benchmark runs and removes what they wrote: temporary files under the system temp
/// folder, and for PostgreSQL (from <c>TASKFLOW_POSTGRES</c>) a schema of this process's own, dropped on dispose.
/// </summary>
public sealed class BenchBackends : IAsyncDisposable
{
    public const string PostgresVariable = "TASKFLOW_POSTGRES";

    private readonly string _root = Path.Combine(Path.GetTempPath(), $"taskflow-bench-{Environment.ProcessId}-{Guid.NewGuid():N}");
    private readonly string _postgresSchema = $"bench_{Environment.ProcessId}_{Guid.NewGuid().ToString("N")[..8]}";
    private bool _postgresSchemaCreated;
    private int _counter;

    public static string? PostgresConnectionString => Environment.GetEnvironmentVariable(PostgresVariable) is { Length: > 0 } s ? s : null;

    public static bool IsAvailable(BenchBackend backend) => backend != BenchBackend.PostgreSql || PostgresConnectionString is not null;

    public static string Describe(BenchBackend backend) => backend switch
    {
        BenchBackend.None => "none",
        BenchBackend.Memory => "memory",
        BenchBackend.Directory => "directory",
        BenchBackend.SqliteFsync => "sqlite fsync",
        BenchBackend.SqliteWal => "sqlite wal-nofsync",
        BenchBackend.PostgreSql => "postgresql",
        _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown benchmark backend."),
    };

    /// <summary>A new, empty backend with its schema created (setup, not part of what is measured).</summary>
    public async Task<IPersistenceBackend?> CreateAsync(BenchBackend backend)
    {
        int id = Interlocked.Increment(ref _counter);
        IPersistenceBackend? created = backend switch
        {
            BenchBackend.None => null,
            BenchBackend.Memory => new InMemoryPersistenceBackend(),
            BenchBackend.Directory => new DirectoryPersistenceBackend(Directory.CreateDirectory(Path.Combine(_root, $"dir-{id}")).FullName),
            BenchBackend.SqliteFsync => Sqlite(id, SqliteDurability.FsyncEveryCommit),
            BenchBackend.SqliteWal => Sqlite(id, SqliteDurability.WalNoFsync),
            BenchBackend.PostgreSql => Postgres(),
            _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown benchmark backend."),
        };
        if (created is not null) await created.EnsureSchemaAsync().ConfigureAwait(false);
        return created;
    }

    private SqlitePersistenceBackend Sqlite(int id, SqliteDurability durability)
    {
        Directory.CreateDirectory(_root);
        return new SqlitePersistenceBackend(new SqlitePersistenceOptions
        {
            ConnectionString = $"Data Source={Path.Combine(_root, $"sqlite-{id}.db")}",
            Durability = durability,
        });
    }

    private PostgreSqlPersistenceBackend Postgres()
    {
        var connection = PostgresConnectionString
            ?? throw new InvalidOperationException($"The PostgreSQL benchmark needs {PostgresVariable} (run scripts/services.sh start postgres and export what it prints).");
        _postgresSchemaCreated = true;
        return new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = _postgresSchema });
    }

    public async ValueTask DisposeAsync()
    {
        if (_postgresSchemaCreated && PostgresConnectionString is { } connection)
        {
            await using var conn = new NpgsqlConnection(connection);
            await conn.OpenAsync().ConfigureAwait(false);
            await using var cmd = new NpgsqlCommand($"DROP SCHEMA IF EXISTS \"{_postgresSchema}\" CASCADE", conn);
            await cmd.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
        NpgsqlConnection.ClearAllPools();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }
}
