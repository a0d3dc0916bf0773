using System.Data;
using System.Data.Common;
using Npgsql;
using TaskFlow.States;

namespace TaskFlow.Persistence.PostgreSql;

/// <summary>
/// A persistence backend on PostgreSQL, for flows that run on many hosts. Tables in their own schema, documents in
/// <c>jsonb</c> columns, one transaction per save with the atoms of a batch sent as one <see cref="NpgsqlBatch"/>;
/// saves to one flow detail take its row lock, so concurrent batches from several hosts serialize instead of
/// deadlocking. Schema creation and upgrades take an advisory lock, so hosts may start together. Fenced writes
/// (<see cref="TakeOwnershipAsync"/>) check the flow detail's owner row, with a shared lock, in the same statement or
/// transaction as the write.
/// </summary>
/// <remarks>
/// jsonb normalizes JSON: object keys come back reordered and duplicate keys collapse, and the text <c>\u0000</c>
/// cannot be stored (such a save is refused with <see cref="ArgumentException"/>). Values compare equal under
/// <see cref="System.Text.Json.JsonElement.DeepEquals"/>.
/// </remarks>
public sealed class PostgreSqlPersistenceBackend : IFencedPersistenceBackend
{
    /// <summary>The schema version this code writes and the newest it reads (2: the <c>flow_owners</c> table).</summary>
    public const int SchemaVersion = 2;

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

