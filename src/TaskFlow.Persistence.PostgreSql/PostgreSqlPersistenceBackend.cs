using System.Data;
using System.Data.Common;
using Npgsql;
using TaskFlow.States;

namespace TaskFlow.Persistence.PostgreSql;

/// <summary>
/// A persistence backend on PostgreSQL, for flows that run on many hosts. Tables in their own schema, documents in
/// <c>jsonb</c> columns, one transaction per save with the atoms of a batch sent as one <see cref="NpgsqlBatch"/>;
/// saves to one flow detail take its row lock, so concurrent batches from several hosts serialize instead of
/// deadlocking. Schema creation and upgrades take an advisory lock, so hosts may start together.
/// </summary>
/// <remarks>
/// jsonb normalizes JSON: object keys come back reordered and duplicate keys collapse, and the text <c>\u0000</c>
/// cannot be stored (such a save is refused with <see cref="ArgumentException"/>). Values compare equal under
/// <see cref="System.Text.Json.JsonElement.DeepEquals"/>.
/// </remarks>
public sealed class PostgreSqlPersistenceBackend : IPersistenceBackend
{
    /// <summary>The schema version this code writes and the newest it reads.</summary>
    public const int SchemaVersion = 1;

    private readonly Store _store;

    /// <summary>Creates a backend on the database named by an Npgsql connection string, with tables in the schema <c>taskflow</c>.</summary>
    public PostgreSqlPersistenceBackend(string connectionString)
        : this(new PostgreSqlPersistenceOptions { ConnectionString = connectionString })
    {
    }

    /// <summary>Creates a backend with the given options.</summary>
    /// <exception cref="ArgumentException">The connection string or schema name is invalid.</exception>
    public PostgreSqlPersistenceBackend(PostgreSqlPersistenceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _store = new Store(options);
    }

    /// <summary>The schema that holds the tables.</summary>
    public string Schema => _store.Schema;

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

    /// <summary>Closes the connection pool.</summary>
    public async ValueTask DisposeAsync() => await _store.DisposeAsync().ConfigureAwait(false);

    /// <inheritdoc />
    public override string ToString() => $"PostgreSqlPersistenceBackend {{ {_store.StoreNameForDisplay} }}";

    private sealed class Store : SqlStore
    {
        private readonly NpgsqlDataSource _dataSource;
        private readonly string _q;
        private readonly string _storeName;
        private string? _saveKnownSql;

        private string[] Migrations =>
        [
            // Version 1.
            $"""
            CREATE TABLE {_q}.logbooks (
                id uuid NOT NULL PRIMARY KEY,
                name text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                meta jsonb NOT NULL);
            CREATE TABLE {_q}.flow_details (
                id uuid NOT NULL PRIMARY KEY,
                logbook_id uuid NOT NULL REFERENCES {_q}.logbooks (id) ON DELETE CASCADE,
                name text NOT NULL,
                state text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                meta jsonb NOT NULL);
            CREATE INDEX ix_flow_details_logbook_id ON {_q}.flow_details (logbook_id, created_at);
            CREATE TABLE {_q}.atom_details (
                flow_detail_id uuid NOT NULL REFERENCES {_q}.flow_details (id) ON DELETE CASCADE,
                id uuid NOT NULL,
                seq bigint NOT NULL,
                name text NOT NULL,
                kind text NOT NULL,
                state text NOT NULL,
                data jsonb NOT NULL,
                PRIMARY KEY (flow_detail_id, id),
                UNIQUE (flow_detail_id, name));
            """,
        ];

        public Store(PostgreSqlPersistenceOptions options)
            : base(options.MaxDocumentBytes, options.TimeProvider, serializeWritesInProcess: false)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(options.ConnectionString, nameof(options.ConnectionString));
            if (!PostgreSqlPersistenceOptions.IsValidSchemaName(options.Schema))
                throw new ArgumentException(
                    $"The schema name '{options.Schema}' is not allowed; use lower-case letters, digits and underscores, starting with a letter or underscore (at most 63 characters).",
                    nameof(options));
            NpgsqlConnectionStringBuilder builder;
            try
            {
                builder = new NpgsqlConnectionStringBuilder(options.ConnectionString);
            }
            catch (ArgumentException ex)
            {
                // The provider's message names the keyword at fault, never the password's value.
                throw new ArgumentException($"The PostgreSQL connection string is invalid: {ex.Message}", nameof(options));
            }
            Schema = options.Schema;
            _q = $"\"{Schema}\"";
            _storeName = $"PostgreSQL schema '{Schema}' in database '{builder.Database}' on {builder.Host}:{builder.Port}";
            var dataSource = new NpgsqlDataSourceBuilder(options.ConnectionString);
            // The few statements of the hot paths are run over and over on kept-open connections: let Npgsql prepare
            // them on the server after their second use, unless the connection string chose otherwise.
            if (dataSource.ConnectionStringBuilder.MaxAutoPrepare == 0 && !builder.ContainsKey("Max Auto Prepare"))
                dataSource.ConnectionStringBuilder.MaxAutoPrepare = 32;
            _dataSource = dataSource.Build();
        }

        public string Schema { get; }

        public string StoreNameForDisplay => _storeName;

        protected override string StoreName => _storeName;

