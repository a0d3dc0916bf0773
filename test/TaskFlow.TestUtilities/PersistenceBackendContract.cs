using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.TestUtilities;

/// <summary>
/// The behaviour every <see cref="IPersistenceBackend"/> must have, written once. A derived class in each backend's
/// test project supplies a fresh, empty store per test (xunit makes one instance per test).
/// </summary>
public abstract partial class PersistenceBackendContract : IAsyncLifetime
{
    protected ManualClock Clock { get; } = new();

    /// <summary>The backend under test; null when a server-backed backend has no server here (see <see cref="RunAsync"/>).</summary>
    protected IPersistenceBackend? Backend { get; private set; }

    /// <summary>A backend on a fresh, empty store using <paramref name="clock"/>, or null when its server is not available outside CI.</summary>
    protected abstract Task<IPersistenceBackend?> CreateBackendAsync(TimeProvider clock);

    /// <summary>Deletes the store created by <see cref="CreateBackendAsync"/> (after the backend is disposed).</summary>
    protected virtual Task DestroyStoreAsync() => Task.CompletedTask;

    public async Task InitializeAsync()
    {
        Backend = await CreateBackendAsync(Clock);
        if (Backend is not null) await Backend.EnsureSchemaAsync();
    }

    public async Task DisposeAsync()
    {
        if (Backend is not null) await Backend.DisposeAsync();
        await DestroyStoreAsync();
    }

    /// <summary>
    /// Runs a test body against the backend. A server-backed suite without its server outside CI has no backend and
    /// returns early (xunit 2 has no runtime skip); under CI=true the derived class fails instead.
    /// </summary>
    protected async Task RunAsync(Func<IPersistenceBackend, Task> test)
    {
        if (Backend is null) return;
        await test(Backend);
    }

    private async Task<LogBook> SavedBookAsync(IPersistenceBackend backend, string name = "book")
    {
        var book = LogBook.Create(name, Clock) with { Metadata = Metadata() };
        await backend.SaveLogBookAsync(book);
        return book;
    }

    private async Task<FlowDetail> SavedFlowAsync(IPersistenceBackend backend, Guid logBookId, string name = "flow", params AtomDetail[] atoms)
    {
        var flow = FlowDetail.Create(logBookId, name, Clock) with { Atoms = atoms };
        await backend.SaveFlowDetailAsync(flow);
        return flow;
    }

    // ------------------------------------------------------------------ logbooks

    [Fact]
    public Task SaveLogBookAsync_ThenGet_RoundTripsEveryField() => RunAsync(async backend =>
    {
        var book = LogBook.Create("billing-2025", Clock) with
        {
            UpdatedAt = new DateTimeOffset(2025, 6, 1, 12, 0, 0, TimeSpan.FromHours(5.5)).AddTicks(7),
            Metadata = Metadata(),
        };
        await backend.SaveLogBookAsync(book);

        var loaded = await backend.GetLogBookAsync(book.Id);

        Assert.Equal(book, loaded);
        Assert.Equal(TimeSpan.Zero, loaded!.UpdatedAt.Offset);
        Assert.Equal(book.UpdatedAt.UtcTicks, loaded.UpdatedAt.UtcTicks);
    });

    [Fact]
    public Task GetLogBookAsync_Missing_ReturnsNull() => RunAsync(async backend =>
        Assert.Null(await backend.GetLogBookAsync(Guid.NewGuid())));

    [Fact]
    public Task SaveLogBookAsync_Again_ReplacesTheHeader() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        Clock.Advance(TimeSpan.FromMinutes(1));
        var renamed = book with { Name = "renamed", UpdatedAt = Clock.GetUtcNow(), Metadata = new Dictionary<string, JsonElement> { ["only"] = Json("1") } };

        await backend.SaveLogBookAsync(renamed);

