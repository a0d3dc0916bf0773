using TaskFlow.Persistence;
using TaskFlow.States;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.TestUtilities;

/// <summary>The fencing contract (<see cref="IFencedPersistenceBackend"/>): every backend of TaskFlow implements it.</summary>
public abstract partial class PersistenceBackendContract
{
    protected static IFencedPersistenceBackend Fenced(IPersistenceBackend backend) => Assert.IsAssignableFrom<IFencedPersistenceBackend>(backend);

    /// <summary>Takes ownership of a new flow detail for <paramref name="token"/> and creates it (in a new logbook) through the owner's view.</summary>
    protected async Task<(IPersistenceBackend Owned, FlowDetail Flow, LogBook Book)> OwnedFlowAsync(IPersistenceBackend backend, FencingToken token, params AtomDetail[] atoms)
    {
        var book = LogBook.Create("owned-book", Clock);
        var flow = FlowDetail.Create(book.Id, "owned", Clock) with { Atoms = atoms };
        var owned = await Fenced(backend).TakeOwnershipAsync(flow.Id, token);
        await owned.SaveLogBookAsync(book);
        await owned.SaveFlowDetailAsync(flow);
        return (owned, flow, book);
    }

    private static void AssertRefused(StaleOwnerException refusal, Guid flowId, string operation, FencingToken held, FencingToken? current)
    {
        Assert.Equal(flowId, refusal.FlowDetailId);
        Assert.Equal(operation, refusal.Operation);
        Assert.Equal(held, refusal.Token);
        Assert.Equal(current, refusal.Current);
        Assert.Contains(flowId.ToString(), refusal.Message);
        Assert.Contains($"epoch {held.Epoch}", refusal.Message);
        if (current is not null) Assert.Contains($"epoch {current.Epoch}", refusal.Message);
    }

    [Fact]
    public Task TakeOwnership_BeforeTheFlowDetailExists_TheOwnerCreatesAndSavesTheWholeRun() => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var (owned, flow, book) = await OwnedFlowAsync(backend, new FencingToken("conductor-a", 1), x);