    /// <inheritdoc />
    public Task<IPersistenceBackend> TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken = default) =>
        OwnedPersistence.TakeAsync(this, _store, flowDetailId, token, cancellationToken);

    /// <summary>Closes the connection pool.</summary>
    public async ValueTask DisposeAsync() => await _store.DisposeAsync().ConfigureAwait(false);

    /// <inheritdoc />
    public override string ToString() => $"PostgreSqlPersistenceBackend {{ {_store.StoreNameForDisplay} }}";

    /// <summary>
    /// The few statements of the hot paths run over and over on kept-open connections: Npgsql prepares them on the
    /// server after their second use, unless the connection string chose otherwise. Unprepared, every save was parsed
    /// and planned again, which was most of its time on the server.
    /// </summary>
    internal static void ApplyAutoPrepareDefaults(NpgsqlConnectionStringBuilder target, string connectionString)
    {
        if (!Mentions(connectionString, "MaxAutoPrepare")) target.MaxAutoPrepare = 32;
        if (!Mentions(connectionString, "AutoPrepareMinUsages")) target.AutoPrepareMinUsages = 2;
    }

    /// <summary>
    /// How long the server lets one of our sessions sit idle inside a transaction before it ends the session. Our
    /// transactions send their statements back to back, so a gap this long means the client stopped (a partition, a
    /// pause) while holding row locks — among them the owner row a new owner's take-over waits for. The server then
    /// rolls the transaction back and releases them; the stale client's next statement fails.
    /// </summary>
    internal static readonly TimeSpan IdleInTransactionTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Sets <c>idle_in_transaction_session_timeout</c> for our sessions (<see cref="IdleInTransactionTimeout"/>) unless
    /// the connection string's <c>Options</c> set it already.
    /// </summary>
    internal static void ApplySessionDefaults(NpgsqlConnectionStringBuilder target)
    {
        var options = target.Options ?? "";
        if (options.Contains("idle_in_transaction_session_timeout", StringComparison.OrdinalIgnoreCase)) return;
        var setting = $"-c idle_in_transaction_session_timeout={(long)IdleInTransactionTimeout.TotalMilliseconds}";
        target.Options = options.Length == 0 ? setting : $"{options} {setting}";
    }

    /// <summary>
    /// Whether a connection string sets a keyword, however spelled ("Max Auto Prepare", "maxautoprepare").
    /// <see cref="DbConnectionStringBuilder.ContainsKey"/> on Npgsql's builder cannot tell: it answers true for every keyword Npgsql knows.
    /// </summary>
    private static bool Mentions(string connectionString, string keywordWithoutSpaces)
    {
        var given = new DbConnectionStringBuilder { ConnectionString = connectionString };
        foreach (string key in given.Keys)
            if (string.Equals(key.Replace(" ", "", StringComparison.Ordinal), keywordWithoutSpaces, StringComparison.OrdinalIgnoreCase))
                return true;
        return false;
    }

    private sealed class Store : SqlStore
    {
        private readonly NpgsqlDataSource _dataSource;
        private readonly string _q;
        private readonly string _storeName;
        private readonly bool _readOnly;
        private string? _insertNewSql;

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
            // Version 2: the owner of each flow detail, for fenced writes. No foreign key: the owner is stored before
            // the flow detail is created.
            $"""
            CREATE TABLE {_q}.flow_owners (
                flow_detail_id uuid NOT NULL PRIMARY KEY,
                owner text NOT NULL,
                owner_epoch bigint NOT NULL CHECK (owner_epoch >= 1));
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
            ApplyAutoPrepareDefaults(dataSource.ConnectionStringBuilder, options.ConnectionString);
            ApplySessionDefaults(dataSource.ConnectionStringBuilder);
            _readOnly = options.ReadOnly;
            if (_readOnly)
            {
                // The server refuses writes as well: a second guard behind the store's own refusal.
                var given = dataSource.ConnectionStringBuilder.Options;
                dataSource.ConnectionStringBuilder.Options = (string.IsNullOrWhiteSpace(given) ? "" : given + " ") + "-c default_transaction_read_only=on";
            }
            _dataSource = dataSource.Build();
        }

        public string Schema { get; }

        public string StoreNameForDisplay => _storeName;

        protected override string StoreName => _storeName;

        protected override bool IsReadOnly => _readOnly;

        protected override async Task<DbConnection> OpenAsync(CancellationToken cancellationToken) =>
            await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);

        protected override async Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
            await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);

        // A snapshot for reads made of several queries (header, then atoms).
        protected override async Task<DbTransaction> BeginReadAsync(DbConnection connection, CancellationToken cancellationToken) =>
            await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken).ConfigureAwait(false);

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

        /// <summary>A read-only store's schema is checked, never created (no DDL).</summary>
        private async Task CheckSchemaAsync(CancellationToken cancellationToken)
        {
            const string nothing = "It was opened read-only: nothing was changed.";
            try
            {
                await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
                var tables = new List<string>();
                await using (var list = Command(connection, null, "SELECT table_name FROM information_schema.tables WHERE table_schema = @schema ORDER BY table_name", ("schema", Schema)))
                await using (var reader = await list.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false)) tables.Add(reader.GetString(0));
                string[] ours = ["atom_details", "flow_details", "logbooks", "schema_version"];
                if (!ours.All(tables.Contains))
                    throw new PersistenceException(
                        $"{StoreName} is not a TaskFlow store: {(tables.Count == 0 ? "the schema has no tables (or does not exist)" : $"it has the tables {string.Join(", ", tables)}")}, " +
                        $"not TaskFlow's {string.Join(", ", ours)}. {nothing}");
                int version;
                await using (var read = Command(connection, null, $"SELECT version FROM {_q}.schema_version WHERE id = 1"))
                    version = await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is int v ? v : 0;
                if (version > SchemaVersion)
                    throw BackendSupport.SchemaTooNew(StoreName, version, SchemaVersion);
                if (version < SchemaVersion)
                    throw new PersistenceException(
                        $"{StoreName} has TaskFlow schema version {version}, older than {SchemaVersion}; open it once without ReadOnly to upgrade it. {nothing}");
            }
            catch (NpgsqlException ex)
            {
                throw new PersistenceException($"{StoreName}: could not check the schema: {ex.Message}", ex);
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

        // xmax is 0 on a row version this statement inserted, and the updating transaction's id when ON CONFLICT updated.
        protected override string? ReturningWhetherInserted => " RETURNING (xmax = 0)";

        /// <summary>
        /// One statement for all the atoms of a new flow, each array sent once: a flow of a thousand tasks was a thousand
        /// INSERTs, a twentieth of a persisted run. Nothing can conflict, so there is nothing to join or look up.
        /// </summary>
        protected override async Task InsertAtomsOfNewFlowAsync(DbConnection c, DbTransaction tx, Guid flowId, EncodedAtom[] atoms, CancellationToken ct)
        {
            if (atoms.Length == 0) return;
            _insertNewSql ??=
                $"INSERT INTO {_q}.atom_details (flow_detail_id, id, seq, name, kind, state, data) " +
                "SELECT @f, v.id, v.seq, v.name, v.kind, v.state, CAST(v.data AS jsonb) " +
                "FROM unnest(@ids, @seqs, @names, @kinds, @states, @data) AS v (id, seq, name, kind, state, data)";
            var ids = new Guid[atoms.Length];
            var seqs = new long[atoms.Length];
            var names = new string[atoms.Length];
            var kinds = new string[atoms.Length];
            var states = new string[atoms.Length];
            var data = new string[atoms.Length];
            for (int i = 0; i < atoms.Length; i++)
            {
                ids[i] = atoms[i].Id;
                seqs[i] = i + 1;
                names[i] = atoms[i].Name;
                kinds[i] = atoms[i].Kind;
                states[i] = atoms[i].StateName;
                data[i] = System.Text.Encoding.UTF8.GetString(atoms[i].Data);
            }
            await using var insert = new NpgsqlCommand(_insertNewSql, (NpgsqlConnection)c, tx as NpgsqlTransaction);
            insert.Parameters.Add(new NpgsqlParameter<Guid>("f", flowId));
            insert.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", ids));
            insert.Parameters.Add(new NpgsqlParameter<long[]>("seqs", seqs));
            insert.Parameters.Add(new NpgsqlParameter<string[]>("names", names));
            insert.Parameters.Add(new NpgsqlParameter<string[]>("kinds", kinds));
            insert.Parameters.Add(new NpgsqlParameter<string[]>("states", states));
            insert.Parameters.Add(new NpgsqlParameter<string[]>("data", data));
            await insert.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }

        protected override bool SavesKnownAtomsInOneRoundTrip => true;

        /// <summary>The most atoms one statement of <see cref="SaveKnownAtomsInOneRoundTripAsync"/> updates.</summary>
        internal const int AtomsPerStatement = 8;

        // The statement for a chunk of 1..AtomsPerStatement atoms, made on first use; unfenced, then fenced.
        private readonly string?[] _saveKnownSql = new string?[AtomsPerStatement + 1];
        private readonly string?[] _saveKnownFencedSql = new string?[AtomsPerStatement + 1];

        /// <summary>
        /// One round trip and one implicit transaction. Each chunk of up to <see cref="AtomsPerStatement"/> atoms is one
        /// statement: it locks the flow row, updates each atom where the stored flow, id, name and kind all equal the
        /// batch's, then stamps the flow row — setting <c>updated_at</c> to NULL, which its NOT NULL constraint refuses,
        /// unless every atom of the chunk was updated. The refusal undoes the whole batch, so the save is all or nothing.
        /// A fenced save first reads the owner row with <c>FOR SHARE</c> (a newer owner's raise waits for this statement
        /// to commit) and locks the flow row only when the owner is the writer's; otherwise nothing matches and nothing is
        /// written.
        /// </summary>
        /// <remarks>
        /// One UPDATE per atom, each on a full unique key, so every plan is an index lookup of one row whatever the
        /// table's statistics say. A join with <c>unnest</c> of array parameters did the same work in one UPDATE, but
        /// the generic plan PostgreSQL keeps for a prepared statement guesses ten rows for the arrays and, when the table
        /// has not been analyzed yet or most flows are small, a handful of rows per flow: it then hash-joined the batch
        /// with every atom of the flow, a cost that grows with the flow (0.58 ms for two atoms of a 1,000-atom flow in
        /// <c>EXPLAIN ANALYZE</c>, against 0.13 ms for this form). Texts are fixed per chunk size, so Npgsql prepares each
        /// once per connection.
        /// </remarks>
        protected override async Task<KnownAtomsSave> SaveKnownAtomsInOneRoundTripAsync(DbConnection connection, Guid flowId, IReadOnlyList<EncodedAtom> atoms, Fence? fence, CancellationToken ct)
        {
            var npgsql = (NpgsqlConnection)connection;
            var now = ModelValues.NormalizeTimestamp(Time.GetUtcNow());
            int chunks = (atoms.Count + AtomsPerStatement - 1) / AtomsPerStatement;
            try
            {
                if (chunks == 1)
                {
                    await using var save = new NpgsqlCommand(SaveKnownSql(atoms.Count, fence is not null), npgsql);
                    Bind(save.Parameters, flowId, now, atoms, 0, atoms.Count, fence);
                    // A missing flow has no atoms either: nothing changed.
                    return await save.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 0 ? KnownAtomsSave.FlowMissing : KnownAtomsSave.Saved;
                }
                await using var batch = new NpgsqlBatch(npgsql);
                for (int start = 0; start < atoms.Count; start += AtomsPerStatement)
                {
                    int count = Math.Min(AtomsPerStatement, atoms.Count - start);
                    var command = new NpgsqlBatchCommand(SaveKnownSql(count, fence is not null));
                    Bind(command.Parameters, flowId, now, atoms, start, count, fence);
                    batch.BatchCommands.Add(command);
                }
                return await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 0 ? KnownAtomsSave.FlowMissing : KnownAtomsSave.Saved;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.NotNullViolation && ex.TableName == "flow_details")
            {
                return KnownAtomsSave.NotAllKnown;
            }
        }

        private string SaveKnownSql(int count, bool fenced)
        {
            var cache = fenced ? _saveKnownFencedSql : _saveKnownSql;
            if (cache[count] is { } cached) return cached;
            // The flow row is locked first (each atom update reads the locked id), as the checked path does: saves of one
            // flow from several hosts wait for each other there instead of deadlocking on each other's atom rows.
            var sql = new System.Text.StringBuilder(fenced
                ? $"WITH o AS (SELECT flow_detail_id FROM {_q}.flow_owners WHERE flow_detail_id = @f AND owner = @owner AND owner_epoch = @epoch FOR SHARE), " +
                  $"f AS (SELECT id FROM {_q}.flow_details WHERE id = (SELECT flow_detail_id FROM o) FOR UPDATE)"
                : $"WITH f AS (SELECT id FROM {_q}.flow_details WHERE id = @f FOR UPDATE)");
            for (int i = 0; i < count; i++)
            {
                sql.Append($", u{i} AS (UPDATE {_q}.atom_details SET state = @s{i}, data = CAST(@d{i} AS jsonb) ")
                   .Append($"WHERE flow_detail_id = (SELECT id FROM f) AND id = @i{i} AND name = @n{i} AND kind = @k{i} RETURNING 1)");
            }
            sql.Append($" UPDATE {_q}.flow_details SET updated_at = CASE WHEN ");
            for (int i = 0; i < count; i++) sql.Append(i > 0 ? " + " : "").Append($"(SELECT count(*) FROM u{i})");
            // Fenced and not the owner: no flow row matches, so nothing is written and the save reports FlowMissing.
            sql.Append($" = {count} THEN @now END WHERE id = {(fenced ? "(SELECT id FROM f)" : "@f")}");
            return cache[count] = sql.ToString();
        }

        private static void Bind(NpgsqlParameterCollection parameters, Guid flowId, DateTimeOffset now, IReadOnlyList<EncodedAtom> atoms, int start, int count, Fence? fence)
        {
            parameters.Add(new NpgsqlParameter<Guid>("f", flowId));
            parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now));
            if (fence is not null)
            {
                parameters.Add(new NpgsqlParameter<string>("owner", fence.Token.Owner));
                parameters.Add(new NpgsqlParameter<long>("epoch", fence.Token.Epoch));
            }
            for (int i = 0; i < count; i++)
            {
                var a = atoms[start + i];
                parameters.Add(new NpgsqlParameter<Guid>(IdNames[i], a.Id));
                parameters.Add(new NpgsqlParameter<string>(NameNames[i], a.Name));
                parameters.Add(new NpgsqlParameter<string>(KindNames[i], a.Kind));
                parameters.Add(new NpgsqlParameter<string>(StateNames[i], a.StateName));
                parameters.Add(new NpgsqlParameter<string>(DataNames[i], System.Text.Encoding.UTF8.GetString(a.Data)));
            }
        }

        // The parameter names of each position in a chunk, made once: binding runs on every save.
        private static readonly string[] IdNames = ParameterNames('i'), NameNames = ParameterNames('n'), KindNames = ParameterNames('k'),
            StateNames = ParameterNames('s'), DataNames = ParameterNames('d');

        private static string[] ParameterNames(char prefix) => [.. Enumerable.Range(0, AtomsPerStatement).Select(i => $"{prefix}{i}")];

        protected override void ClearPool() => _dataSource.Clear();

        public async ValueTask DisposeAsync()
        {
            Dispose();
            await _dataSource.DisposeAsync().ConfigureAwait(false);
        }
    }
}
