using TaskFlow.Persistence;
using TaskFlow.States;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.TestUtilities;

/// <summary>Fencing across instances and processes, and the upgrade of stores written before owners were kept.</summary>
public abstract partial class DurablePersistenceBackendContract
{
    /// <summary>
    /// Turns the store into what schema version 1 wrote (no owners kept; everything else as is), as a store created by
    /// TaskFlow before fencing tokens looks.
    /// </summary>
    protected abstract Task DowngradeToSchemaVersion1Async();

    [Fact]
    public Task StoredOwner_SurvivesReopening() => RunAsync(async backend =>
    {
        var a = new FencingToken("conductor-a", 5);
        var (_, flow, _) = await OwnedFlowAsync(backend, a, TaskDetail.Create("x"));
        await backend.DisposeAsync();

        await using var reopened = Reopen(Clock);

        var refused = await Assert.ThrowsAsync<StaleOwnerException>(() => Fenced(reopened).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-b", 5)));
        Assert.Equal(a, refused.Current);
        var owned = await Fenced(reopened).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-b", 6));
        await owned.UpdateFlowStateAsync(flow.Id, FlowState.Running);
    });

    [Fact]
    public Task TwoInstances_TakingOwnershipAtOnce_OneWinsEachEpoch_AndTheOtherInstancesStaleWritesAreRefused() => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var (_, flow, _) = await OwnedFlowAsync(backend, new FencingToken("creator", 1), x);
        await using var other = Reopen(Clock);
        var instances = new[] { backend, other };
        IPersistenceBackend? previous = null;
        for (var epoch = 2; epoch <= 12; epoch++)
        {
            var attempts = await Task.WhenAll(instances.Select((instance, n) => Task.Run(async () =>
            {
                try
                {
                    return await Fenced(instance).TakeOwnershipAsync(flow.Id, new FencingToken($"host-{n}", epoch));
                }
                catch (StaleOwnerException)
                {
                    return null;
                }
            })));
            var winner = Assert.Single(attempts, a => a is not null)!;
            // The owner of the epoch before, on whichever instance it took ownership, is fenced out; the winner writes.
            if (previous is not null)
                await Assert.ThrowsAsync<StaleOwnerException>(() => previous.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("-1"))]));
            await winner.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json($"{epoch}"))]);
            previous = winner;
        }
        AssertSameJson(Json("12"), ((TaskDetail)(await other.GetFlowDetailAsync(flow.Id))!.Atoms[0]).Result, "x's result");
    });

    // The property a new owner relies on: once its TakeOwnershipAsync has returned, whatever it then reads is final as far
    // as the old owner is concerned. The old owner writes without pause from another instance meanwhile.
    [Fact]
    public Task TwoInstances_AStaleOwnerWritingWhileTheNextTakesOver_ChangesNothingAfterTheTakeOver() => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var (_, flow, _) = await OwnedFlowAsync(backend, new FencingToken("creator", 1), x);
        await using var other = Reopen(Clock);
        for (var round = 2; round <= 9; round += 2)
        {
            var stale = await Fenced(other).TakeOwnershipAsync(flow.Id, new FencingToken("old", round));
            using var stop = new CancellationTokenSource();
            var written = 0;
            var writer = Task.Run(async () =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    try
                    {
                        await stale.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json($"{round * 1000 + i}"))]);
                        Interlocked.Increment(ref written);
                    }
                    catch (StaleOwnerException)
                    {
                        return;
                    }
                }
            });
            while (Volatile.Read(ref written) < 3) await Task.Delay(1);

            await Fenced(backend).TakeOwnershipAsync(flow.Id, new FencingToken("new", round + 1));
            var read = ((TaskDetail)(await backend.GetFlowDetailAsync(flow.Id))!.Atoms[0]).Result;
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
            stop.Cancel();

            AssertSameJson(read, ((TaskDetail)(await backend.GetFlowDetailAsync(flow.Id))!.Atoms[0]).Result, $"x after the take-over of round {round}");
        }
    });

    [Fact]
    public Task SchemaVersion1Store_IsUpgradedInPlace_KeepsItsData_AndFencesWritesFromThenOn() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock) with { Metadata = Metadata() };
        await backend.SaveLogBookAsync(book);
        var flow = RichFlow(book.Id, Clock);
        await backend.SaveFlowDetailAsync(flow);
        var expected = (await backend.GetFlowDetailAsync(flow.Id))!;
        await backend.DisposeAsync();
        await DowngradeToSchemaVersion1Async();

        await using var upgraded = Reopen(Clock);
        await upgraded.EnsureSchemaAsync();

        Assert.Equal([book], await upgraded.ListLogBooksAsync());
        AssertSameFlow(expected, await upgraded.GetFlowDetailAsync(flow.Id));
        var a = new FencingToken("conductor-a", 1);
        var owned = await Fenced(upgraded).TakeOwnershipAsync(flow.Id, a);
        await owned.UpdateFlowStateAsync(flow.Id, FlowState.Running);
        await Fenced(upgraded).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-b", 2));
        await Assert.ThrowsAsync<StaleOwnerException>(() => owned.UpdateFlowStateAsync(flow.Id, FlowState.Success));
        Assert.Equal(FlowState.Running, (await upgraded.GetFlowDetailAsync(flow.Id))!.State);
        // Upgrading again is a no-op.
        await using var again = Reopen(Clock);
        await again.EnsureSchemaAsync();
        await Assert.ThrowsAsync<StaleOwnerException>(() => Fenced(again).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-c", 2)));
    });
}
