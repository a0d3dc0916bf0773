using System.Data.Common;
using System.Globalization;
using Microsoft.Data.Sqlite;
using TaskFlow.States;

namespace TaskFlow.Persistence.Sqlite;

/// <summary>
/// A persistence backend on a SQLite database file: the embedded default. WAL journal, foreign keys with cascading
/// deletes, one transaction per save (a flow detail with its atoms, or a batch of atoms), JSON documents in TEXT
/// columns, a <c>schema_version</c> table. Safe for many threads and several processes on one host (writers take
/// SQLite's write lock in turn, waiting up to <see cref="SqlitePersistenceOptions.BusyTimeout"/>). Fenced writes
/// (<see cref="TakeOwnershipAsync"/>) check the flow detail's owner row inside the write's transaction, which holds
/// the database's write lock.
/// </summary>
public sealed class SqlitePersistenceBackend : IFencedPersistenceBackend
{
    /// <summary>The schema version this code writes and the newest it reads (2: the <c>flow_owners</c> table).</summary>
    public const int SchemaVersion = 2;

    private readonly Store _store;

    /// <summary>Creates a backend on the database named by a connection string such as <c>Data Source=taskflow.db</c>.</summary>
    public SqlitePersistenceBackend(string connectionString)
        : this(new SqlitePersistenceOptions { ConnectionString = connectionString })
    {
    }

    /// <summary>Creates a backend with the given options.</summary>
    /// <exception cref="ArgumentException">The connection string is invalid or names an in-memory database.</exception>
    public SqlitePersistenceBackend(SqlitePersistenceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _store = new Store(options);
    }

    /// <summary>The database file's path as given in the connection string.</summary>
    public string DataSource => _store.DataSource;

    /// <inheritdoc />
    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => _store.EnsureSchemaAsync(cancellationToken);

