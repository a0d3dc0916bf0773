using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Tests.Engines;

/// <summary>
/// Runs saved to a backend as they go: what is saved, when it is saved, and how a new engine (as in a new process)
/// resumes from it.
/// </summary>
public sealed class PersistedRunTests
{
    public static TheoryData<bool> Engines => new() { false, true };

    private static FlowEngine Create(Flow flow, bool parallel, EngineOptions options) =>
        parallel ? FlowEngine.CreateParallel(flow, options) : FlowEngine.CreateSerial(flow, options);

    /// <summary>Tasks that record each call in a shared log, as side effects a resumed run must not repeat.</summary>
    private sealed class CallLog
    {
        private readonly List<string> _calls = [];

        public IReadOnlyList<string> Calls { get { lock (_calls) return _calls.ToArray(); } }

        public void Add(string call) { lock (_calls) _calls.Add(call); }

        public FlowTask Step(string name, string? provides = null, bool fail = false) => FlowTask.Create(name,
            () => { Add($"{name}.execute"); if (fail) throw new InvalidOperationException($"{name} failed"); return name.ToUpperInvariant(); },
            () => Add($"{name}.revert"),
            provides is null ? null : ProvidesSpec.Whole(provides));
    }

    private static LinearFlow ThreeSteps(CallLog log, bool lastFails = false) =>
        new("f") { log.Step("a", "ra"), log.Step("b", "rb"), log.Step("c", "rc", fail: lastFails) };

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_Persisted_SavesEveryAtomWithItsResultAndTheFlowState(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        var log = new CallLog();
        var engine = Create(ThreeSteps(log), parallel, new EngineOptions { Persistence = backend, Store = { ["region"] = "eu-1" } });
        await engine.RunAsync();

        var saved = await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value);
        Assert.NotNull(saved);
        Assert.Equal(FlowState.Success, saved.State);
        Assert.Equal("f", saved.Name);
        Assert.NotNull(await backend.GetLogBookAsync(saved.LogBookId));
        Assert.Equal(["a", "b", "c"], saved.Atoms.Select(a => a.Name));
        foreach (var name in new[] { "a", "b", "c" })
        {
            var task = Assert.IsType<TaskDetail>(saved.FindAtom(name));
            Assert.Equal(AtomState.Success, task.State);
            Assert.Equal(name.ToUpperInvariant(), task.Result!.Value.GetString());
            Assert.Equal(1.0, task.Metadata["progress"].GetDouble());
        }
        Assert.Equal("eu-1", saved.Metadata["store"].GetProperty("region").GetString());
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_Persisted_NotifiesOnlyStatesAlreadySaved(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        var log = new CallLog();
        var flow = new LinearFlow("f") { log.Step("a", "ra"), new UnorderedFlow("u") { log.Step("b"), log.Step("c") }, log.Step("d", fail: true) };
        var engine = Create(flow, parallel, new EngineOptions { Persistence = backend });
        var mismatches = new List<string>();
        int atomEvents = 0, flowEvents = 0;
        engine.Notifications.Subscribe<AtomStateChanged>(e =>
        {
            atomEvents++;
            var saved = backend.GetFlowDetailAsync(engine.FlowDetailId!.Value).GetAwaiter().GetResult()!.FindAtom(e.AtomName)!;
            // The saved state may already be further along (a batch), but never behind what is reported.
            if (saved.State != e.State && !IsLaterThan(saved.State, e.State)) mismatches.Add($"{e.AtomName} reported {e.State}, saved {saved.State}");
        });
        engine.Notifications.Subscribe<FlowStateChanged>(e =>
        {
            flowEvents++;
            var saved = backend.GetFlowDetailAsync(engine.FlowDetailId!.Value).GetAwaiter().GetResult()!;
            if (e.State is not (FlowState.Resuming or FlowState.Suspended) && saved.State != e.State && e.State != FlowState.Running)
                mismatches.Add($"flow reported {e.State}, saved {saved.State}");
        });
        await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());
        Assert.Empty(mismatches);
        Assert.True(atomEvents >= 12, $"only {atomEvents} atom events");
        Assert.True(flowEvents >= 2);
        var final = await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value);
        Assert.Equal(FlowState.Reverted, final!.State);
        Assert.All(final.Atoms, a => Assert.Equal(AtomState.Reverted, a.State));
    }

    /// <summary>Whether <paramref name="saved"/> can only have been reached after <paramref name="reported"/> in one run.</summary>
    private static bool IsLaterThan(AtomState saved, AtomState reported) => (reported, saved) switch
    {
        (AtomState.Running, AtomState.Success or AtomState.Failure or AtomState.Reverting or AtomState.Reverted or AtomState.RevertFailure) => true,
        (AtomState.Success, AtomState.Reverting or AtomState.Reverted or AtomState.RevertFailure) => true,
        (AtomState.Failure, AtomState.Reverting or AtomState.Reverted or AtomState.RevertFailure) => true,
        (AtomState.Reverting, AtomState.Reverted or AtomState.RevertFailure) => true,
        _ => false,
    };

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_ResumeAfterCrash_DoesNotRerunFinishedAtomsAndRerunsTheRunningOne(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        var first = Create(ThreeSteps(new CallLog()), parallel, new EngineOptions { Persistence = backend });
        await first.PrepareAsync();
        var id = first.FlowDetailId!.Value;
        // What a process killed while running b leaves behind: a done with its result, b RUNNING, the flow RUNNING.
        var saved = (await backend.GetFlowDetailAsync(id))!;
        await backend.SaveAtomDetailsAsync(id,
        [
            ((TaskDetail)saved.FindAtom("a")!).WithSuccess(JsonSerializer.SerializeToElement("saved-a")),
            saved.FindAtom("b")! with { State = AtomState.Running },
        ]);
        await backend.UpdateFlowStateAsync(id, FlowState.Running);

        var log = new CallLog();
        var resumed = Create(ThreeSteps(log), parallel, new EngineOptions { Persistence = backend, FlowDetailId = id });
        var flowStates = new List<FlowState>();
        var atomEvents = new List<string>();
        resumed.Notifications.Subscribe<FlowStateChanged>(e => flowStates.Add(e.State));
        resumed.Notifications.Subscribe<AtomStateChanged>(e => { lock (atomEvents) atomEvents.Add($"{e.AtomName} {e.State.ToTaskFlowName()}"); });
        await resumed.RunAsync();

        Assert.Equal(["b.execute", "c.execute"], log.Calls);
        Assert.Equal([FlowState.Resuming, FlowState.Suspended, FlowState.Running, FlowState.Success], flowStates);
        Assert.DoesNotContain("b RUNNING", atomEvents); // already RUNNING: re-run in place, as TaskFlow does
        Assert.Equal("saved-a", resumed.Storage.Fetch<string>("ra"));
        Assert.Equal("B", resumed.Storage.Fetch<string>("rb"));
        var final = (await backend.GetFlowDetailAsync(id))!;
        Assert.Equal(FlowState.Success, final.State);
        Assert.Equal(3, final.Atoms.Count);
    }

    [Fact]
    public async Task RunAsync_ResumeWithSavedFailure_RevertsAndRaisesWrappedFailure()
    {
        var backend = new InMemoryPersistenceBackend();
        var first = FlowEngine.CreateSerial(ThreeSteps(new CallLog()), new EngineOptions { Persistence = backend });
        await first.PrepareAsync();
        var id = first.FlowDetailId!.Value;
        var saved = (await backend.GetFlowDetailAsync(id))!;
        var failure = Failure.FromException(new TimeoutException("backend timed out"));
        await backend.SaveAtomDetailsAsync(id,
        [
            ((TaskDetail)saved.FindAtom("a")!).WithSuccess(JsonSerializer.SerializeToElement("A")),
            ((TaskDetail)saved.FindAtom("b")!).WithFailure(failure),
        ]);
        await backend.UpdateFlowStateAsync(id, FlowState.Running);

        var log = new CallLog();
        var resumed = FlowEngine.CreateSerial(ThreeSteps(log), new EngineOptions { Persistence = backend, FlowDetailId = id });
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => resumed.RunAsync());
        Assert.Equal("backend timed out", Assert.Single(ex.Failures).Message);
        Assert.Equal(["b.revert", "a.revert"], log.Calls); // the original exception type is gone after a reload, as in TaskFlow
        Assert.Equal(FlowState.Reverted, (await backend.GetFlowDetailAsync(id))!.State);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_ResumeOfARunThatDiedWhileReverting_ContinuesTheRevert(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        var first = Create(ThreeSteps(new CallLog(), lastFails: true), parallel, new EngineOptions { Persistence = backend });
        await first.PrepareAsync();
        var id = first.FlowDetailId!.Value;
        var saved = (await backend.GetFlowDetailAsync(id))!;
        var failure = Failure.FromException(new InvalidOperationException("c failed"));
        await backend.SaveAtomDetailsAsync(id,
        [
            ((TaskDetail)saved.FindAtom("a")!).WithSuccess(JsonSerializer.SerializeToElement("A")) with { Intention = AtomIntention.Revert },
            ((TaskDetail)saved.FindAtom("b")!).WithSuccess(JsonSerializer.SerializeToElement("B")) with { Intention = AtomIntention.Revert, State = AtomState.Reverting },
            ((TaskDetail)saved.FindAtom("c")!).WithFailure(failure).WithReverted(null) with { Intention = AtomIntention.Revert },
        ]);
        await backend.UpdateFlowStateAsync(id, FlowState.Running);

        var log = new CallLog();
        var resumed = Create(ThreeSteps(log, lastFails: true), parallel, new EngineOptions { Persistence = backend, FlowDetailId = id });
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => resumed.RunAsync());
        Assert.Equal("c failed", Assert.Single(ex.Failures).Message);
        Assert.Equal(["b.revert", "a.revert"], log.Calls);
        var final = (await backend.GetFlowDetailAsync(id))!;
        Assert.Equal(FlowState.Reverted, final.State);
        Assert.All(final.Atoms, a => Assert.Equal(AtomState.Reverted, a.State));
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task Suspend_IsSaved_AndANewEngineFinishesOnlyWhatWasLeft(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        var log = new CallLog();
        var engine = Create(ThreeSteps(log), parallel, new EngineOptions { Persistence = backend });
        engine.Notifications.SubscribeAtomState(AtomState.Success, e => { if (e.AtomName == "a") engine.Suspend(); });
        await engine.RunAsync();
        Assert.Equal(FlowState.Suspended, engine.State);
        Assert.Equal(["a.execute"], log.Calls); // the handler heard of a before b was scheduled, as without persistence
        var id = engine.FlowDetailId!.Value;
        var saved = (await backend.GetFlowDetailAsync(id))!;
        Assert.Equal(FlowState.Suspended, saved.State);
        Assert.Equal(AtomState.Success, saved.FindAtom("a")!.State);
        Assert.Equal(AtomState.Pending, saved.FindAtom("c")!.State);

        var resumedLog = new CallLog();
        var resumed = Create(ThreeSteps(resumedLog), parallel, new EngineOptions { Persistence = backend, FlowDetailId = id });
        await resumed.RunAsync();
        Assert.Equal(FlowState.Success, resumed.State);
        Assert.DoesNotContain("a.execute", resumedLog.Calls);
        Assert.Equal(["a.execute", "b.execute", "c.execute"], log.Calls.Concat(resumedLog.Calls).Order());
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_Cancelled_SavesTheRunningAtomSoTheNextProcessRerunsIt(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        using var cts = new CancellationTokenSource();
        var started = new TaskCompletionSource();
        Flow Build(CallLog log, bool block) => new LinearFlow("f")
        {
            log.Step("a", "ra"),
            FlowTask.Create("slow", async (CancellationToken ct) =>
            {
                log.Add("slow.execute");
                if (block) { started.TrySetResult(); await Task.Delay(Timeout.Infinite, ct); }
                return 42;
            }, provides: "answer"),
        };
        var log = new CallLog();
        var engine = Create(Build(log, block: true), parallel, new EngineOptions { Persistence = backend });
        var run = engine.RunAsync(cts.Token);
        await started.Task;
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        var id = engine.FlowDetailId!.Value;
        var saved = (await backend.GetFlowDetailAsync(id))!;
        Assert.Equal(AtomState.Running, saved.FindAtom("slow")!.State);
        Assert.Equal(FlowState.Suspended, saved.State);

        var again = new CallLog();
        var resumed = Create(Build(again, block: false), parallel, new EngineOptions { Persistence = backend, FlowDetailId = id });
        await resumed.RunAsync();
        Assert.Equal(["slow.execute"], again.Calls);
        Assert.Equal(42, resumed.Storage.Fetch<int>("answer"));
    }

    private sealed record Handle(IntPtr Pointer);

    private sealed class VersionedTask(string name) : FlowTask(name)
    {
        public int Execute() => 1;
    }

    [Fact]
    public async Task RunAsync_ResultThatCannotBeSaved_FailsTheAtomNamingItAndReverts()
    {
        var backend = new InMemoryPersistenceBackend();
        var log = new CallLog();
        var flow = new LinearFlow("f")
        {
            log.Step("a"),
            FlowTask.Create("open-handle", () => new Handle(new IntPtr(7)), provides: "handle"),
            FlowTask.Create("after", (Handle handle) => 1),
        };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
        var ex = await Assert.ThrowsAsync<PersistenceException>(() => engine.RunAsync());
        Assert.Contains("'open-handle'", ex.Message);
        Assert.Contains(typeof(Handle).FullName!, ex.Message);
        Assert.Equal(["a.execute", "a.revert"], log.Calls);
        var saved = (await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value))!;
        var handle = Assert.IsType<TaskDetail>(saved.FindAtom("open-handle"));
        Assert.Equal(AtomState.Reverted, handle.State);
        Assert.Null(handle.Result);
        Assert.Contains(typeof(PersistenceException).FullName!, handle.Failure!.ExceptionTypeNames);
    }

    [Fact]
    public async Task PrepareAsync_StoreValueThatCannotBeSaved_ThrowsNamingTheKeyBeforeWritingAnything()
    {
        var backend = new InMemoryPersistenceBackend();
        var engine = FlowEngine.CreateSerial(ThreeSteps(new CallLog()), new EngineOptions
        {
            Persistence = backend,
            Store = { ["fine"] = 1, ["socket"] = new Handle(new IntPtr(3)) },
        });
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => engine.PrepareAsync());
        Assert.Contains("'socket'", ex.Message);
        Assert.Empty(await backend.ListLogBooksAsync());
    }

    [Fact]
    public async Task RunAsync_Resumed_SeesTheSavedStoreAndTheEngineStoreWins()
    {
        var backend = new InMemoryPersistenceBackend();
        Flow Build(List<string> seen) => new LinearFlow("f")
        {
            FlowTask.Create("gate", (string region, int size) => { seen.Add($"{region}/{size}"); return 0; }),
            FlowTask.Create("stop", () => 0),
        };
        var first = FlowEngine.CreateSerial(Build([]), new EngineOptions { Persistence = backend, Store = { ["region"] = "eu-1", ["size"] = 10 } });
        await first.PrepareAsync();
        var seen = new List<string>();
        var resumed = FlowEngine.CreateSerial(Build(seen), new EngineOptions { Persistence = backend, FlowDetailId = first.FlowDetailId, Store = { ["size"] = 20 } });
        await resumed.RunAsync();
        Assert.Equal(["eu-1/20"], seen);
        var saved = (await backend.GetFlowDetailAsync(first.FlowDetailId!.Value))!;
        Assert.Equal(20, saved.Metadata["store"].GetProperty("size").GetInt32());
    }

    [Fact]
    public async Task Inject_DuringAPersistedRun_IsSavedWithTheFlow()
    {
        var backend = new InMemoryPersistenceBackend();
        FlowEngine? engine = null;
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("discover", () => { engine!.Storage.Inject([new("endpoint", "10.0.0.7")]); return 0; }),
            FlowTask.Create("use", (string endpoint = "unset") => endpoint, provides: "used"),
        };
        engine = FlowEngine.CreateSerial(flow, new EngineOptions { Persistence = backend });
        await engine.RunAsync();
        Assert.Equal("10.0.0.7", engine.Storage.Fetch<string>("used"));
        var saved = (await backend.GetFlowDetailAsync(engine.FlowDetailId!.Value))!;
        Assert.Equal("10.0.0.7", saved.Metadata["store"].GetProperty("endpoint").GetString());
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public async Task RunAsync_RetryHistoryIsSavedAndAResumedRunContinuesTheAttempts(bool parallel)
    {
        var backend = new InMemoryPersistenceBackend();
        using var cts = new CancellationTokenSource();
        Flow Build(CallLog log, CancellationTokenSource? cancelOnSecond) => new LinearFlow("f", new ForEachRetry([1, 2, 3]) { Name = "r", Provides = "attempt" })
        {
            FlowTask.Create("try", (int attempt) =>
            {
                log.Add($"try.{attempt}");
                if (attempt == 2 && cancelOnSecond is not null) { cancelOnSecond.Cancel(); cancelOnSecond.Token.ThrowIfCancellationRequested(); }
                if (attempt < 3) throw new TimeoutException($"attempt {attempt}");
                return attempt;
            }, provides: "done"),
        };
        var log = new CallLog();
        var engine = Create(Build(log, cts), parallel, new EngineOptions { Persistence = backend });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.RunAsync(cts.Token));
        var id = engine.FlowDetailId!.Value;
        var retry = Assert.IsType<RetryDetail>((await backend.GetFlowDetailAsync(id))!.FindAtom("r"));
        Assert.Equal(2, retry.History.Count);
        Assert.Equal("attempt 1", retry.History[0].Failures["try"].Message);
        Assert.Equal(2, retry.History[1].Value!.Value.GetInt32());

        var again = new CallLog();
        var resumed = Create(Build(again, null), parallel, new EngineOptions { Persistence = backend, FlowDetailId = id });
        await resumed.RunAsync();
        Assert.Equal(["try.2", "try.3"], again.Calls);
        Assert.Equal(3, resumed.Storage.Fetch<int>("done"));
        Assert.Equal(3, resumed.Storage.GetRetryHistory("r").Count);
    }

    [Fact]
    public async Task PrepareAsync_SavedRunOfAnotherDefinition_NamesEveryDifference()
    {
        var backend = new InMemoryPersistenceBackend();
        var log = new CallLog();
        var first = FlowEngine.CreateSerial(new LinearFlow("f") { log.Step("a"), log.Step("old"), log.Step("c") }, new EngineOptions { Persistence = backend });
        await first.RunAsync();
        var id = first.FlowDetailId!.Value;

        var changed = new LinearFlow("f")
        {
            new VersionedTask("a") { Version = "2.0" },
            log.Step("renamed"),
            new LinearFlow("inner", new TimesRetry(2) { Name = "c" }) { log.Step("x") },
        };
        var engine = FlowEngine.CreateSerial(changed, new EngineOptions { Persistence = backend, FlowDetailId = id });
        var ex = await Assert.ThrowsAsync<FlowDefinitionException>(() => engine.PrepareAsync());
        Assert.Contains("'old' is SUCCESS", ex.Message);
        Assert.Contains("'a' has version 2.0", ex.Message);
        Assert.Contains("'c' is a retry but was saved as a task", ex.Message);
        Assert.Contains(id.ToString(), ex.Message);
        var after = (await backend.GetFlowDetailAsync(id))!;
        Assert.Equal(3, after.Atoms.Count); // nothing was added or changed
        Assert.All(after.Atoms, a => Assert.Equal(AtomState.Success, a.State));
    }

    [Fact]
    public async Task RunAsync_AtomAddedToASavedRun_StartsPendingAndRuns()
    {
        var backend = new InMemoryPersistenceBackend();
        var first = FlowEngine.CreateSerial(new LinearFlow("f") { new CallLog().Step("a") }, new EngineOptions { Persistence = backend });
        await first.PrepareAsync();
        var log = new CallLog();
        var grown = FlowEngine.CreateSerial(new LinearFlow("f") { log.Step("a"), log.Step("b") }, new EngineOptions { Persistence = backend, FlowDetailId = first.FlowDetailId });
        await grown.RunAsync();
        Assert.Equal(["a.execute", "b.execute"], log.Calls);
        Assert.Equal(2, (await backend.GetFlowDetailAsync(first.FlowDetailId!.Value))!.Atoms.Count);
    }

    [Fact]
    public async Task RunAsync_GivenNewFlowDetailIdAndLogBook_CreatesThemWithThoseIds()
    {
        var backend = new InMemoryPersistenceBackend();
        var book = LogBook.Create("deployments");
        await backend.SaveLogBookAsync(book);
        var id = Guid.NewGuid();
        var engine = FlowEngine.CreateSerial(ThreeSteps(new CallLog()), new EngineOptions { Persistence = backend, FlowDetailId = id, LogBookId = book.Id });
        await engine.RunAsync();
        Assert.Equal(id, engine.FlowDetailId);
        var details = await backend.ListFlowDetailsAsync(book.Id);
        Assert.Equal(id, Assert.Single(details).Id);
        Assert.Equal("deployments", (await backend.GetLogBookAsync(book.Id))!.Name);
    }

    [Fact]
    public void Prepare_WithPersistence_AsksForPrepareAsync()
    {
        var engine = FlowEngine.CreateSerial(ThreeSteps(new CallLog()), new EngineOptions { Persistence = new InMemoryPersistenceBackend() });
        var ex = Assert.Throws<InvalidOperationException>(engine.Prepare);
        Assert.Contains("PrepareAsync", ex.Message);
    }

    [Fact]
    public async Task RunAsync_OnDirectoryBackend_ANewBackendInstanceResumesTheSuspendedRun()
    {
        var folder = Directory.CreateTempSubdirectory("taskflow-persisted-").FullName;
        try
        {
            var log = new CallLog();
            Guid id;
            await using (var backend = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }))
            {
                var engine = FlowEngine.CreateSerial(ThreeSteps(log), new EngineOptions { Persistence = backend });
                engine.Notifications.SubscribeAtomState(AtomState.Success, e => { if (e.AtomName == "b") engine.Suspend(); });
                await engine.RunAsync();
                id = engine.FlowDetailId!.Value;
            }
            await using (var reopened = new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = folder }))
            {
                var resumed = FlowEngine.CreateSerial(ThreeSteps(log), new EngineOptions { Persistence = reopened, FlowDetailId = id });
                await resumed.RunAsync();
                Assert.Equal("A", resumed.Storage.Fetch<string>("ra"));
            }
            Assert.Equal(["a.execute", "b.execute", "c.execute"], log.Calls);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
