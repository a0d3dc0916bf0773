using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>The owner of one flow detail whose writes a backend fences: the flow detail and the token that was raised.</summary>
internal sealed record Fence(Guid FlowDetailId, FencingToken Token)
{
    /// <summary>The refusal of <paramref name="operation"/> when the stored owner is <paramref name="stored"/>.</summary>
    public StaleOwnerException Refused(string operation, FencingToken? stored) => new(FlowDetailId, operation, Token, stored);

    /// <summary>Throws <see cref="StaleOwnerException"/> unless <paramref name="stored"/> is exactly this fence's token.</summary>
    public void Check(string operation, FencingToken? stored)
    {
        if (stored != Token) throw Refused(operation, stored);
    }
}

/// <summary>
/// The writes of a backend with an optional fence (see <see cref="IFencedPersistenceBackend"/>): with one, each checks
/// it in the same transaction (or under the same lock) as the write; without one (null) it is the backend's plain write.
/// </summary>
internal interface IFencedStore
{
    /// <summary>Stores <paramref name="token"/> as the flow detail's owner if its epoch is higher than the stored one's; otherwise throws <see cref="StaleOwnerException"/>.</summary>
    Task TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken);

    Task SaveLogBookAsync(LogBook logBook, Fence? fence, CancellationToken cancellationToken);

    Task SaveFlowDetailAsync(FlowDetail flowDetail, Fence? fence, CancellationToken cancellationToken);

    Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, Fence? fence, CancellationToken cancellationToken);

    Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, Fence? fence, CancellationToken cancellationToken);

    Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, Fence? fence, CancellationToken cancellationToken);
}

/// <summary>
/// What <see cref="IFencedPersistenceBackend.TakeOwnershipAsync"/> returns: reads go to the backend, writes of the owned
/// flow detail (and logbooks) to its fenced writes; anything else is refused.
/// </summary>
internal sealed class OwnedPersistence(IPersistenceBackend backend, IFencedStore store, Fence fence) : IPersistenceBackend
{
    internal const string TakeOwnership = "take ownership";
    internal const string SaveLogBook = "save logbook";
    internal const string SaveFlowDetail = "save flow detail";
    internal const string UpdateFlowState = "update flow state";
    internal const string SaveAtomDetails = "save atom details";
    internal const string DeleteFlowDetail = "delete flow detail";

    /// <summary>Raises the owner and returns the fenced view (what every backend's <c>TakeOwnershipAsync</c> does).</summary>
    public static async Task<IPersistenceBackend> TakeAsync(IPersistenceBackend backend, IFencedStore store, Guid flowDetailId, FencingToken token, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (flowDetailId == Guid.Empty) throw new ArgumentException("The flow detail id must not be empty.", nameof(flowDetailId));
        await store.TakeOwnershipAsync(flowDetailId, token, cancellationToken).ConfigureAwait(false);
        return new OwnedPersistence(backend, store, new Fence(flowDetailId, token));
    }

    private void RequireOwned(Guid flowDetailId, string operation)
    {
        if (flowDetailId != fence.FlowDetailId)
            throw new ArgumentException(
                $"This backend was handed to {fence.Token} for flow detail {fence.FlowDetailId} only; it cannot {operation} for flow detail {flowDetailId}.",
                nameof(flowDetailId));
    }

    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => backend.EnsureSchemaAsync(cancellationToken);

    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) => store.SaveLogBookAsync(logBook, fence, cancellationToken);

    public Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => backend.GetLogBookAsync(logBookId, cancellationToken);

    public Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default) => backend.ListLogBooksAsync(cancellationToken);

    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException($"The backend handed to {fence.Token} for flow detail {fence.FlowDetailId} does not delete logbooks; use the backend itself.");

    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(flowDetail);
        RequireOwned(flowDetail.Id, SaveFlowDetail);
        return store.SaveFlowDetailAsync(flowDetail, fence, cancellationToken);
    }

    public Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => backend.GetFlowDetailAsync(flowDetailId, cancellationToken);

    public Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default) => backend.ListFlowDetailsAsync(logBookId, cancellationToken);

    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default)
    {
        RequireOwned(flowDetailId, DeleteFlowDetail);
        return store.DeleteFlowDetailAsync(flowDetailId, fence, cancellationToken);
    }

    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default)
    {
        RequireOwned(flowDetailId, UpdateFlowState);
        return store.UpdateFlowStateAsync(flowDetailId, state, fence, cancellationToken);
    }

    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default)
    {
        RequireOwned(flowDetailId, SaveAtomDetails);
        return store.SaveAtomDetailsAsync(flowDetailId, atomDetails, fence, cancellationToken);
    }

    public Task ClearAllAsync(CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException($"The backend handed to {fence.Token} for flow detail {fence.FlowDetailId} does not clear the store; use the backend itself.");

    // The backend belongs to whoever created it.
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    public override string ToString() => $"{backend} (writes fenced for {fence.Token} on flow detail {fence.FlowDetailId})";
}

/// <summary>The JSON form of a stored owner, <c>{"owner":"…","epoch":N}</c> (the directory backend's owner files).</summary>
internal static class OwnerCodec
{
    public static byte[] Encode(FencingToken token)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("owner", token.Owner);
            writer.WriteNumber("epoch", token.Epoch);
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <exception cref="PersistenceException">The document is not an owner.</exception>
    public static FencingToken Decode(byte[] data, string where)
    {
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(data);
            var root = document.RootElement;
            if (root.ValueKind == System.Text.Json.JsonValueKind.Object
                && root.TryGetProperty("owner", out var owner) && owner.ValueKind == System.Text.Json.JsonValueKind.String
                && root.TryGetProperty("epoch", out var epoch) && epoch.ValueKind == System.Text.Json.JsonValueKind.Number
                && epoch.TryGetInt64(out var value) && value >= 1 && !string.IsNullOrWhiteSpace(owner.GetString()))
                return new FencingToken(owner.GetString()!, value);
        }
        catch (System.Text.Json.JsonException ex)
        {
            throw new PersistenceException($"The owner stored in {where} is not valid JSON ({ex.Message}); expected {{\"owner\":\"…\",\"epoch\":N}}.", ex);
        }
        catch (ArgumentException ex)
        {
            throw new PersistenceException($"The owner stored in {where} is malformed: {ex.Message}", ex);
        }
        throw new PersistenceException($"The owner stored in {where} is malformed; expected {{\"owner\":\"…\",\"epoch\":N}} with an epoch of 1 or more.");
    }
}