        protected override async Task<DbConnection> OpenAsync(CancellationToken cancellationToken) =>
            await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);

        protected override async Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
            await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);

        // A snapshot for reads made of several queries (header, then atoms).
        protected override async Task<DbTransaction> BeginReadAsync(DbConnection connection, CancellationToken cancellationToken) =>
            await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken).ConfigureAwait(false);

        protected override async Task MigrateAsync(CancellationToken cancellationToken)
        {
            try
            {
                await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
                await using var tx = await BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
                // Hosts starting together: one migrates, the others wait and then see the result.
                await using (var lockCmd = Command(connection, tx, "SELECT pg_advisory_xact_lock(hashtextextended(@key, 0))", ("key", "taskflow.persistence." + Schema)))
                    await lockCmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                await using (var create = Command(connection, tx,
                    $"CREATE SCHEMA IF NOT EXISTS {_q}; " +
                    $"CREATE TABLE IF NOT EXISTS {_q}.schema_version (id int NOT NULL PRIMARY KEY CHECK (id = 1), version int NOT NULL)"))
                    await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                int version;
                await using (var read = Command(connection, tx, $"SELECT version FROM {_q}.schema_version WHERE id = 1"))
                    version = await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is int v ? v : 0;
                if (version > SchemaVersion)
                    throw BackendSupport.SchemaTooNew(StoreName, version, SchemaVersion);
                for (var next = version + 1; next <= SchemaVersion; next++)
                {
                    await using var migrate = Command(connection, tx, Migrations[next - 1]);
                    await migrate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
                if (version != SchemaVersion)
                {
                    await using var write = Command(connection, tx,
                        $"INSERT INTO {_q}.schema_version (id, version) VALUES (1, @v) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                        ("v", SchemaVersion));
                    await write.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
                await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (NpgsqlException ex)
            {
                throw new PersistenceException($"{StoreName}: could not create or upgrade the schema: {ex.Message}", ex);
            }
        }

        protected override string Table(string name) => $"{_q}.{name}";

        protected override object IdValue(Guid id) => id;

        protected override Guid ReadId(DbDataReader reader, int ordinal, string table) => reader.GetGuid(ordinal);

        protected override object TimeValue(DateTimeOffset value) => ModelValues.NormalizeTimestamp(value);

        protected override DateTimeOffset ReadTime(DbDataReader reader, int ordinal, string subject) => reader.GetFieldValue<DateTimeOffset>(ordinal);

        protected override string Json(string parameter) => $"CAST({parameter} AS jsonb)";

        protected override string ForUpdate => " FOR UPDATE";

        protected override string ForShare => " FOR SHARE";

        protected override Exception? Translate(DbException exception, string operation) =>
            exception is PostgresException { SqlState: PostgresErrorCodes.UntranslatableCharacter } pg
                ? new ArgumentException(
                    $"{StoreName}: could not {operation}: PostgreSQL's jsonb cannot hold this value ({pg.MessageText}); most often a string contains \\u0000. Nothing was saved.",
                    exception)
                : null;

        protected override bool SavesKnownAtomsInOneRoundTrip => true;

        /// <summary>
        /// One statement, so one round trip and one implicit transaction: it updates the batch's atoms where the stored
        /// id, name and kind all equal the batch's, then stamps the flow row — setting <c>updated_at</c> to NULL, which its
        /// NOT NULL constraint refuses and so undoes the whole statement, unless every atom of the batch was updated.
        /// A fixed text with array parameters (each sent once), so Npgsql prepares it once per connection.
        /// </summary>
        protected override async Task<KnownAtomsSave> SaveKnownAtomsInOneRoundTripAsync(DbConnection connection, Guid flowId, IReadOnlyList<EncodedAtom> atoms, CancellationToken ct)
        {
            _saveKnownSql ??=
                $"WITH updated AS (UPDATE {_q}.atom_details a SET state = v.state, data = v.data " +
                "FROM unnest(@ids, @names, @kinds, @states, CAST(@data AS jsonb[])) AS v (id, name, kind, state, data) " +
                "WHERE a.flow_detail_id = @f AND a.id = v.id AND a.name = v.name AND a.kind = v.kind RETURNING 1) " +
                $"UPDATE {_q}.flow_details SET updated_at = CASE WHEN (SELECT count(*) FROM updated) = cardinality(@ids) THEN @now END WHERE id = @f";
            var ids = new Guid[atoms.Count];
            var names = new string[atoms.Count];
            var kinds = new string[atoms.Count];
            var states = new string[atoms.Count];
            var data = new string[atoms.Count];
            for (var i = 0; i < atoms.Count; i++)
            {
                ids[i] = atoms[i].Id;
                names[i] = atoms[i].Name;
                kinds[i] = atoms[i].Kind;
                states[i] = atoms[i].StateName;
                data[i] = System.Text.Encoding.UTF8.GetString(atoms[i].Data);
            }
            await using var save = new NpgsqlCommand(_saveKnownSql, (NpgsqlConnection)connection);
            save.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", ids));
            save.Parameters.Add(new NpgsqlParameter<string[]>("names", names));
            save.Parameters.Add(new NpgsqlParameter<string[]>("kinds", kinds));
            save.Parameters.Add(new NpgsqlParameter<string[]>("states", states));
            save.Parameters.Add(new NpgsqlParameter<string[]>("data", data));
            save.Parameters.Add(new NpgsqlParameter<Guid>("f", flowId));
            save.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", ModelValues.NormalizeTimestamp(Time.GetUtcNow())));
            int stamped;
            try
            {
                stamped = await save.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.NotNullViolation && ex.TableName == "flow_details")
            {
                return KnownAtomsSave.NotAllKnown;
            }
            // A missing flow has no atoms either: nothing changed.
            return stamped == 0 ? KnownAtomsSave.FlowMissing : KnownAtomsSave.Saved;
        }

        protected override void ClearPool() => _dataSource.Clear();

        public async ValueTask DisposeAsync()
        {
            Dispose();
            await _dataSource.DisposeAsync().ConfigureAwait(false);
        }
    }
}
