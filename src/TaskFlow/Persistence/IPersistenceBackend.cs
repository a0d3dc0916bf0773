using TaskFlow.Failures;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// Stores logbooks, flow details and atom details so a flow run survives its process (TaskFlow's persistence
/// backend and connection in one). Every method validates its input completely before writing, and every write is
/// atomic: it happens entirely or not at all. Implementations are safe to use from several threads at once.
/// </summary>
/// <remarks>
/// Backends create or upgrade their schema on first use (or when <see cref="EnsureSchemaAsync"/> is called), and
/// refuse a store whose schema version is newer than they know. Data read back is equal (<c>Equals</c>) to what was
/// saved; JSON values compare by <see cref="System.Text.Json.JsonElement.DeepEquals"/> (PostgreSQL's jsonb reorders
/// object keys). Lists are ordered by <c>CreatedAt</c>, then id; atoms by the order they were first saved.
/// </remarks>
public interface IPersistenceBackend : IAsyncDisposable
{
    /// <summary>Creates the store's schema, or upgrades it to the version this code writes.</summary>
    /// <exception cref="PersistenceException">The store's schema version is newer than this code knows; it is left unchanged.</exception>
    Task EnsureSchemaAsync(CancellationToken cancellationToken = default);

    /// <summary>Inserts or replaces a logbook's header (its flow details are saved separately).</summary>
    /// <exception cref="ArgumentException">The logbook is invalid (empty id or name, too large).</exception>
    Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default);

    /// <summary>The logbook, or <see langword="null"/> when there is none with that id.</summary>
    /// <exception cref="PersistenceException">The stored logbook is malformed.</exception>
    Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default);

    /// <summary>All logbooks, ordered by creation time then id.</summary>
    Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default);

    /// <summary>Deletes a logbook and, with it, all its flow details and their atoms.</summary>
    /// <returns>Whether the logbook existed.</returns>
    Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Inserts or replaces a flow detail's header and upserts all its atoms, atomically. Stored atoms that are not in
    /// <paramref name="flowDetail"/> are kept (TaskFlow's merge); atoms are matched by id.
    /// </summary>
    /// <exception cref="ArgumentException">The flow detail or one of its atoms is invalid.</exception>
    /// <exception cref="NotFoundException">Its logbook is not stored.</exception>
    /// <exception cref="PersistenceException">
    /// The flow detail is stored under another logbook, or an atom conflicts with a stored one (same id with another
    /// name or kind, or same name with another id).
    /// </exception>
    Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default);

    /// <summary>The flow detail with all its atoms, or <see langword="null"/> when there is none with that id.</summary>
    /// <exception cref="PersistenceException">The stored flow detail or one of its atoms is malformed.</exception>
    Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default);

    /// <summary>The logbook's flow details with their atoms, ordered by creation time then id.</summary>
    /// <exception cref="NotFoundException">The logbook is not stored.</exception>
    Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default);

    /// <summary>Deletes a flow detail and its atoms.</summary>
    /// <returns>Whether the flow detail existed.</returns>
    Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default);

    /// <summary>Sets a flow detail's state, and its <c>UpdatedAt</c> to the backend clock's now.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="state"/> is not a defined state.</exception>
    /// <exception cref="NotFoundException">The flow detail is not stored.</exception>
    Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default);

    /// <summary>
    /// Upserts a batch of atom details of one flow detail atomically (new atoms are appended), and sets the flow
    /// detail's <c>UpdatedAt</c> to the backend clock's now. Engines batch the writes of independent atoms here.
    /// </summary>
    /// <exception cref="ArgumentException">An atom is invalid, or two atoms in the batch share an id or a name.</exception>
    /// <exception cref="NotFoundException">The flow detail is not stored.</exception>
    /// <exception cref="PersistenceException">An atom conflicts with a stored one (same id with another name or kind, or same name with another id).</exception>
    Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default);

    /// <summary>Deletes every logbook, flow detail and atom detail (the schema stays). Meant for tests and tools.</summary>
    Task ClearAllAsync(CancellationToken cancellationToken = default);
}