        Assert.Equal(renamed, await backend.GetLogBookAsync(book.Id));
        Assert.Single(await backend.ListLogBooksAsync());
    });

    [Fact]
    public Task ListLogBooksAsync_ReturnsAllOrderedByCreation() => RunAsync(async backend =>
    {
        var created = new List<LogBook>();
        for (var i = 0; i < 5; i++)
        {
            created.Add(await SavedBookAsync(backend, $"book-{i}"));
            Clock.Advance(TimeSpan.FromSeconds(-10)); // each one older than the previous
        }

        var listed = await backend.ListLogBooksAsync();

        Assert.Equal(created.AsEnumerable().Reverse().Select(b => b.Id), listed.Select(b => b.Id));
        Assert.Equal(created.OrderBy(b => b.CreatedAt), listed);
    });

    [Fact]
    public Task SaveLogBookAsync_EmptyId_IsRejectedAndNothingIsStored() => RunAsync(async backend =>
    {
        var bad = LogBook.Create("bad", Clock) with { Id = Guid.Empty };

        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => backend.SaveLogBookAsync(bad));

        Assert.Contains("'bad'", ex.Message);
        Assert.Empty(await backend.ListLogBooksAsync());
    });

    [Fact]
    public Task SaveLogBookAsync_CallerMutatesItsDictionaryAfterwards_StoredCopyIsUnchanged() => RunAsync(async backend =>
    {
        var metadata = new Dictionary<string, JsonElement> { ["a"] = Json("1") };
        var book = LogBook.Create("book", Clock) with { Metadata = metadata };
        await backend.SaveLogBookAsync(book);

        metadata["a"] = Json("2");
        metadata["b"] = Json("3");

        var loaded = await backend.GetLogBookAsync(book.Id);
        Assert.Single(loaded!.Metadata);
        Assert.Equal(1, loaded.Metadata["a"].GetInt32());
    });

    // ------------------------------------------------------------------ flow details

    [Fact]
    public Task SaveFlowDetailAsync_WithTaskAndRetryAtoms_RoundTripsExactly() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flow = RichFlow(book.Id, Clock);

        await backend.SaveFlowDetailAsync(flow);
        var loaded = await backend.GetFlowDetailAsync(flow.Id);

        AssertSameFlow(flow, loaded);
        var noResult = (TaskDetail)loaded!.FindAtom("no-result")!;
        Assert.Null(noResult.Result);
        var jsonNull = (TaskDetail)loaded.FindAtom("ok-json-null")!;
        Assert.Equal(JsonValueKind.Null, jsonNull.Result!.Value.ValueKind);
        var retry = (RetryDetail)loaded.FindAtom("retry-charge")!;
        Assert.Equal(3, retry.History.Count);
        Assert.Equal(["charge", "notify"], retry.History[1].Failures.Keys.Order());
        Assert.Equal("timed out after 30 s", ((TaskDetail)loaded.FindAtom("failed")!).Failure!.Cause!.Cause!.Message);
    });

    [Fact]
    public Task GetFlowDetailAsync_Missing_ReturnsNull() => RunAsync(async backend =>
        Assert.Null(await backend.GetFlowDetailAsync(Guid.NewGuid())));

    [Fact]
    public Task SaveFlowDetailAsync_LogBookMissing_ThrowsNotFoundAndStoresNothing() => RunAsync(async backend =>
    {
        var missingBook = Guid.NewGuid();
        var flow = FlowDetail.Create(missingBook, "orphan", Clock) with { Atoms = [TaskDetail.Create("a")] };

        var ex = await Assert.ThrowsAsync<NotFoundException>(() => backend.SaveFlowDetailAsync(flow));

        Assert.Contains(missingBook.ToString(), ex.Message);
        Assert.Null(await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task SaveFlowDetailAsync_Again_UpsertsHeaderAndAtoms_KeepsUnmentionedAtoms() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var a = TaskDetail.Create("a");
        var b = TaskDetail.Create("b");
        var c = RetryDetail.Create("c");
        var flow = await SavedFlowAsync(backend, book.Id, "flow", a, b, c);

        Clock.Advance(TimeSpan.FromSeconds(1));
        var d = TaskDetail.Create("d");
        var updated = flow with
        {
            State = FlowState.Success,
            UpdatedAt = Clock.GetUtcNow(),
            Metadata = new Dictionary<string, JsonElement> { ["k"] = Json("\"v\"") },
            Atoms = [d, b.WithSuccess(Json("\"B\""))],
        };
        await backend.SaveFlowDetailAsync(updated);

        var loaded = await backend.GetFlowDetailAsync(flow.Id);
        var expected = updated with { Atoms = [a, b.WithSuccess(Json("\"B\"")), c, d] };
        AssertSameFlow(expected, loaded);
    });

    [Fact]
    public Task SaveFlowDetailAsync_UnderAnotherLogBook_IsRefusedAndLeavesTheStoredOneAlone() => RunAsync(async backend =>
    {
        var book1 = await SavedBookAsync(backend, "one");
        var book2 = await SavedBookAsync(backend, "two");
        var flow = await SavedFlowAsync(backend, book1.Id, "flow", TaskDetail.Create("a"));

        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveFlowDetailAsync(flow with { LogBookId = book2.Id, Name = "moved" }));

        Assert.Contains(flow.Id.ToString(), ex.Message);
        Assert.Contains(book1.Id.ToString(), ex.Message);
        AssertSameFlow(flow, await backend.GetFlowDetailAsync(flow.Id));
        Assert.Empty(await backend.ListFlowDetailsAsync(book2.Id));
    });

    [Fact]
    public Task SaveFlowDetailAsync_AtomConflictsWithStoredAtom_IsRefusedWhole() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var a = TaskDetail.Create("a");
        var flow = await SavedFlowAsync(backend, book.Id, "flow", a);

        // A new atom id under a stored name, plus a harmless change that must not be applied either.
        var impostor = TaskDetail.Create("a");
        var ex = await Assert.ThrowsAsync<PersistenceException>(() =>
            backend.SaveFlowDetailAsync(flow with { State = FlowState.Failure, Atoms = [TaskDetail.Create("z"), impostor] }));

        Assert.Contains("'a'", ex.Message);
        Assert.Contains(a.Id.ToString(), ex.Message);
        AssertSameFlow(flow, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task ListFlowDetailsAsync_ReturnsThatLogBooksFlowsWithAtoms_OrderedByCreation() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend, "mine");
        var other = await SavedBookAsync(backend, "other");
        var flows = new List<FlowDetail>();
        for (var i = 0; i < 4; i++)
        {
            flows.Add(await SavedFlowAsync(backend, book.Id, $"flow-{i}", TaskDetail.Create($"t{i}").WithSuccess(Json(i.ToString(System.Globalization.CultureInfo.InvariantCulture)))));
            Clock.Advance(TimeSpan.FromSeconds(-1));
        }
        await SavedFlowAsync(backend, other.Id, "not-mine", TaskDetail.Create("x"));

        var listed = await backend.ListFlowDetailsAsync(book.Id);

        Assert.Equal(flows.AsEnumerable().Reverse().Select(f => f.Id), listed.Select(f => f.Id));
        foreach (var flow in flows)
            AssertSameFlow(flow, listed.Single(f => f.Id == flow.Id));
    });

    [Fact]
    public Task ListFlowDetailsAsync_LogBookMissing_ThrowsNotFound() => RunAsync(async backend =>
    {
        var id = Guid.NewGuid();
        var ex = await Assert.ThrowsAsync<NotFoundException>(() => backend.ListFlowDetailsAsync(id));
        Assert.Contains(id.ToString(), ex.Message);
    });

    [Fact]
    public Task DeleteFlowDetailAsync_RemovesItWithItsAtoms() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var doomed = await SavedFlowAsync(backend, book.Id, "doomed", TaskDetail.Create("a"), RetryDetail.Create("r"));
        var kept = await SavedFlowAsync(backend, book.Id, "kept", TaskDetail.Create("a"));

        Assert.True(await backend.DeleteFlowDetailAsync(doomed.Id));
        Assert.False(await backend.DeleteFlowDetailAsync(doomed.Id));

        Assert.Null(await backend.GetFlowDetailAsync(doomed.Id));
        AssertSameFlow(kept, await backend.GetFlowDetailAsync(kept.Id));
        await Assert.ThrowsAsync<NotFoundException>(() => backend.SaveAtomDetailsAsync(doomed.Id, [TaskDetail.Create("b")]));
        // The same flow (ids included) can be saved again from scratch: nothing of it was left behind.
        var again = doomed with { Atoms = [doomed.Atoms[1]] };
        await backend.SaveFlowDetailAsync(again);
        AssertSameFlow(again, await backend.GetFlowDetailAsync(doomed.Id));
    });

    [Fact]
    public Task DeleteLogBookAsync_CascadesToItsFlowDetailsAndAtoms() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend, "doomed");
        var other = await SavedBookAsync(backend, "kept");
        var f1 = await SavedFlowAsync(backend, book.Id, "f1", TaskDetail.Create("a"));
        var f2 = await SavedFlowAsync(backend, book.Id, "f2", RetryDetail.Create("r"));
        var keptFlow = await SavedFlowAsync(backend, other.Id, "f3", TaskDetail.Create("a"));

        Assert.True(await backend.DeleteLogBookAsync(book.Id));
        Assert.False(await backend.DeleteLogBookAsync(book.Id));

        Assert.Null(await backend.GetLogBookAsync(book.Id));
        Assert.Null(await backend.GetFlowDetailAsync(f1.Id));
        Assert.Null(await backend.GetFlowDetailAsync(f2.Id));
        await Assert.ThrowsAsync<NotFoundException>(() => backend.ListFlowDetailsAsync(book.Id));
        await Assert.ThrowsAsync<NotFoundException>(() => backend.UpdateFlowStateAsync(f1.Id, FlowState.Success));
        Assert.Equal([other], await backend.ListLogBooksAsync());
        AssertSameFlow(keptFlow, await backend.GetFlowDetailAsync(keptFlow.Id));
    });

    [Fact]
    public Task ClearAllAsync_RemovesEverythingAndTheStoreStaysUsable() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flow = await SavedFlowAsync(backend, book.Id, "f", TaskDetail.Create("a"));

        await backend.ClearAllAsync();

        Assert.Empty(await backend.ListLogBooksAsync());
        Assert.Null(await backend.GetFlowDetailAsync(flow.Id));
        var again = await SavedBookAsync(backend, "after");
        Assert.Equal(again, await backend.GetLogBookAsync(again.Id));
    });

    // ------------------------------------------------------------------ state and atoms

    [Fact]
    public Task UpdateFlowStateAsync_SetsStateAndUpdatedAtOnly() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flow = await SavedFlowAsync(backend, book.Id, "f", TaskDetail.Create("a").WithSuccess(Json("1")));
        Clock.Advance(TimeSpan.FromMinutes(5));

        await backend.UpdateFlowStateAsync(flow.Id, FlowState.Suspended);

        var loaded = await backend.GetFlowDetailAsync(flow.Id);
        AssertSameFlow(flow with { State = FlowState.Suspended, UpdatedAt = Clock.GetUtcNow() }, loaded);
    });

    [Fact]
    public Task UpdateFlowStateAsync_Missing_ThrowsNotFoundNamingTheId() => RunAsync(async backend =>
    {
        var id = Guid.NewGuid();
        var ex = await Assert.ThrowsAsync<NotFoundException>(() => backend.UpdateFlowStateAsync(id, FlowState.Running));
        Assert.Contains(id.ToString(), ex.Message);
    });

    [Fact]
    public Task UpdateFlowStateAsync_UndefinedState_IsRejected() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flow = await SavedFlowAsync(backend, book.Id);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => backend.UpdateFlowStateAsync(flow.Id, (FlowState)99));
        Assert.Equal(FlowState.Pending, (await backend.GetFlowDetailAsync(flow.Id))!.State);
    });

    [Fact]
    public Task SaveAtomDetailsAsync_Batch_UpdatesAndAppendsInOrder_AndStampsTheFlow() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var a = TaskDetail.Create("a");
        var r = RetryDetail.Create("r");
        var flow = await SavedFlowAsync(backend, book.Id, "f", a, r);
        Clock.Advance(TimeSpan.FromSeconds(3));

        var a2 = a.WithFailure(NestedFailure()) with { Intention = AtomIntention.Revert, Metadata = Metadata(0.25) };
        var r2 = r.WithSuccess(Json("[1,2]")).WithAttemptFailure("a", NestedFailure());
        var b = TaskDetail.Create("b").WithSuccess(ResultShapes["object"]);
        var c = TaskDetail.Create("c");
        await backend.SaveAtomDetailsAsync(flow.Id, [b, r2, a2, c]);

        var loaded = await backend.GetFlowDetailAsync(flow.Id);
        AssertSameFlow(flow with { UpdatedAt = Clock.GetUtcNow(), Atoms = [a2, r2, b, c] }, loaded);
    });

    [Fact]
    public Task SaveAtomDetailsAsync_FlowMissing_ThrowsNotFoundNamingTheFlow() => RunAsync(async backend =>
    {
        var id = Guid.NewGuid();
        var ex = await Assert.ThrowsAsync<NotFoundException>(() => backend.SaveAtomDetailsAsync(id, [TaskDetail.Create("a")]));
        Assert.Contains(id.ToString(), ex.Message);
        await Assert.ThrowsAsync<NotFoundException>(() => backend.SaveAtomDetailsAsync(id, []));
    });

    [Fact]
    public Task SaveAtomDetailsAsync_OneInvalidAtom_RejectsTheWholeBatch() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var a = TaskDetail.Create("a");
        var flow = await SavedFlowAsync(backend, book.Id, "f", a);

        Failure deep = SimpleFailure("root");
        for (var i = 0; i < PersistenceJson.MaxFailureCauseDepth; i++)
            deep = new Failure(["System.Exception"], $"level {i}", null, deep);
        var tooDeep = TaskDetail.Create("too-deep").WithFailure(deep);
        var emptyId = TaskDetail.Create("empty-id") with { Id = Guid.Empty };

        var ex1 = await Assert.ThrowsAnyAsync<ArgumentException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1")), tooDeep]));
        Assert.Contains("too-deep", ex1.Message);
        var ex2 = await Assert.ThrowsAnyAsync<ArgumentException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1")), emptyId]));
        Assert.Contains("empty-id", ex2.Message);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1")), null!]));

        AssertSameFlow(flow, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task SaveAtomDetailsAsync_UpdateOfAStoredAtomBatchedWithAConflict_WritesNothing() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var a = TaskDetail.Create("a");
        var b = TaskDetail.Create("b");
        var flow = await SavedFlowAsync(backend, book.Id, "f", a, b);
        await backend.SaveAtomDetailsAsync(flow.Id, [a with { State = AtomState.Running }]);
        var before = (await backend.GetFlowDetailAsync(flow.Id))!;
        Clock.Advance(TimeSpan.FromSeconds(5));

        // The update of 'a' alone would be accepted; the new atom taking the name 'b' is not, so neither is saved.
        var impostor = TaskDetail.Create("b");
        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("1")), impostor]));
        Assert.Contains(b.Id.ToString(), ex.Message);
        var kind = await Assert.ThrowsAsync<PersistenceException>(() =>
            backend.SaveAtomDetailsAsync(flow.Id, [a.WithSuccess(Json("2")), new RetryDetail { Id = b.Id, Name = "b" }]));
        Assert.Contains("retry", kind.Message);

        AssertSameFlow(before, await backend.GetFlowDetailAsync(flow.Id));
    });

    // Some backends split a batch into several statements (PostgreSQL: eight atoms per statement); a batch is still
    // saved whole or not at all, wherever in it the problem is.
    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    [InlineData(9)]
    [InlineData(20)]
    public Task SaveAtomDetailsAsync_BatchesOfAnySize_AreSavedWholeOrNotAtAll(int size) => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var stored = Enumerable.Range(0, size).Select(i => (AtomDetail)TaskDetail.Create($"t{i}")).ToArray();
        var flow = await SavedFlowAsync(backend, book.Id, "f", stored);
        Clock.Advance(TimeSpan.FromSeconds(2));

        // Every atom known: all updated, the flow stamped.
        var running = stored.Select(a => a with { State = AtomState.Running }).ToArray();
        await backend.SaveAtomDetailsAsync(flow.Id, running);
        var saved = flow with { UpdatedAt = Clock.GetUtcNow(), Atoms = running };
        AssertSameFlow(saved, await backend.GetFlowDetailAsync(flow.Id));
        Clock.Advance(TimeSpan.FromSeconds(2));

        // The last atom conflicts (a new id under a stored name): nothing of the batch is written, the first atoms included.
        var conflicting = running.Select(a => ((TaskDetail)a).WithSuccess(Json("1"))).ToArray<AtomDetail>();
        conflicting[^1] = TaskDetail.Create(conflicting[^1].Name);
        var ex = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, conflicting));
        Assert.Contains(stored[^1].Id.ToString(), ex.Message);
        AssertSameFlow(saved, await backend.GetFlowDetailAsync(flow.Id));

        // A new atom after the known ones: the known are updated, the new one appended after them.
        var done = running.Select(a => ((TaskDetail)a).WithSuccess(Json("2"))).ToArray<AtomDetail>();
        var added = TaskDetail.Create("added");
        await backend.SaveAtomDetailsAsync(flow.Id, [.. done, added]);
        AssertSameFlow(saved with { UpdatedAt = Clock.GetUtcNow(), Atoms = [.. done, added] }, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task SaveAtomDetailsAsync_DuplicatesWithinTheBatch_AreRejected() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flow = await SavedFlowAsync(backend, book.Id);
        var a = TaskDetail.Create("a");

        var sameName = await Assert.ThrowsAnyAsync<ArgumentException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a, TaskDetail.Create("a")]));
        Assert.Contains("'a'", sameName.Message);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a, a.WithSuccess(null)]));

        Assert.Empty((await backend.GetFlowDetailAsync(flow.Id))!.Atoms);
    });

    [Fact]
    public Task SaveAtomDetailsAsync_AtomsKeepTheirNameAndKind() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var a = TaskDetail.Create("a");
        var flow = await SavedFlowAsync(backend, book.Id, "f", a);

        var renamed = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [a with { Name = "b" }]));
        Assert.Contains("'a'", renamed.Message);
        Assert.Contains("'b'", renamed.Message);

        var asRetry = new RetryDetail { Id = a.Id, Name = "a" };
        var kind = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [asRetry]));
        Assert.Contains("task", kind.Message);
        Assert.Contains("retry", kind.Message);

        var sameName = await Assert.ThrowsAsync<PersistenceException>(() => backend.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create("a")]));
        Assert.Contains(a.Id.ToString(), sameName.Message);

        AssertSameFlow(flow, await backend.GetFlowDetailAsync(flow.Id));
    });

    [Fact]
    public Task SaveAtomDetailsAsync_SameAtomIdInTwoFlows_AreIndependent() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var shared = TaskDetail.Create("a");
        var f1 = await SavedFlowAsync(backend, book.Id, "f1", shared);
        var f2 = await SavedFlowAsync(backend, book.Id, "f2", shared);

        await backend.SaveAtomDetailsAsync(f1.Id, [shared.WithSuccess(Json("1"))]);

        Assert.Equal(AtomState.Success, (await backend.GetFlowDetailAsync(f1.Id))!.Atoms[0].State);
        Assert.Equal(AtomState.Pending, (await backend.GetFlowDetailAsync(f2.Id))!.Atoms[0].State);
    });

    [Fact]
    public Task SaveAtomDetailsAsync_LargeResult_RoundTrips() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flow = await SavedFlowAsync(backend, book.Id);
        var big = Json(JsonSerializer.Serialize(Enumerable.Range(0, 20_000).Select(i => new { i, s = $"line {i} ✓" })));
        var atom = TaskDetail.Create("big").WithSuccess(big);

        await backend.SaveAtomDetailsAsync(flow.Id, [atom]);

        AssertSameAtom(atom, (await backend.GetFlowDetailAsync(flow.Id))!.Atoms.Single());
    });

    [Fact]
    public Task Operations_WithACancelledToken_ThrowAndWriteNothing() => RunAsync(async backend =>
    {
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        var book = LogBook.Create("cancelled", Clock);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => backend.SaveLogBookAsync(book, cts.Token));

        Assert.Null(await backend.GetLogBookAsync(book.Id));
    });

    // ------------------------------------------------------------------ concurrency

    [Fact]
    public Task SaveAtomDetailsAsync_ParallelBatchesFromManyTasks_LoseNothing() => RunAsync(async backend =>
    {
        const int Writers = 8, BatchesPerWriter = 6, AtomsPerBatch = 3;
        var book = await SavedBookAsync(backend);
        var flow = await SavedFlowAsync(backend, book.Id, "parallel");

        await Task.WhenAll(Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            for (var b = 0; b < BatchesPerWriter; b++)
            {
                var atoms = Enumerable.Range(0, AtomsPerBatch)
                    .Select(i => (AtomDetail)new TaskDetail { Id = AtomId(w, b, i), Name = $"w{w}-b{b}-a{i}" }.WithSuccess(Json($"{{\"w\":{w},\"b\":{b},\"i\":{i}}}")))
                    .ToList();
                await backend.SaveAtomDetailsAsync(flow.Id, atoms);
                // Each writer also keeps updating its first atom: the last update must win.
                var first = new TaskDetail { Id = AtomId(w, 0, 0), Name = $"w{w}-b0-a0" }.WithSuccess(Json($"{{\"w\":{w},\"b\":0,\"i\":0,\"rev\":{b}}}"));
                await backend.SaveAtomDetailsAsync(flow.Id, [first]);
            }
        })));

        var loaded = (await backend.GetFlowDetailAsync(flow.Id))!;
        Assert.Equal(Writers * BatchesPerWriter * AtomsPerBatch, loaded.Atoms.Count);
        Assert.Equal(loaded.Atoms.Count, loaded.Atoms.Select(a => a.Name).Distinct().Count());
        for (var w = 0; w < Writers; w++)
        {
            var first = (TaskDetail)loaded.FindAtom($"w{w}-b0-a0")!;
            Assert.Equal(BatchesPerWriter - 1, first.Result!.Value.GetProperty("rev").GetInt32());
            for (var b = 0; b < BatchesPerWriter; b++)
            {
                // A writer's batches were saved in order, so they appear in that order.
                var names = loaded.Atoms.Select(a => a.Name).ToList();
                if (b > 0) Assert.True(names.IndexOf($"w{w}-b{b - 1}-a2") < names.IndexOf($"w{w}-b{b}-a0"));
            }
        }
    });

    [Fact]
    public Task ParallelWritesToSeveralFlowsAndStates_LoseNothing() => RunAsync(async backend =>
    {
        var book = await SavedBookAsync(backend);
        var flows = new List<FlowDetail>();
        for (var i = 0; i < 6; i++) flows.Add(await SavedFlowAsync(backend, book.Id, $"f{i}"));

        await Task.WhenAll(flows.Select(flow => Task.Run(async () =>
        {
            await backend.UpdateFlowStateAsync(flow.Id, FlowState.Running);
            for (var i = 0; i < 10; i++)
                await backend.SaveAtomDetailsAsync(flow.Id, [TaskDetail.Create($"t{i}").WithSuccess(Json(i.ToString(System.Globalization.CultureInfo.InvariantCulture)))]);
            await backend.UpdateFlowStateAsync(flow.Id, FlowState.Success);
        })));

        foreach (var loaded in await backend.ListFlowDetailsAsync(book.Id))
        {
            Assert.Equal(FlowState.Success, loaded.State);
            Assert.Equal(Enumerable.Range(0, 10).Select(i => $"t{i}"), loaded.Atoms.Select(a => a.Name));
        }
    });

    private static Guid AtomId(int writer, int batch, int index) =>
        new($"{writer:x8}-{batch:x4}-4{index:x3}-8000-000000000000");
}