        // Same epoch: every write of the owner is accepted.
        await owned.SaveAtomDetailsAsync(flow.Id, [x with { State = AtomState.Running }]);
        await owned.UpdateFlowStateAsync(flow.Id, FlowState.Running);
        await owned.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("42")), TaskDetail.Create("y")]);
        await owned.SaveFlowDetailAsync(flow with { Metadata = Metadata(), Atoms = [] });
        await owned.UpdateFlowStateAsync(flow.Id, FlowState.Success);

        var stored = (await backend.GetFlowDetailAsync(flow.Id))!;
        Assert.Equal(FlowState.Success, stored.State);
        Assert.Equal(["x", "y"], stored.Atoms.Select(a => a.Name));
        AssertSameJson(Json("42"), ((TaskDetail)stored.Atoms[0]).Result, "x's result");
        Assert.Equal(book, await owned.GetLogBookAsync(book.Id));
        AssertSameFlow(stored, await owned.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task StaleOwner_EveryWriteIsRefusedNamingTheWriteAndBothEpochs_AndNothingChanges() => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var a = new FencingToken("conductor-a", 1);
        var (stale, flow, book) = await OwnedFlowAsync(backend, a, x, TaskDetail.Create("y"));
        await stale.SaveAtomDetailsAsync(flow.Id, [x with { State = AtomState.Running }]);
        var b = new FencingToken("conductor-b", 2);
        var current = await Fenced(backend).TakeOwnershipAsync(flow.Id, b);
        await current.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("1"))]);
        await current.UpdateFlowStateAsync(flow.Id, FlowState.Success);
        var before = (await backend.GetFlowDetailAsync(flow.Id))!;

        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => stale.SaveAtomDetailsAsync(flow.Id, [x with { State = AtomState.Running }])),
            flow.Id, "save atom details", a, b);
        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => stale.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create("new")])),
            flow.Id, "save atom details", a, b);
        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => stale.UpdateFlowStateAsync(flow.Id, FlowState.Running)),
            flow.Id, "update flow state", a, b);
        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => stale.SaveFlowDetailAsync(flow with { State = FlowState.Running, Atoms = [x] })),
            flow.Id, "save flow detail", a, b);
        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => stale.SaveLogBookAsync(book with { Name = "renamed" })),
            flow.Id, "save logbook", a, b);
        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => stale.DeleteFlowDetailAsync(flow.Id)),
            flow.Id, "delete flow detail", a, b);

        AssertSameFlow(before, await backend.GetFlowDetailAsync(flow.Id));
        Assert.Equal(book, await backend.GetLogBookAsync(book.Id));
        // The stale owner still reads; the current one still writes.
        AssertSameFlow(before, await stale.GetFlowDetailAsync(flow.Id));
        await current.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create("z")]);
        Assert.Equal(3, (await backend.GetFlowDetailAsync(flow.Id))!.Atoms.Count);
    });

    [Fact]
    public Task TakeOwnership_WithAnEpochNotAboveTheStoredOne_IsRefused_AndTheStoredOwnerKeepsWriting() => RunAsync(async backend =>
    {
        var b = new FencingToken("conductor-b", 3);
        var (owned, flow, _) = await OwnedFlowAsync(backend, b, TaskDetail.Create("x"));

        foreach (var lower in new[] { new FencingToken("conductor-a", 2), new FencingToken("conductor-a", 3), b, new FencingToken("conductor-b", 1) })
            AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => Fenced(backend).TakeOwnershipAsync(flow.Id, lower)),
                flow.Id, "take ownership", lower, b);
        await owned.UpdateFlowStateAsync(flow.Id, FlowState.Running);

        var c = new FencingToken("conductor-c", 4);
        var newer = await Fenced(backend).TakeOwnershipAsync(flow.Id, c);
        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => owned.UpdateFlowStateAsync(flow.Id, FlowState.Success)),
            flow.Id, "update flow state", b, c);
        await newer.UpdateFlowStateAsync(flow.Id, FlowState.Success);
        Assert.Equal(FlowState.Success, (await backend.GetFlowDetailAsync(flow.Id))!.State);
    });

    [Fact]
    public Task TakeOwnership_ManyAtOnce_TheHighestEpochWinsAndOneOwnerPerEpoch_AndOnlyTheWinnerWrites() => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var (_, flow, _) = await OwnedFlowAsync(backend, new FencingToken("creator", 1), x);
        // Epochs 2..9 in a shuffled order, and four claimers of epoch 10 at the same moment.
        var tokens = Enumerable.Range(2, 8).Select(e => new FencingToken($"owner-{e}", e)).OrderBy(_ => Random.Shared.Next())
            .Concat(Enumerable.Range(0, 4).Select(i => new FencingToken($"owner-10-{i}", 10))).ToArray();

        var outcomes = await Task.WhenAll(tokens.Select(token => Task.Run(async () =>
        {
            try
            {
                return (token, Owned: await Fenced(backend).TakeOwnershipAsync(flow.Id, token));
            }
            catch (StaleOwnerException)
            {
                return (token, Owned: (IPersistenceBackend?)null);
            }
        })));

        var winners = outcomes.Where(o => o.Owned is not null && o.token.Epoch == 10).ToList();
        var winner = Assert.Single(winners);
        foreach (var (token, owned) in outcomes.Where(o => o.Owned is not null && o.token != winner.token))
            AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => owned!.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json($"{token.Epoch}"))])),
                flow.Id, "save atom details", token, winner.token);
        await winner.Owned!.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("10"))]);
        AssertSameJson(Json("10"), ((TaskDetail)(await backend.GetFlowDetailAsync(flow.Id))!.Atoms[0]).Result, "x's result");
    });

    [Fact]
    public Task OwnedBackend_WritesOnlyItsOwnFlowDetail_AndNeitherDeletesLogBooksNorClears() => RunAsync(async backend =>
    {
        var (owned, flow, book) = await OwnedFlowAsync(backend, new FencingToken("conductor-a", 1));
        var other = await SavedFlowAsync(backend, book.Id, "other");

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => owned.SaveAtomDetailsAsync(other.Id, [TaskDetail.Create("x")]));
        Assert.Contains(other.Id.ToString(), ex.Message);
        Assert.Contains(flow.Id.ToString(), ex.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => owned.SaveFlowDetailAsync(other));
        await Assert.ThrowsAsync<ArgumentException>(() => owned.UpdateFlowStateAsync(other.Id, FlowState.Running));
        await Assert.ThrowsAsync<ArgumentException>(() => owned.DeleteFlowDetailAsync(other.Id));
        Assert.Throws<InvalidOperationException>(() => { _ = owned.DeleteLogBookAsync(book.Id); });
        Assert.Throws<InvalidOperationException>(() => { _ = owned.ClearAllAsync(); });
        Assert.Equal(2, (await backend.ListFlowDetailsAsync(book.Id)).Count);
        // Disposing the view leaves the backend usable.
        await owned.DisposeAsync();
        Assert.NotNull(await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task DeletingTheFlowDetail_DropsItsOwner_SoTheOldOwnersWritesAreRefused() => RunAsync(async backend =>
    {
        var a = new FencingToken("conductor-a", 7);
        var (owned, flow, book) = await OwnedFlowAsync(backend, a, TaskDetail.Create("x"));

        Assert.True(await backend.DeleteFlowDetailAsync(flow.Id));

        AssertRefused(await Assert.ThrowsAsync<StaleOwnerException>(() => owned.SaveFlowDetailAsync(flow)), flow.Id, "save flow detail", a, null);
        Assert.Null(await backend.GetFlowDetailAsync(flow.Id));
        // Gone with the logbook and with a clear too: a new owner starts afresh.
        var again = await Fenced(backend).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-b", 1));
        await again.SaveFlowDetailAsync(flow);
        Assert.True(await backend.DeleteLogBookAsync(book.Id));
        await (await Fenced(backend).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-c", 1))).SaveLogBookAsync(book);
        await backend.ClearAllAsync();
        await Fenced(backend).TakeOwnershipAsync(flow.Id, new FencingToken("conductor-d", 1));
    });

    [Fact]
    public Task TakeOwnership_InvalidArguments_AreRefused() => RunAsync(async backend =>
    {
        await Assert.ThrowsAsync<ArgumentNullException>(() => Fenced(backend).TakeOwnershipAsync(Guid.NewGuid(), null!));
        await Assert.ThrowsAsync<ArgumentException>(() => Fenced(backend).TakeOwnershipAsync(Guid.Empty, new FencingToken("a", 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FencingToken("a", 0));
        Assert.Throws<ArgumentException>(() => new FencingToken(" ", 1));
    });
}
