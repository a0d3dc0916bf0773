namespace TaskFlow.Persistence;

/// <summary>
/// A persistence backend that can fence the writes of a flow detail's owner, so an owner that was replaced (its job was
/// claimed again after its lease ran out) cannot overwrite what the new owner saves, even with a write that was already
/// on its way when it was replaced. Every backend of TaskFlow implements it; conductors require it.
/// </summary>
/// <remarks>
/// <para>The backend keeps, next to each flow detail, the token of its current owner. <see cref="TakeOwnershipAsync"/>
/// raises it by compare-and-set; every write made through the returned backend checks, in the same transaction (or
/// under the same lock) as the write itself, that the stored token is still exactly the one it raised, and otherwise
/// writes nothing and throws <see cref="StaleOwnerException"/>. An owner takes ownership first and only then reads the
/// flow detail to resume it, so whatever a replaced owner managed to write before it was fenced out is what the new
/// owner reads.</para>
/// <para>The token is kept from the first claim on, before the flow detail itself exists, and is deleted with the flow
/// detail. Writes made on the backend directly (not through a returned backend) are not fenced.</para>
/// </remarks>
public interface IFencedPersistenceBackend : IPersistenceBackend
{
    /// <summary>
    /// Makes <paramref name="token"/> the owner of flow detail <paramref name="flowDetailId"/> (stored or not yet) if
    /// its epoch is higher than the stored owner's, and returns a view of this backend whose writes are all fenced by it.
    /// </summary>
    /// <returns>
    /// A backend that reads like this one and writes only while <paramref name="token"/> is still the flow detail's owner.
    /// It writes that flow detail (and logbooks) only: writes for another flow detail are refused with
    /// <see cref="ArgumentException"/>, and <see cref="IPersistenceBackend.DeleteLogBookAsync"/> and
    /// <see cref="IPersistenceBackend.ClearAllAsync"/> with <see cref="InvalidOperationException"/>. Disposing it does
    /// not dispose this backend.
    /// </returns>
    /// <exception cref="StaleOwnerException">The stored owner's epoch is already <paramref name="token"/>'s or higher; nothing was changed.</exception>
    Task<IPersistenceBackend> TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken = default);
}
