using TaskFlow.Jobs;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Conductors;

/// <summary>
/// The persistence a conductor gives the engine of one job: every write first checks that the conductor still holds
/// the job's claim, so an engine whose claim was lost (its lease ran out, someone else may be resuming the run) stops
/// writing to the flow detail the new owner is using. Reads pass through.
/// </summary>
/// <remarks>
/// The check is made by this process just before the write, and boards fire the claim-lost token before the lease can
/// have run out on the server; a write already in flight when the token fires is the one that can still land.
/// </remarks>
internal sealed class ClaimFencedPersistence(IPersistenceBackend inner, Job job, CancellationToken claimLost) : IPersistenceBackend
{
    private void ThrowIfClaimLost()
    {
        if (claimLost.IsCancellationRequested)
            throw new PersistenceException(
                $"{job}: the claim on the job was lost (its lease ran out), so this run no longer saves to flow detail {job.FlowDetailId}; whoever claims the job next resumes it.");
    }

    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => inner.EnsureSchemaAsync(cancellationToken);

    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.SaveLogBookAsync(logBook, cancellationToken);
    }

    public Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => inner.GetLogBookAsync(logBookId, cancellationToken);

    public Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default) => inner.ListLogBooksAsync(cancellationToken);

    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.DeleteLogBookAsync(logBookId, cancellationToken);
    }

    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.SaveFlowDetailAsync(flowDetail, cancellationToken);
    }

    public Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => inner.GetFlowDetailAsync(flowDetailId, cancellationToken);

    public Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default) => inner.ListFlowDetailsAsync(logBookId, cancellationToken);

    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.DeleteFlowDetailAsync(flowDetailId, cancellationToken);
    }

    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.UpdateFlowStateAsync(flowDetailId, state, cancellationToken);
    }

    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken);
    }

    public Task ClearAllAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfClaimLost();
        return inner.ClearAllAsync(cancellationToken);
    }

    // The conductor owns the real backend; the engine never disposes its persistence anyway.
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    public override string ToString() => $"{inner} (fenced by the claim on {job})";
}
