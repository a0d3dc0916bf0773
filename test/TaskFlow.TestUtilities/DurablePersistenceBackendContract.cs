using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.TestUtilities;

/// <summary>The contract of backends whose data outlives the backend instance: reopening and schema versions.</summary>
public abstract partial class DurablePersistenceBackendContract : PersistenceBackendContract
{
    /// <summary>The schema version the backend writes.</summary>
    protected abstract int SupportedSchemaVersion { get; }

    /// <summary>A new backend instance on the same store as <see cref="PersistenceBackendContract.Backend"/>.</summary>
    protected abstract IPersistenceBackend Reopen(TimeProvider clock);

    /// <summary>A saved flow detail named "shared" (in a new logbook) holding <paramref name="atoms"/>, for tests of two instances.</summary>
    private async Task<FlowDetail> SharedFlowAsync(IPersistenceBackend backend, params AtomDetail[] atoms)
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var flow = FlowDetail.Create(book.Id, "shared", Clock) with { Atoms = atoms };
        await backend.SaveFlowDetailAsync(flow);
        return flow;
    }

    /// <summary>Writes a schema version into the store directly, as a newer (or older) TaskFlow would have.</summary>
    protected abstract Task WriteSchemaVersionAsync(int version);

    /// <summary>A new backend instance on the same store, opened read-only (the backend options' <c>ReadOnly</c>).</summary>
    protected abstract IPersistenceBackend ReopenReadOnly(TimeProvider clock);

    [Fact]
    public Task ReadOnly_ReadsWhatIsStored_RefusesEveryWrite_AndChangesNothing() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var flow = RichFlow(book.Id, Clock);
        await backend.SaveFlowDetailAsync(flow);
        var expected = (await backend.GetFlowDetailAsync(flow.Id))!;

        await using (var reader = ReopenReadOnly(Clock))
        {
            await reader.EnsureSchemaAsync();
            Assert.Equal([book], await reader.ListLogBooksAsync());
            AssertSameFlow(expected, await reader.GetFlowDetailAsync(flow.Id));
            Assert.Single(await reader.ListFlowDetailsAsync(book.Id));
            var writes = new Func<Task>[]
            {
                () => reader.SaveLogBookAsync(LogBook.Create("other", Clock)),
                () => reader.SaveFlowDetailAsync(FlowDetail.Create(book.Id, "other", Clock)),
                () => reader.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create("other")]),
                () => reader.UpdateFlowStateAsync(flow.Id, FlowState.Failure),
                () => reader.DeleteFlowDetailAsync(flow.Id),
                () => reader.DeleteLogBookAsync(book.Id),
                () => reader.ClearAllAsync(),
            };
            foreach (var write in writes)
            {
                var ex = await Assert.ThrowsAsync<PersistenceException>(write);
                Assert.Contains("read-only", ex.Message);
            }
        }

        Assert.Equal([book], await backend.ListLogBooksAsync());
        AssertSameFlow(expected, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task ReadOnly_NewerSchema_IsRefused() => RunAsync(async backend =>
    {
        await backend.SaveLogBookAsync(LogBook.Create("book", Clock));
        await WriteSchemaVersionAsync(SupportedSchemaVersion + 3);

        await using var reader = ReopenReadOnly(Clock);
        var ex = await Assert.ThrowsAsync<PersistenceException>(() => reader.ListLogBooksAsync());
        Assert.Contains($"schema version {SupportedSchemaVersion + 3}", ex.Message);
    });

    [Fact]
    public Task ReopenAfterDispose_EverythingIsStillThere() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock) with { Metadata = Metadata() };
        await backend.SaveLogBookAsync(book);
        var flow = RichFlow(book.Id, Clock);
        await backend.SaveFlowDetailAsync(flow);
        var extra = TaskDetail.Create("extra").WithSuccess(Json("\"late\""));
        await backend.SaveAtomDetailsAsync(flow.Id, [extra]);
        await backend.UpdateFlowStateAsync(flow.Id, FlowState.Suspended);
        var expected = (await backend.GetFlowDetailAsync(flow.Id))!;
        await backend.DisposeAsync();

        await using var reopened = Reopen(Clock);

        Assert.Equal([book], await reopened.ListLogBooksAsync());
        var loaded = await reopened.GetFlowDetailAsync(flow.Id);
        AssertSameFlow(expected, loaded);
        Assert.Equal(FlowState.Suspended, loaded!.State);
        AssertSameAtom(extra, loaded.Atoms[^1]);
        // The reopened store accepts writes too.
        await reopened.SaveAtomDetailsAsync(flow.Id, [extra.WithReverted(null)]);
        Assert.Equal(AtomState.Reverted, (await reopened.GetFlowDetailAsync(flow.Id))!.FindAtom("extra")!.State);
    });

    [Fact]
    public Task EnsureSchemaAsync_Repeated_AndOnAnExistingStore_KeepsData() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        await backend.EnsureSchemaAsync();
        await backend.EnsureSchemaAsync();

        await using var second = Reopen(Clock);
        await second.EnsureSchemaAsync();

        Assert.Equal(book, await second.GetLogBookAsync(book.Id));
    });

    [Fact]
    public Task NewerSchemaVersion_IsRefusedWithBothVersions_AndTheStoreIsLeftAlone() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        var newer = SupportedSchemaVersion + 41;
        await WriteSchemaVersionAsync(newer);

        await using (var reopened = Reopen(Clock))
        {
            var ex = await Assert.ThrowsAsync<PersistenceException>(() => reopened.EnsureSchemaAsync());
            Assert.Contains($"schema version {newer}", ex.Message);
            Assert.Contains($"up to {SupportedSchemaVersion}", ex.Message);
        }
        await using (var reopened = Reopen(Clock))
        {
            // Without an explicit EnsureSchemaAsync the first operation checks, and refuses, too.
            await Assert.ThrowsAsync<PersistenceException>(() => reopened.SaveLogBookAsync(LogBook.Create("must not be written", Clock)));
            await Assert.ThrowsAsync<PersistenceException>(() => reopened.ListLogBooksAsync());
        }

        await WriteSchemaVersionAsync(SupportedSchemaVersion);
        await using var restored = Reopen(Clock);
        Assert.Equal([book], await restored.ListLogBooksAsync());
    });

    [Fact]
    public Task TwoInstancesOnOneStore_ParallelWrites_LoseNothing() => RunAsync(async backend =>
    {
        var flow = await SharedFlowAsync(backend);
        await using var second = Reopen(Clock);

        await Task.WhenAll(new[] { backend, second }.Select((instance, n) => Task.Run(async () =>
        {
            for (var i = 0; i < 15; i++)
                await instance.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create($"i{n}-{i}").WithSuccess(Json(i.ToString(System.Globalization.CultureInfo.InvariantCulture)))]);
        })));

        var loaded = (await backend.GetFlowDetailAsync(flow.Id))!;
        Assert.Equal(30, loaded.Atoms.Count);
        Assert.Equal(30, loaded.Atoms.Select(a => a.Name).Distinct().Count());
    });

    [Fact]
    public Task TwoInstances_OneDeletesOrRecreatesTheFlow_TheOthersSavesFollowWhatIsStored() => RunAsync(async backend =>
    {
        var x = TaskDetail.Create("x");
        var flow = await SharedFlowAsync(backend, x);
        // Updates of a known atom, so whatever this instance keeps between saves is warm.
        await backend.SaveAtomDetailsAsync(flow.Id, [x with { State = AtomState.Running }]);
        await backend.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("1"))]);
        await using var other = Reopen(Clock);

        // Deleted by the other instance: reported, and nothing comes back.
        Assert.True(await other.DeleteFlowDetailAsync(flow.Id));
        var missing = await Assert.ThrowsAsync<NotFoundException>(() => backend.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("2"))]));
        Assert.Contains(flow.Id.ToString(), missing.Message);
        Assert.Null(await other.GetFlowDetailAsync(flow.Id));

        // Re-created with the same atom id as another kind: the first instance's task detail is refused.
        var recreated = flow with { Atoms = [new RetryDetail { Id = x.Id, Name = "x" }] };
        await other.SaveFlowDetailAsync(recreated);
        var kind = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("3"))]));
        Assert.Contains("retry", kind.Message);
        AssertSameFlow(recreated, await other.GetFlowDetailAsync(flow.Id));

        // Re-created with the name 'x' under a new id: the old id cannot take the name back.
        Assert.True(await other.DeleteFlowDetailAsync(flow.Id));
        var newX = TaskDetail.Create("x");
        var again = flow with { Atoms = [newX] };
        await other.SaveFlowDetailAsync(again);
        var name = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [x.WithSuccess(Json("4"))]));
        Assert.Contains(newX.Id.ToString(), name.Message);
        AssertSameFlow(again, await backend.GetFlowDetailAsync(flow.Id));

        // Renamed rows are refused too: the stored 'x' cannot be saved as 'y' by either instance.
        await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [newX with { Name = "y" }]));

        // And both instances keep working on what is stored.
        await backend.SaveAtomDetailsAsync(flow.Id, [newX.WithSuccess(Json("5"))]);
        await other.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create("z")]);
        var loaded = (await other.GetFlowDetailAsync(flow.Id))!;
        Assert.Equal(["x", "z"], loaded.Atoms.Select(a => a.Name));
        Assert.Equal(AtomState.Success, loaded.Atoms[0].State);
    });

    // Two hosts saving the same atoms of one flow in opposite orders: the saves wait for each other, none fails
    // (a server that locks rows in batch order would find a deadlock and abort one).
    [Fact]
    public Task TwoInstances_SavingTheSameAtomsInOppositeOrders_WaitForEachOther() => RunAsync(async backend =>
    {
        var atoms = Enumerable.Range(0, 10).Select(i => TaskDetail.Create($"t{i}")).ToArray();
        var flow = await SharedFlowAsync(backend, atoms);
        await using var other = Reopen(Clock);

        await Task.WhenAll(new[] { backend, other }.Select((instance, n) => Task.Run(async () =>
        {
            for (var round = 0; round < 150; round++)
            {
                var batch = atoms.Select(a => a.WithSuccess(Json($"{n}"))).ToArray<AtomDetail>();
                if (n == 1) Array.Reverse(batch);
                await instance.SaveAtomDetailsAsync(flow.Id, batch);
            }
        })));

        var loaded = (await backend.GetFlowDetailAsync(flow.Id))!;
        // Each batch was saved whole: every atom holds the same instance's value.
        Assert.Single(loaded.Atoms.Select(a => ((TaskDetail)a).Result!.Value.GetRawText()).Distinct());
    });

    // Backends may insert a new flow's atoms without looking for stored ones; two hosts creating the same flow at once
    // must still meet the merge rules: the later save merges into the first or is refused with the rule it breaks.
    [Fact]
    public Task TwoInstances_CreatingTheSameFlowAtOnce_MergeOrRefuseByTheRules() => RunAsync(async backend =>
    {
        var book = LogBook.Create("book", Clock);
        await backend.SaveLogBookAsync(book);
        await using var other = Reopen(Clock);
        for (var round = 0; round < 15; round++)
        {
            var shared = TaskDetail.Create("shared");
            var flow = FlowDetail.Create(book.Id, $"f{round}", Clock);
            // The same atom, and one more each: both saves are accepted, in either order.
            var first = flow with { Atoms = [shared, TaskDetail.Create("one")] };
            var second = flow with { Atoms = [shared.WithSuccess(Json("1")), TaskDetail.Create("two")] };
            await Task.WhenAll(Task.Run(() => backend.SaveFlowDetailAsync(first)), Task.Run(() => other.SaveFlowDetailAsync(second)));
            var merged = (await backend.GetFlowDetailAsync(flow.Id))!;
            Assert.Equal(3, merged.Atoms.Count);
            Assert.Equal("shared", merged.Atoms[0].Name);
            Assert.Equal(["one", "shared", "two"], merged.Atoms.Select(a => a.Name).Order());

            // The name 'clash' under two ids: exactly one save wins, the other is refused naming the stored atom.
            var flow2 = FlowDetail.Create(book.Id, $"g{round}", Clock);
            var mine = flow2 with { Atoms = [TaskDetail.Create("clash")] };
            var theirs = flow2 with { Atoms = [TaskDetail.Create("clash")] };
            var saves = new[] { Task.Run(() => backend.SaveFlowDetailAsync(mine)), Task.Run(() => other.SaveFlowDetailAsync(theirs)) };
            await Task.WhenAll(saves.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
            var refused = saves.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException).ToList();
            var refusal = Assert.IsType<PersistenceException>(Assert.Single(refused));
            var stored = Assert.Single((await other.GetFlowDetailAsync(flow2.Id))!.Atoms);
            Assert.Contains(stored.Id.ToString(), refusal.Message);
        }
    });

    [Fact]
    public Task TwoInstances_InterleavedSavesOfOneFlow_KeepTheLastWriteAndTheFirstSaveOrder() => RunAsync(async backend =>
    {
        var flow = await SharedFlowAsync(backend);
        await using var other = Reopen(Clock);
        var instances = new[] { backend, other };
        var atoms = Enumerable.Range(0, 6).Select(i => TaskDetail.Create($"t{i}")).ToArray();

        for (var round = 0; round < 4; round++)
            for (var i = 0; i < atoms.Length; i++)
                await instances[(round + i) % 2].SaveAtomDetailsAsync(flow.Id, [atoms[i].WithSuccess(Json($"{round * 10 + i}"))]);

        foreach (var instance in instances)
        {
            var loaded = (await instance.GetFlowDetailAsync(flow.Id))!;
            Assert.Equal(atoms.Select(a => a.Name), loaded.Atoms.Select(a => a.Name));
            for (var i = 0; i < atoms.Length; i++)
                AssertSameAtom(atoms[i].WithSuccess(Json($"{30 + i}")), loaded.Atoms[i]);
        }
    });
}
