using System.Data;
using System.Data.Common;
using TaskFlow.Failures;
using System.Text;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// The logic of the relational backends, written once over System.Data.Common; a subclass supplies the dialect
/// (connections, transactions, id/timestamp/JSON columns, row locks) and the schema migrations. Tables:
/// <c>logbooks</c>, <c>flow_details</c> (FK, ON DELETE CASCADE), <c>atom_details</c> (primary key
/// (flow_detail_id, id), unique (flow_detail_id, name), <c>seq</c> for first-save order, the atom as a JSON document
/// in <c>data</c>), <c>flow_owners</c> (since version 2: the owner and owner epoch of each flow detail taken with
/// <see cref="IFencedPersistenceBackend.TakeOwnershipAsync"/>; no foreign key, since an owner is stored before its flow
/// detail is created) and <c>schema_version</c>. A fenced write reads the owner row with a shared row lock as the first
/// statement of its transaction, so a newer owner's raise waits for it to commit, and it refuses the write when the row
/// is not the writer's.
/// </summary>
internal abstract class SqlStore : IDisposable, IFencedStore
{
    private const int HeaderQueryChunk = 400;

    /// <summary>How many idle connections are kept open between operations (more are closed when returned).</summary>
    private const int MaxIdleSessions = 4;

    private readonly SemaphoreSlim? _writeGate;
    private readonly SchemaGate _schema;
    private readonly Stack<Session> _idle = new();
    private bool _disposed;
    private string? _touchFlowSql;
    private string? _updateAtomSql;

    protected SqlStore(int maxDocumentBytes, TimeProvider? timeProvider, bool serializeWritesInProcess)
    {
        BackendSupport.CheckMaxDocumentBytes(maxDocumentBytes);
        MaxBytes = maxDocumentBytes;
        Time = timeProvider ?? TimeProvider.System;
        _writeGate = serializeWritesInProcess ? new SemaphoreSlim(1, 1) : null;
        _schema = new SchemaGate(MigrateAsync);
    }

    protected int MaxBytes { get; }

    protected TimeProvider Time { get; }

    /// <summary>How the store is named in messages, e.g. "SQLite database 'taskflow.db'" (never with a password).</summary>
    protected abstract string StoreName { get; }

    protected abstract Task<DbConnection> OpenAsync(CancellationToken cancellationToken);

