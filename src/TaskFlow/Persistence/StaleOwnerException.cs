namespace TaskFlow.Persistence;

/// <summary>
/// A fenced write (see <see cref="IFencedPersistenceBackend"/>) was refused because the writer is no longer the flow
/// detail's owner: a newer owner took the run over, or the flow detail was deleted. Nothing was written.
/// </summary>
public sealed class StaleOwnerException : PersistenceException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="flowDetailId">The flow detail.</param>
    /// <param name="operation">The write that was refused, e.g. "save atom details".</param>
    /// <param name="token">The token the writer held.</param>
    /// <param name="current">The stored owner's token; null when none is stored.</param>
    public StaleOwnerException(Guid flowDetailId, string operation, FencingToken token, FencingToken? current)
        : base(BuildMessage(flowDetailId, operation, token, current))
    {
        ArgumentNullException.ThrowIfNull(operation);
        ArgumentNullException.ThrowIfNull(token);
        FlowDetailId = flowDetailId;
        Operation = operation;
        Token = token;
        Current = current;
    }

    /// <summary>The flow detail the write was for.</summary>
    public Guid FlowDetailId { get; }

    /// <summary>The write that was refused: "take ownership", "save logbook", "save flow detail", "update flow state", "save atom details" or "delete flow detail".</summary>
    public string Operation { get; }

    /// <summary>The token the refused writer held.</summary>
    public FencingToken Token { get; }

    /// <summary>The flow detail's current owner as stored when the write was refused; null when none is stored (the flow detail was deleted).</summary>
    public FencingToken? Current { get; }

    private static string BuildMessage(Guid flowDetailId, string operation, FencingToken token, FencingToken? current) =>
        current is null
            ? $"Flow detail {flowDetailId}: '{operation}' by {token} was refused: no owner is stored for the flow detail any more (it was deleted). Nothing was written."
            : current.Epoch >= token.Epoch && current != token
                ? $"Flow detail {flowDetailId}: '{operation}' by {token} was refused: the flow detail's owner is now {current}, a newer claim that took the run over. Nothing was written; stop working on this run."
                : $"Flow detail {flowDetailId}: '{operation}' by {token} was refused: the flow detail's owner is {current}. Nothing was written.";
}