    /// <inheritdoc />
    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) => _store.SaveLogBookAsync(logBook, cancellationToken);

    /// <inheritdoc />
    public Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => _store.GetLogBookAsync(logBookId, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default) => _store.ListLogBooksAsync(cancellationToken);

    /// <inheritdoc />
    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => _store.DeleteLogBookAsync(logBookId, cancellationToken);

    /// <inheritdoc />
    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) => _store.SaveFlowDetailAsync(flowDetail, cancellationToken);

    /// <inheritdoc />
    public Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => _store.GetFlowDetailAsync(flowDetailId, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default) => _store.ListFlowDetailsAsync(logBookId, cancellationToken);

    /// <inheritdoc />
    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => _store.DeleteFlowDetailAsync(flowDetailId, cancellationToken);

    /// <inheritdoc />
    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) => _store.UpdateFlowStateAsync(flowDetailId, state, cancellationToken);

    /// <inheritdoc />
    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        _store.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken);

    /// <inheritdoc />
    public Task ClearAllAsync(CancellationToken cancellationToken = default) => _store.ClearAllAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IPersistenceBackend> TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken = default) =>
        OwnedPersistence.TakeAsync(this, _store, flowDetailId, token, cancellationToken);

    /// <summary>Closes the connections to the database file.</summary>
    public ValueTask DisposeAsync()
    {
        _store.Dispose();
        return ValueTask.CompletedTask;
    }

    private sealed class Store : SqlStore
    {
        private static readonly string[] Migrations =
        [
            // Version 1.
            """
            CREATE TABLE logbooks (
                id TEXT NOT NULL PRIMARY KEY,
                name TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                meta TEXT NOT NULL);
            CREATE TABLE flow_details (
                id TEXT NOT NULL PRIMARY KEY,
                logbook_id TEXT NOT NULL REFERENCES logbooks (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                meta TEXT NOT NULL);
            CREATE INDEX ix_flow_details_logbook_id ON flow_details (logbook_id, created_at);
            CREATE TABLE atom_details (
                flow_detail_id TEXT NOT NULL REFERENCES flow_details (id) ON DELETE CASCADE,
                id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (flow_detail_id, id),
                UNIQUE (flow_detail_id, name));
            """,
            // Version 2: the owner of each flow detail, for fenced writes. No foreign key: the owner is stored before
            // the flow detail is created.
            """
            CREATE TABLE flow_owners (
                flow_detail_id TEXT NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                owner_epoch INTEGER NOT NULL CHECK (owner_epoch >= 1));
            """,
        ];

        private readonly string _connectionString;
        private readonly string _pragmas;
        private readonly bool _readOnly;

        public Store(SqlitePersistenceOptions options)
            : base(options.MaxDocumentBytes, options.TimeProvider, serializeWritesInProcess: true)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(options.ConnectionString, nameof(options.ConnectionString));
            if (options.BusyTimeout < TimeSpan.Zero)
                throw new ArgumentOutOfRangeException(nameof(options), options.BusyTimeout, "BusyTimeout must not be negative.");
            if (options.WalAutoCheckpointPages < 0)
                throw new ArgumentOutOfRangeException(nameof(options), options.WalAutoCheckpointPages, "WalAutoCheckpointPages must not be negative (0 turns automatic checkpoints off).");
            if (!Enum.IsDefined(options.Durability))
                throw new ArgumentOutOfRangeException(nameof(options), options.Durability, "Not a defined durability.");
            var builder = new SqliteConnectionStringBuilder(options.ConnectionString);
            if (string.IsNullOrEmpty(builder.DataSource) || builder.DataSource == ":memory:" || builder.Mode == SqliteOpenMode.Memory)
                throw new ArgumentException(
                    "The SQLite connection string names an in-memory database, which would vanish between operations; " +
                    "name a file (\"Data Source=taskflow.db\") or use InMemoryPersistenceBackend.", nameof(options));
            builder.Pooling = true;
            builder.ForeignKeys = true;
            // A connection string that says Mode=ReadOnly gets the read-only behaviour too, rather than a failed migration.
            _readOnly = options.ReadOnly || builder.Mode == SqliteOpenMode.ReadOnly;
            if (_readOnly) builder.Mode = SqliteOpenMode.ReadOnly;
            // The provider retries a busy statement until its command timeout, in whole seconds, where 0 means forever:
            // a BusyTimeout of zero must still end, so it waits at most the one second the provider can express.
            builder.DefaultTimeout = Math.Max(1, (int)Math.Ceiling(options.BusyTimeout.TotalSeconds));
            _connectionString = builder.ConnectionString;
            DataSource = builder.DataSource;
            var synchronous = options.Durability == SqliteDurability.FsyncEveryCommit ? "FULL" : "NORMAL";
            _pragmas = $"PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = {(long)options.BusyTimeout.TotalMilliseconds}; PRAGMA foreign_keys = ON; " +
                $"PRAGMA wal_autocheckpoint = {options.WalAutoCheckpointPages};";
        }

        public string DataSource { get; }

        protected override string StoreName => $"SQLite database '{DataSource}'";

        protected override bool IsReadOnly => _readOnly;

        // Called once per kept-open connection (see SqlStore's sessions), so the pragmas are applied once per connection.
        protected override async Task<DbConnection> OpenAsync(CancellationToken cancellationToken)
        {
            var connection = new SqliteConnection(_connectionString);
            try
            {
                await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
                await using var cmd = Command(connection, null, _pragmas);
                await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return connection;
            }
            catch
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        // BEGIN IMMEDIATE: take the write lock up front, so two writers never deadlock upgrading read locks.
        protected override Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
            Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: false));

        // BEGIN DEFERRED: a consistent snapshot for reads made of several queries, without blocking writers (WAL).
        protected override Task<DbTransaction> BeginReadAsync(DbConnection connection, CancellationToken cancellationToken) =>
            Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: true));

        // On kept-open connections BEGIN and COMMIT are reused commands: Microsoft.Data.Sqlite's BeginTransaction builds
        // and compiles both texts for every transaction, an eighth of an engine's save.
        protected override Task<DbTransaction> BeginWriteAsync(Session session, CancellationToken cancellationToken) =>
            BeginStatementTransactionAsync(session, "BEGIN IMMEDIATE", cancellationToken);

        protected override Task<DbTransaction> BeginReadAsync(Session session, CancellationToken cancellationToken) =>
            BeginStatementTransactionAsync(session, "BEGIN DEFERRED", cancellationToken);

        private static async Task<DbTransaction> BeginStatementTransactionAsync(Session session, string begin, CancellationToken cancellationToken)
        {
            await session.Reuse(null, begin).ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return new StatementTransaction(session.Connection, session.Reuse(null, "COMMIT"), session.Reuse(null, "ROLLBACK"));
        }

        protected override async Task MigrateAsync(CancellationToken cancellationToken)
        {
            if (_readOnly)
            {
                await CheckSchemaAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            try
            {
                await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
                await using (var wal = Command(connection, null, "PRAGMA journal_mode = WAL"))
                    await wal.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
                await using var tx = await BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
                await using (var create = Command(connection, tx,
                    "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"))
                    await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                long version;
                await using (var read = Command(connection, tx, "SELECT version FROM schema_version WHERE id = 1"))
                    version = await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is { } v
                        ? Convert.ToInt64(v, CultureInfo.InvariantCulture)
                        : 0;
                if (version > SchemaVersion)
                    throw BackendSupport.SchemaTooNew(StoreName, (int)version, SchemaVersion);
                for (var next = (int)version + 1; next <= SchemaVersion; next++)
                {
                    await using var migrate = Command(connection, tx, Migrations[next - 1]);
                    await migrate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
                if (version != SchemaVersion)
                {
                    await using var write = Command(connection, tx,
                        "INSERT INTO schema_version (id, version) VALUES (1, @v) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                        ("v", SchemaVersion));
                    await write.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
                await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (SqliteException ex)
            {
                throw new PersistenceException($"{StoreName}: could not create or upgrade the schema: {ex.Message}", ex);
            }
        }

        /// <summary>A read-only store's schema is checked, never created: the file must be a TaskFlow store this code reads.</summary>
        private async Task CheckSchemaAsync(CancellationToken cancellationToken)
        {
            const string nothing = "It was opened read-only: nothing was changed.";
            try
            {
                await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
                var tables = new List<string>();
                await using (var list = Command(connection, null, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))
                await using (var reader = await list.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false)) tables.Add(reader.GetString(0));
                string[] ours = ["atom_details", "flow_details", "logbooks", "schema_version"];
                if (!ours.All(tables.Contains))
                    throw new PersistenceException(
                        $"{StoreName} is not a TaskFlow store: it has {(tables.Count == 0 ? "no tables" : $"the tables {string.Join(", ", tables)}")}, " +
                        $"not TaskFlow's {string.Join(", ", ours)}. {nothing}");
                long version;
                await using (var read = Command(connection, null, "SELECT version FROM schema_version WHERE id = 1"))
                    version = await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is { } v ? Convert.ToInt64(v, CultureInfo.InvariantCulture) : 0;
                if (version > SchemaVersion)
                    throw BackendSupport.SchemaTooNew(StoreName, (int)version, SchemaVersion);
                if (version < SchemaVersion)
                    throw new PersistenceException(
                        $"{StoreName} has TaskFlow schema version {version}, older than {SchemaVersion}; open it once without ReadOnly to upgrade it. {nothing}");
            }
            catch (SqliteException ex)
            {
                throw new PersistenceException($"{StoreName} cannot be read as a TaskFlow store: {ex.Message}. {nothing}", ex);
            }
        }

        protected override string Table(string name) => name;

        protected override object IdValue(Guid id) => id.ToString("D");

        protected override Guid ReadId(DbDataReader reader, int ordinal, string table)
        {
            var text = reader.GetString(ordinal);
            return Guid.TryParseExact(text, "D", out var id)
                ? id
                : throw Malformed($"a row of table {table} in {StoreName}", $"'{text}' is not a GUID");
        }

        protected override object TimeValue(DateTimeOffset value) => ModelCodec.FormatTimestamp(value);

        protected override DateTimeOffset ReadTime(DbDataReader reader, int ordinal, string subject)
        {
            var text = reader.GetString(ordinal);
            return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var value)
                ? value
                : throw Malformed(subject, $"the timestamp '{text}' in column {reader.GetName(ordinal)} is not ISO 8601");
        }

        protected override string Json(string parameter) => parameter;

        protected override string ForUpdate => "";

        protected override string ForShare => "";

        protected override void ClearPool()
        {
            using var connection = new SqliteConnection(_connectionString);
            SqliteConnection.ClearPool(connection);
        }

        public override void Dispose()
        {
            base.Dispose();
            ClearPool();
        }
    }
}