    protected abstract Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken);

    protected abstract Task<DbTransaction> BeginReadAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>Begins a write transaction on a kept-open connection (by default as on any connection).</summary>
    protected virtual Task<DbTransaction> BeginWriteAsync(Session session, CancellationToken cancellationToken) => BeginWriteAsync(session.Connection, cancellationToken);

    /// <summary>Begins a read transaction on a kept-open connection (by default as on any connection).</summary>
    protected virtual Task<DbTransaction> BeginReadAsync(Session session, CancellationToken cancellationToken) => BeginReadAsync(session.Connection, cancellationToken);

    /// <summary>Creates or upgrades the schema in one transaction; refuses a newer version.</summary>
    protected abstract Task MigrateAsync(CancellationToken cancellationToken);

    protected abstract string Table(string name);

    protected abstract object IdValue(Guid id);

    protected abstract Guid ReadId(DbDataReader reader, int ordinal, string table);

    protected abstract object TimeValue(DateTimeOffset value);

    protected abstract DateTimeOffset ReadTime(DbDataReader reader, int ordinal, string subject);

    /// <summary>The SQL expression for a JSON parameter, e.g. <c>@meta</c> or <c>CAST(@meta AS jsonb)</c>.</summary>
    protected abstract string Json(string parameter);

    /// <summary>A row-lock clause for reads that precede writes (empty where the transaction already locks the database).</summary>
    protected abstract string ForUpdate { get; }

    /// <summary>A shared row-lock clause.</summary>
    protected abstract string ForShare { get; }

    /// <summary>Whether the store was opened for reading only: every write is refused before it reaches the database.</summary>
    protected virtual bool IsReadOnly => false;

    /// <summary>A clearer exception for a provider error (e.g. a value the database cannot store), or null.</summary>
    protected virtual Exception? Translate(DbException exception, string operation) => null;

    public Task EnsureSchemaAsync(CancellationToken cancellationToken) => _schema.RunAsync(cancellationToken);

    // ------------------------------------------------------------------ logbooks

    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken) => SaveLogBookAsync(logBook, null, cancellationToken);

    public Task SaveLogBookAsync(LogBook logBook, Fence? fence, CancellationToken cancellationToken)
    {
        var meta = Encoding.UTF8.GetString(BackendSupport.EncodeLogBookMetadata(logBook, MaxBytes));
        return WriteAsync($"save {ModelCodec.Subject(logBook)}", fence, OwnedPersistence.SaveLogBook, async (s, tx) =>
        {
            await using var cmd = Command(s.Connection, tx,
                $"INSERT INTO {Table("logbooks")} (id, name, created_at, updated_at, meta) VALUES (@id, @name, @created, @updated, {Json("@meta")}) " +
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, created_at = excluded.created_at, updated_at = excluded.updated_at, meta = excluded.meta",
                ("id", IdValue(logBook.Id)), ("name", logBook.Name), ("created", TimeValue(logBook.CreatedAt)),
                ("updated", TimeValue(logBook.UpdatedAt)), ("meta", meta));
            await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    public Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken) =>
        ReadAsync($"read logbook {logBookId}", async (s, tx) =>
        {
            var books = await QueryLogBooksAsync(s.Connection, tx, "WHERE id = @id", cancellationToken, ("id", IdValue(logBookId))).ConfigureAwait(false);
            return books.Count == 0 ? null : books[0];
        }, cancellationToken);

    public Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<LogBook>>("list logbooks", async (s, tx) =>
            await QueryLogBooksAsync(s.Connection, tx, "ORDER BY created_at, id", cancellationToken).ConfigureAwait(false), cancellationToken);

    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken) =>
        WriteAsync($"delete logbook {logBookId}", async (s, tx) =>
        {
            await using (var owners = Command(s.Connection, tx,
                $"DELETE FROM {Table("flow_owners")} WHERE flow_detail_id IN (SELECT id FROM {Table("flow_details")} WHERE logbook_id = @id)", ("id", IdValue(logBookId))))
                await owners.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await using var cmd = Command(s.Connection, tx, $"DELETE FROM {Table("logbooks")} WHERE id = @id", ("id", IdValue(logBookId)));
            return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
        }, cancellationToken);

    private async Task<List<LogBook>> QueryLogBooksAsync(DbConnection c, DbTransaction tx, string tail, CancellationToken ct, params (string, object?)[] parameters)
    {
        await using var cmd = Command(c, tx, $"SELECT id, name, created_at, updated_at, meta FROM {Table("logbooks")} {tail}", parameters);
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        var books = new List<LogBook>();
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            var id = ReadId(reader, 0, "logbooks");
            var name = reader.GetString(1);
            var subject = $"{ModelValues.Describe("logbook", name, id)} in {StoreName}";
            var meta = BackendSupport.ReadMetadataColumn(reader.GetString(4), subject, MaxBytes);
            books.Add(Build(subject, () => new LogBook
            {
                Id = id,
                Name = name,
                CreatedAt = ReadTime(reader, 2, subject),
                UpdatedAt = ReadTime(reader, 3, subject),
                Metadata = meta,
            }));
        }
        return books;
    }

    // ------------------------------------------------------------------ flow details

    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken) => SaveFlowDetailAsync(flowDetail, null, cancellationToken);

    public Task SaveFlowDetailAsync(FlowDetail flowDetail, Fence? fence, CancellationToken cancellationToken)
    {
        var meta = Encoding.UTF8.GetString(BackendSupport.EncodeFlowHeaderMetadata(flowDetail, MaxBytes));
        var atoms = BackendSupport.EncodeAtoms(flowDetail.Id, flowDetail.Atoms, MaxBytes);
        return WriteAsync($"save {ModelCodec.Subject(flowDetail)}", fence, OwnedPersistence.SaveFlowDetail, async (s, tx) =>
        {
            await using (var book = Command(s.Connection, tx, $"SELECT 1 FROM {Table("logbooks")} WHERE id = @id{ForShare}", ("id", IdValue(flowDetail.LogBookId))))
                if (await book.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null)
                    throw BackendSupport.LogBookNotFound(flowDetail.LogBookId, $"saving flow detail '{flowDetail.Name}' ({flowDetail.Id}) in it");
            bool wasStored = false;
            await using (var existing = Command(s.Connection, tx, $"SELECT logbook_id FROM {Table("flow_details")} WHERE id = @id{ForUpdate}", ("id", IdValue(flowDetail.Id))))
            await using (var reader = await existing.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                if (wasStored = await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    if (ReadId(reader, 0, "flow_details") is var storedBook && storedBook != flowDetail.LogBookId)
                        throw BackendSupport.FlowInOtherLogBook(flowDetail, storedBook);
            bool inserted;
            await using (var upsert = Command(s.Connection, tx,
                $"INSERT INTO {Table("flow_details")} (id, logbook_id, name, state, created_at, updated_at, meta) " +
                $"VALUES (@id, @book, @name, @state, @created, @updated, {Json("@meta")}) " +
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, state = excluded.state, created_at = excluded.created_at, updated_at = excluded.updated_at, meta = excluded.meta" +
                (ReturningWhetherInserted ?? ""),
                ("id", IdValue(flowDetail.Id)), ("book", IdValue(flowDetail.LogBookId)), ("name", flowDetail.Name),
                ("state", flowDetail.State.ToTaskFlowName()), ("created", TimeValue(flowDetail.CreatedAt)),
                ("updated", TimeValue(flowDetail.UpdatedAt)), ("meta", meta)))
            {
                if (ReturningWhetherInserted is null)
                {
                    await upsert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    inserted = !wasStored;
                }
                else
                {
                    inserted = await upsert.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is true;
                }
            }
            // A flow row this transaction inserted has no atoms yet (they reference it): nothing to look up or merge.
            if (inserted) await InsertAtomsOfNewFlowAsync(s.Connection, tx, flowDetail.Id, atoms, cancellationToken).ConfigureAwait(false);
            else await UpsertAtomsAsync(s.Connection, tx, flowDetail.Id, atoms, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    public Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken) =>
        ReadAsync($"read flow detail {flowDetailId}", async (s, tx) =>
        {
            var flows = await QueryFlowsAsync(s.Connection, tx, "id", flowDetailId, cancellationToken).ConfigureAwait(false);
            return flows.Count == 0 ? null : flows[0];
        }, cancellationToken);

    public Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<FlowDetail>>($"list the flow details of logbook {logBookId}", async (s, tx) =>
        {
            await using (var book = Command(s.Connection, tx, $"SELECT 1 FROM {Table("logbooks")} WHERE id = @id", ("id", IdValue(logBookId))))
                if (await book.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null)
                    throw BackendSupport.LogBookNotFound(logBookId, "listing its flow details");
            return await QueryFlowsAsync(s.Connection, tx, "logbook_id", logBookId, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);

    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken) => DeleteFlowDetailAsync(flowDetailId, null, cancellationToken);

    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, Fence? fence, CancellationToken cancellationToken) =>
        WriteAsync($"delete flow detail {flowDetailId}", fence, OwnedPersistence.DeleteFlowDetail, async (s, tx) =>
        {
            await using (var owner = Command(s.Connection, tx, $"DELETE FROM {Table("flow_owners")} WHERE flow_detail_id = @id", ("id", IdValue(flowDetailId))))
                await owner.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await using var cmd = Command(s.Connection, tx, $"DELETE FROM {Table("flow_details")} WHERE id = @id", ("id", IdValue(flowDetailId)));
            return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
        }, cancellationToken);

    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken) => UpdateFlowStateAsync(flowDetailId, state, null, cancellationToken);

    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, Fence? fence, CancellationToken cancellationToken)
    {
        BackendSupport.ValidateState(state);
        return WriteAsync($"update the state of flow detail {flowDetailId}", fence, OwnedPersistence.UpdateFlowState, async (s, tx) =>
        {
            var cmd = s.Reuse(tx, $"UPDATE {Table("flow_details")} SET state = @state, updated_at = @now WHERE id = @id",
                ("state", state.ToTaskFlowName()), ("now", TimeValue(Time.GetUtcNow())), ("id", IdValue(flowDetailId)));
            if (await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
                throw BackendSupport.FlowNotFound(flowDetailId);
            return true;
        }, cancellationToken);
    }

    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken) =>
        SaveAtomDetailsAsync(flowDetailId, atomDetails, null, cancellationToken);

    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, Fence? fence, CancellationToken cancellationToken)
    {
        var atoms = BackendSupport.EncodeAtoms(flowDetailId, atomDetails, MaxBytes);
        return SaveEncodedAtomsAsync(flowDetailId, atoms, fence, $"save {atoms.Length} atom(s) of flow detail {flowDetailId}", cancellationToken);
    }

    private async Task SaveEncodedAtomsAsync(Guid flowDetailId, EncodedAtom[] atoms, Fence? fence, string operation, CancellationToken cancellationToken)
    {
        if (atoms.Length > 0 && SavesKnownAtomsInOneRoundTrip)
        {
            var outcome = await GatedWriteAsync(operation, () => InSessionAsync(operation,
                s => SaveKnownAtomsInOneRoundTripAsync(s.Connection, flowDetailId, atoms, fence, cancellationToken), cancellationToken), cancellationToken).ConfigureAwait(false);
            if (outcome == KnownAtomsSave.Saved) return;
            // Fenced, nothing written may also mean a newer owner: the checked path below says which.
            if (outcome == KnownAtomsSave.FlowMissing && fence is null) throw BackendSupport.FlowNotFound(flowDetailId);
        }
        await WriteAsync(operation, fence, OwnedPersistence.SaveAtomDetails, async (s, tx) =>
        {
            var (flowFound, updated) = await TouchFlowAndUpdateKnownAtomsAsync(s, tx, flowDetailId, atoms, cancellationToken).ConfigureAwait(false);
            if (!flowFound) throw BackendSupport.FlowNotFound(flowDetailId);
            // New atoms, or a stored row whose name or kind differs: the checked path, in the same transaction, reports
            // conflicts exactly as before and numbers new atoms (rows updated above are written again with the same values).
            if (updated < atoms.Length)
                await UpsertAtomsAsync(s.Connection, tx, flowDetailId, atoms, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>What <see cref="SaveKnownAtomsInOneRoundTripAsync"/> did.</summary>
    protected enum KnownAtomsSave
    {
        /// <summary>Every atom was stored with the batch's id, name and kind, and is now updated; the flow is stamped.</summary>
        Saved,

        /// <summary>The flow detail is not stored (or, for a fenced save, its owner may not be the writer); nothing was written.</summary>
        FlowMissing,

        /// <summary>Some atom is new or stored under another name or kind; nothing was written, the checked path must run.</summary>
        NotAllKnown,
    }

    /// <summary>Whether the dialect implements <see cref="SaveKnownAtomsInOneRoundTripAsync"/>.</summary>
    protected virtual bool SavesKnownAtomsInOneRoundTrip => false;

    /// <summary>
    /// Saves a batch of atoms that are all already stored (an engine's saves, nearly always) in one round trip and one
    /// implicit transaction, or writes nothing. Runs outside any transaction of <see cref="SqlStore"/>. With a
    /// <paramref name="fence"/>, writes only while the stored owner is the fence's (in the same statement), and otherwise
    /// reports <see cref="KnownAtomsSave.FlowMissing"/>.
    /// </summary>
    protected virtual Task<KnownAtomsSave> SaveKnownAtomsInOneRoundTripAsync(DbConnection connection, Guid flowId, IReadOnlyList<EncodedAtom> atoms, Fence? fence, CancellationToken ct) =>
        throw new NotSupportedException("This dialect saves atoms through the checked path only.");

    /// <summary>
    /// The save of an engine, nearly always updates of atoms the store already has, in as few statements as it takes:
    /// touching the flow row checks it exists and, on servers with row locks, serializes batches of one flow; then each
    /// atom's row is updated only where its stored id, name and kind all equal the batch's — exactly the rows the merge
    /// rules accept without looking further. Returns whether the flow exists and how many atoms were updated.
    /// Stateless on purpose: nothing is cached between saves, so another instance or process deleting or re-creating the
    /// flow meanwhile changes nothing about what is accepted.
    /// </summary>
    private async Task<(bool FlowFound, int Updated)> TouchFlowAndUpdateKnownAtomsAsync(Session s, DbTransaction tx, Guid flowId, EncodedAtom[] atoms, CancellationToken ct)
    {
        _touchFlowSql ??= $"UPDATE {Table("flow_details")} SET updated_at = @now WHERE id = @id";
        _updateAtomSql ??= $"UPDATE {Table("atom_details")} SET state = @state, data = {Json("@data")} WHERE flow_detail_id = @f AND id = @id AND name = @name AND kind = @kind";
        var flow = IdValue(flowId);
        var now = TimeValue(Time.GetUtcNow());
        if (s.Connection.CanCreateBatch)
        {
            // One round trip for the whole save (the provider sends BEGIN with it); the commit is the second.
            await using var batch = s.Connection.CreateBatch();
            batch.Transaction = ProviderTransaction(tx);
            AddBatchCommand(batch, _touchFlowSql, ("@now", now), ("@id", flow));
            foreach (var a in atoms)
                AddBatchCommand(batch, _updateAtomSql, ("@state", a.StateName), ("@data", Encoding.UTF8.GetString(a.Data)), ("@f", flow), ("@id", IdValue(a.Id)), ("@name", a.Name), ("@kind", a.Kind));
            await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            if (batch.BatchCommands[0].RecordsAffected == 0) return (false, 0);
            var updated = 0;
            for (var i = 1; i < batch.BatchCommands.Count; i++) updated += batch.BatchCommands[i].RecordsAffected;
            return (true, updated);
        }
        else
        {
            if (await s.Reuse(tx, _touchFlowSql, ("@now", now), ("@id", flow)).ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 0)
                return (false, 0);
            var updated = 0;
            foreach (var a in atoms)
                updated += await s.Reuse(tx, _updateAtomSql, ("@state", a.StateName), ("@data", Encoding.UTF8.GetString(a.Data)), ("@f", flow), ("@id", IdValue(a.Id)), ("@name", a.Name), ("@kind", a.Kind))
                    .ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            return (true, updated);
        }
    }

    private static void AddBatchCommand(DbBatch batch, string sql, params ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        var command = batch.CreateBatchCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.Add(Bound(command.CreateParameter(), name, value));
        batch.BatchCommands.Add(command);
    }

    public Task ClearAllAsync(CancellationToken cancellationToken) =>
        WriteAsync("clear all data", async (s, tx) =>
        {
            foreach (var table in new[] { "atom_details", "flow_details", "logbooks", "flow_owners" })
            {
                await using var cmd = Command(s.Connection, tx, $"DELETE FROM {Table(table)}");
                await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            return true;
        }, cancellationToken);

    /// <summary>Flow details (with atoms) whose <paramref name="keyColumn"/> ("id" or "logbook_id") equals <paramref name="key"/>.</summary>
    private async Task<IReadOnlyList<FlowDetail>> QueryFlowsAsync(DbConnection c, DbTransaction tx, string keyColumn, Guid key, CancellationToken ct)
    {
        var headers = new List<(FlowDetail Flow, string Subject)>();
        await using (var cmd = Command(c, tx,
            $"SELECT id, logbook_id, name, state, created_at, updated_at, meta FROM {Table("flow_details")} WHERE {keyColumn} = @id ORDER BY created_at, id", ("id", IdValue(key))))
        await using (var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var id = ReadId(reader, 0, "flow_details");
                var name = reader.GetString(2);
                var subject = ModelValues.Describe("flow detail", name, id);
                var where2 = $"{subject} in {StoreName}";
                var stateText = reader.GetString(3);
                FlowState state;
                try { state = StateNames.ParseFlowState(stateText); }
                catch (FormatException ex) { throw Malformed(where2, ex.Message, ex); }
                var meta = BackendSupport.ReadMetadataColumn(reader.GetString(6), where2, MaxBytes);
                headers.Add((Build(where2, () => new FlowDetail
                {
                    Id = id,
                    LogBookId = ReadId(reader, 1, "flow_details"),
                    Name = name,
                    State = state,
                    CreatedAt = ReadTime(reader, 4, where2),
                    UpdatedAt = ReadTime(reader, 5, where2),
                    Metadata = meta,
                }), subject));
            }
        }
        if (headers.Count == 0) return [];

        var atomsByFlow = headers.ToDictionary(h => h.Flow.Id, _ => new List<AtomDetail>());
        var subjects = headers.ToDictionary(h => h.Flow.Id, h => h.Subject);
        await using (var cmd = Command(c, tx,
            $"SELECT a.flow_detail_id, a.id, a.name, a.data, a.kind, a.state FROM {Table("atom_details")} a JOIN {Table("flow_details")} f ON f.id = a.flow_detail_id " +
            $"WHERE f.{keyColumn} = @id ORDER BY a.flow_detail_id, a.seq", ("id", IdValue(key))))
        await using (var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
            {
                var flowId = ReadId(reader, 0, "atom_details");
                var atomId = ReadId(reader, 1, "atom_details");
                var name = reader.GetString(2);
                var atomName = ModelValues.Describe("atom", name, atomId);
                var owner = $"{subjects[flowId]} in {StoreName}";
                var atom = BackendSupport.ReadAtomColumn(Encoding.UTF8.GetBytes(reader.GetString(3)), atomName, owner, MaxBytes);
                atomsByFlow[flowId].Add(BackendSupport.CheckRow(atom, atomId, name, reader.GetString(4), reader.GetString(5), $"{atomName} of {owner}"));
            }
        }
        return headers.Select(h => Build($"{h.Subject} in {StoreName}", () => h.Flow with { Atoms = atomsByFlow[h.Flow.Id] })).ToList();
    }

    /// <summary>
    /// A <c>RETURNING</c> clause for the flow upsert that yields true when it inserted the row, false when it updated a
    /// stored one; null where writes are serialized (SQLite), so the locking read before the upsert already tells.
    /// PostgreSQL needs it: two transactions creating the same flow both read nothing, and the second then updates.
    /// </summary>
    protected virtual string? ReturningWhetherInserted => null;

    /// <summary>Inserts the atoms of a flow row inserted in this transaction, numbered in batch order from 1.</summary>
    protected virtual Task InsertAtomsOfNewFlowAsync(DbConnection c, DbTransaction tx, Guid flowId, EncodedAtom[] atoms, CancellationToken ct) =>
        InsertOrUpdateAtomsAsync(c, tx, flowId, atoms, existing: null, nextSeq: 1, ct);

    private async Task UpsertAtomsAsync(DbConnection c, DbTransaction tx, Guid flowId, EncodedAtom[] atoms, CancellationToken ct)
    {
        if (atoms.Length == 0) return;
        var stored = new List<StoredAtomKey>();
        foreach (var chunk in atoms.Chunk(HeaderQueryChunk))
        {
            var parameters = new List<(string, object?)> { ("f", IdValue(flowId)) };
            var ids = new StringBuilder();
            var names = new StringBuilder();
            for (var i = 0; i < chunk.Length; i++)
            {
                ids.Append(i == 0 ? "" : ", ").Append("@i").Append(i);
                names.Append(i == 0 ? "" : ", ").Append("@n").Append(i);
                parameters.Add(($"i{i}", IdValue(chunk[i].Id)));
                parameters.Add(($"n{i}", chunk[i].Name));
            }
            await using var cmd = Command(c, tx,
                $"SELECT id, name, kind FROM {Table("atom_details")} WHERE flow_detail_id = @f AND (id IN ({ids}) OR name IN ({names}))", [.. parameters]);
            await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
            while (await reader.ReadAsync(ct).ConfigureAwait(false))
                stored.Add(new StoredAtomKey(ReadId(reader, 0, "atom_details"), reader.GetString(1), reader.GetString(2)));
        }
        BackendSupport.CheckAgainstStored(flowId, atoms, stored);

        var existing = stored.Select(s => s.Id).ToHashSet();
        // Only new atoms need a sequence number; an engine's saves are nearly always updates of known atoms.
        long nextSeq = 0;
        if (atoms.Any(a => !existing.Contains(a.Id)))
        {
            await using var seq = Command(c, tx, $"SELECT COALESCE(MAX(seq), 0) FROM {Table("atom_details")} WHERE flow_detail_id = @f", ("f", IdValue(flowId)));
            nextSeq = Convert.ToInt64(await seq.ExecuteScalarAsync(ct).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture) + 1;
        }

        await InsertOrUpdateAtomsAsync(c, tx, flowId, atoms, existing, nextSeq, ct).ConfigureAwait(false);
    }

    /// <summary>Writes each atom: inserted with the next sequence number, or (when in <paramref name="existing"/>) updated.</summary>
    private async Task InsertOrUpdateAtomsAsync(DbConnection c, DbTransaction tx, Guid flowId, EncodedAtom[] atoms, HashSet<Guid>? existing, long nextSeq, CancellationToken ct)
    {
        if (atoms.Length == 0) return;
        var sql = $"INSERT INTO {Table("atom_details")} (flow_detail_id, id, seq, name, kind, state, data) " +
                  $"VALUES (@f, @id, @seq, @name, @kind, @state, {Json("@data")}) " +
                  "ON CONFLICT (flow_detail_id, id) DO UPDATE SET state = excluded.state, data = excluded.data";
        var rows = atoms.Select(a => new (string, object?)[]
        {
            ("f", IdValue(flowId)), ("id", IdValue(a.Id)), ("seq", existing is not null && existing.Contains(a.Id) ? 0L : nextSeq++),
            ("name", a.Name), ("kind", a.Kind), ("state", a.StateName), ("data", Encoding.UTF8.GetString(a.Data)),
        }).ToList();
        if (c.CanCreateBatch)
        {
            await using var batch = c.CreateBatch();
            batch.Transaction = ProviderTransaction(tx);
            foreach (var row in rows) AddBatchCommand(batch, sql, row);
            await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        else
        {
            await using var cmd = Command(c, tx, sql, rows[0]);
            foreach (var row in rows)
            {
                for (var i = 0; i < row.Length; i++)
                    cmd.Parameters[i].Value = row[i].Item2 ?? DBNull.Value;
                await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
        }
    }

    // ------------------------------------------------------------------ plumbing

    // Named as in the SQL text: Microsoft.Data.Sqlite otherwise tries each prefix ('@', '$', ':') on every bind, which
    // was a tenth of an atom save; Npgsql accepts either form.
    private static string Prefixed(string name) => name.StartsWith('@') ? name : "@" + name;

    /// <summary>A new parameter of a command or batch command, named as in the SQL text, with null as DBNull.</summary>
    private static DbParameter Bound(DbParameter parameter, string name, object? value)
    {
        parameter.ParameterName = Prefixed(name);
        parameter.Value = value ?? DBNull.Value;
        return parameter;
    }

    protected static DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var cmd = connection.CreateCommand();
        cmd.Transaction = ProviderTransaction(transaction);
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters) cmd.Parameters.Add(Bound(cmd.CreateParameter(), name, value));
        return cmd;
    }

    protected PersistenceException Malformed(string subject, string detail, Exception? inner = null) =>
        new($"Stored data for {subject} is malformed: {detail}. The store was changed outside TaskFlow or damaged; restore it from a backup or delete the object.", inner);

    private T Build<T>(string subject, Func<T> build)
    {
        try { return build(); }
        catch (ArgumentException ex) { throw Malformed(subject, ex.Message, ex); }
    }

    private Task<T> WriteAsync<T>(string operation, Func<Session, DbTransaction, Task<T>> body, CancellationToken cancellationToken) =>
        GatedWriteAsync(operation, () => InTransactionAsync(operation, write: true, body, cancellationToken), cancellationToken);

    /// <summary>A write that, when <paramref name="fence"/> is given, first checks the owner in the same transaction.</summary>
    private Task<T> WriteAsync<T>(string operation, Fence? fence, string fencedOperation, Func<Session, DbTransaction, Task<T>> body, CancellationToken cancellationToken) =>
        fence is null
            ? WriteAsync(operation, body, cancellationToken)
            : WriteAsync(operation, async (s, tx) =>
            {
                fence.Check(fencedOperation, await ReadOwnerAsync(s.Connection, tx, fence.FlowDetailId, ForShare, cancellationToken).ConfigureAwait(false));
                return await body(s, tx).ConfigureAwait(false);
            }, cancellationToken);

    // ------------------------------------------------------------------ owners

    /// <summary>The stored owner of a flow detail, read with <paramref name="lockClause"/>; null when none is stored.</summary>
    private async Task<FencingToken?> ReadOwnerAsync(DbConnection c, DbTransaction tx, Guid flowId, string lockClause, CancellationToken ct)
    {
        await using var cmd = Command(c, tx, $"SELECT owner, owner_epoch FROM {Table("flow_owners")} WHERE flow_detail_id = @f{lockClause}", ("f", IdValue(flowId)));
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        if (!await reader.ReadAsync(ct).ConfigureAwait(false)) return null;
        var owner = reader.GetString(0);
        var epoch = reader.GetInt64(1);
        return Build($"the owner of flow detail {flowId} in {StoreName}", () => new FencingToken(owner, epoch));
    }

    public Task TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken) =>
        WriteAsync($"take ownership of flow detail {flowDetailId} for {token}", async (s, tx) =>
        {
            // Compare-and-set in one statement: inserted, or raised only from a lower epoch.
            await using (var raise = Command(s.Connection, tx,
                $"INSERT INTO {Table("flow_owners")} (flow_detail_id, owner, owner_epoch) VALUES (@f, @owner, @epoch) " +
                "ON CONFLICT (flow_detail_id) DO UPDATE SET owner = excluded.owner, owner_epoch = excluded.owner_epoch " +
                "WHERE flow_owners.owner_epoch < excluded.owner_epoch",
                ("f", IdValue(flowDetailId)), ("owner", token.Owner), ("epoch", token.Epoch)))
                if (await raise.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1) return true;
            throw new StaleOwnerException(flowDetailId, OwnedPersistence.TakeOwnership, token,
                await ReadOwnerAsync(s.Connection, tx, flowDetailId, "", cancellationToken).ConfigureAwait(false));
        }, cancellationToken);

    private async Task<T> GatedWriteAsync<T>(string operation, Func<Task<T>> write, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (IsReadOnly) throw new PersistenceException($"{StoreName} was opened read-only: cannot {operation}.");
        await _schema.EnsureAsync(cancellationToken).ConfigureAwait(false);
        if (_writeGate is not null) await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await write().ConfigureAwait(false);
        }
        finally
        {
            _writeGate?.Release();
        }
    }

    private async Task<T> ReadAsync<T>(string operation, Func<Session, DbTransaction, Task<T>> body, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        await _schema.EnsureAsync(cancellationToken).ConfigureAwait(false);
        return await InTransactionAsync(operation, write: false, body, cancellationToken).ConfigureAwait(false);
    }

    private Task<T> InTransactionAsync<T>(string operation, bool write, Func<Session, DbTransaction, Task<T>> body, CancellationToken cancellationToken) =>
        InSessionAsync(operation, async session =>
        {
            await using var transaction = write
                ? await BeginWriteAsync(session, cancellationToken).ConfigureAwait(false)
                : await BeginReadAsync(session, cancellationToken).ConfigureAwait(false);
            var result = await body(session, transaction).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return result;
        }, cancellationToken);

    /// <summary>
    /// Runs <paramref name="body"/> on a kept-open connection. The connection goes back to the idle set after success,
    /// or after a refusal of ours (its transaction rolled back, the connection is fine); after a provider error or a
    /// cancellation it is closed, together with every idle one and the provider's pool — the server may have restarted,
    /// and the next call then starts on a fresh connection instead of failing again.
    /// </summary>
    private async Task<T> InSessionAsync<T>(string operation, Func<Session, Task<T>> body, CancellationToken cancellationToken)
    {
        Session? session = null;
        var keep = false;
        try
        {
            session = await RentAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var result = await body(session).ConfigureAwait(false);
                keep = true;
                return result;
            }
            catch (TaskFlowException)
            {
                keep = true;
                throw;
            }
        }
        catch (DbException ex)
        {
            throw Translate(ex, operation) ?? new PersistenceException($"{StoreName}: could not {operation}: {ex.Message}", ex);
        }
        finally
        {
            if (session is not null)
            {
                if (keep && session.Connection.State == ConnectionState.Open) Return(session);
                else Discard(session);
            }
        }
    }

    private async Task<Session> RentAsync(CancellationToken cancellationToken)
    {
        lock (_idle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_idle.TryPop(out var idle)) return idle;
        }
        return new Session(await OpenAsync(cancellationToken).ConfigureAwait(false));
    }

    private void Return(Session session)
    {
        lock (_idle)
        {
            if (!_disposed && _idle.Count < MaxIdleSessions)
            {
                _idle.Push(session);
                return;
            }
        }
        session.Dispose();
    }

    private void Discard(Session session)
    {
        session.Dispose();
        Session[] idle;
        lock (_idle)
        {
            idle = [.. _idle];
            _idle.Clear();
        }
        foreach (var s in idle) s.Dispose();
        ClearPool();
    }

    /// <summary>Drops the provider's pooled idle connections (after a failure that may have broken them all).</summary>
    protected abstract void ClearPool();

    /// <summary>
    /// A connection kept open between operations, with the commands of the hot paths prepared on it once (SQLite keeps
    /// the compiled statement in the command; PostgreSQL prepares on the server after a few uses, see the backend).
    /// </summary>
    protected sealed class Session(DbConnection connection) : IDisposable
    {
        private readonly Dictionary<string, DbCommand> _commands = new(StringComparer.Ordinal);

        public DbConnection Connection { get; } = connection;

        /// <summary>
        /// The command for <paramref name="sql"/> on this connection, created on first use and reused afterwards, with
        /// <paramref name="parameters"/> set (always given in the same order for one text). Not to be disposed by the caller.
        /// </summary>
        public DbCommand Reuse(DbTransaction? transaction, string sql, params ReadOnlySpan<(string Name, object? Value)> parameters)
        {
            if (!_commands.TryGetValue(sql, out var cmd))
            {
                cmd = Command(Connection, transaction, sql, parameters.ToArray());
                _commands.Add(sql, cmd);
                return cmd;
            }
            cmd.Transaction = ProviderTransaction(transaction);
            for (var i = 0; i < parameters.Length; i++)
                cmd.Parameters[i].Value = parameters[i].Value ?? DBNull.Value;
            return cmd;
        }

        public void Dispose()
        {
            foreach (var cmd in _commands.Values) cmd.Dispose();
            _commands.Clear();
            Connection.Dispose();
        }
    }

    /// <summary>What a command is given as its transaction: none for a <see cref="StatementTransaction"/>, which the provider does not know of.</summary>
    private static DbTransaction? ProviderTransaction(DbTransaction? transaction) => transaction is StatementTransaction ? null : transaction;

    /// <summary>
    /// A transaction begun, committed and rolled back by reused commands on a kept-open connection (for a provider that
    /// would otherwise build and compile its BEGIN and COMMIT text for every transaction). If the rollback fails the
    /// connection is closed, so it is never reused in the middle of a transaction.
    /// </summary>
    protected sealed class StatementTransaction(DbConnection connection, DbCommand commit, DbCommand rollback) : DbTransaction
    {
        private bool _ended;

        public override IsolationLevel IsolationLevel => IsolationLevel.Serializable;

        protected override DbConnection DbConnection => connection;

        public override void Commit()
        {
            ObjectDisposedException.ThrowIf(_ended, this);
            commit.ExecuteNonQuery();
            _ended = true;
        }

        public override void Rollback()
        {
            if (_ended) return;
            _ended = true;
            try
            {
                rollback.ExecuteNonQuery();
            }
            catch (DbException)
            {
                connection.Close();
                throw;
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_ended)
            {
                try
                {
                    Rollback();
                }
                catch (DbException)
                {
                    // The connection is closed (see Rollback), so it is discarded rather than reused; the error that
                    // ended the transaction early is the one reported.
                }
            }
            base.Dispose(disposing);
        }
    }

    /// <summary>Closes the kept-open connections (ones in use close when their operation ends).</summary>
    public virtual void Dispose()
    {
        Session[] idle;
        lock (_idle)
        {
            _disposed = true;
            idle = [.. _idle];
            _idle.Clear();
        }
        foreach (var s in idle) s.Dispose();
        _schema.Dispose();
        _writeGate?.Dispose();
    }
}
