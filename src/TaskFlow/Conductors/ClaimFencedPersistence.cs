using TaskFlow.Jobs;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Conductors;

/// <summary>
/// The persistence a conductor gives the engine of one job: the backend's view for the claim's fencing token
/// (<see cref="IFencedPersistenceBackend.TakeOwnershipAsync"/>), whose every write the store refuses, in the same
/// transaction, once a newer claim took the flow detail over. On top of that, once this process knows its claim is
/// lost (the claim-lost token fired) it stops writing at once, without asking the store. Reads pass through.
/// </summary>
/// <remarks>
/// The first refused write is kept in <see cref="Refusal"/> and fires <paramref name="refused"/>, which the conductor
/// links into the run's token: a refused write stops the whole run, not only the save that was refused.
/// </remarks>
internal sealed class ClaimFencedPersistence(IPersistenceBackend owned, Job job, CancellationToken claimLost, CancellationTokenSource refused) : IPersistenceBackend
{
    private StaleOwnerException? _refusal;

    /// <summary>The first write the store refused because a newer claim owns the flow detail; null while none was.</summary>
    public StaleOwnerException? Refusal => Volatile.Read(ref _refusal);

    private void ThrowIfClaimLost()
    {
        if (claimLost.IsCancellationRequested)
            throw new PersistenceException(
                $"{job}: the claim on the job was lost (its lease ran out), so this run no longer saves to flow detail {job.FlowDetailId}; whoever claims the job next resumes it.");
    }

    private async Task<T> FencedAsync<T>(Func<Task<T>> write)
    {
        ThrowIfClaimLost();
        try
        {
            return await write().ConfigureAwait(false);
        }
        catch (StaleOwnerException ex)
        {
            if (Interlocked.CompareExchange(ref _refusal, ex, null) is null)
            {
                try
                {
                    refused.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The dispatch already ended.
                }
            }
            throw;
        }
    }

    private Task FencedAsync(Func<Task> write) => FencedAsync(async () =>
    {
        await write().ConfigureAwait(false);
        return true;
    });

    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => owned.EnsureSchemaAsync(cancellationToken);

    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) =>
        FencedAsync(() => owned.SaveLogBookAsync(logBook, cancellationToken));

    public Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) => owned.GetLogBookAsync(logBookId, cancellationToken);

    public Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default) => owned.ListLogBooksAsync(cancellationToken);

    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) =>
        FencedAsync(() => owned.DeleteLogBookAsync(logBookId, cancellationToken));

    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) =>
        FencedAsync(() => owned.SaveFlowDetailAsync(flowDetail, cancellationToken));

    public Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => owned.GetFlowDetailAsync(flowDetailId, cancellationToken);

    public Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default) => owned.ListFlowDetailsAsync(logBookId, cancellationToken);

    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) =>
        FencedAsync(() => owned.DeleteFlowDetailAsync(flowDetailId, cancellationToken));

    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) =>
        FencedAsync(() => owned.UpdateFlowStateAsync(flowDetailId, state, cancellationToken));

    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        FencedAsync(() => owned.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken));

    public Task ClearAllAsync(CancellationToken cancellationToken = default) => FencedAsync(() => owned.ClearAllAsync(cancellationToken));

    // The conductor owns the real backend; the engine never disposes its persistence anyway.
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    public override string ToString() => $"{owned} (fenced by the claim on {job})";
}
