using System.Text.Json;
using TaskFlow.Engines.Compilation;
using TaskFlow.Failures;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.Retries;
using TaskFlow.States;
using TaskFlow.Storage;
using PersistedAttempt = TaskFlow.Persistence.RetryAttempt;

namespace TaskFlow.Engines.Journaling;

/// <summary>
/// Saves a persisted run's state changes before the engine acts on them (TaskFlow's save points, batched). The
/// engine marks atoms dirty as their state, intention, result or history changes and defers the notifications of
/// those changes; <see cref="FlushAsync"/> writes every dirty atom in one backend call, then the flow state, and only
/// then publishes the deferred notifications, so nobody hears of a state that is not saved. The loop flushes before
/// it runs any user code and when the run ends, so what is saved is always a state the run really reached: a process
/// killed at any point resumes from it.
/// </summary>
/// <remarks>
/// Results are turned into JSON when they are produced (<see cref="ToJson"/>), not when they are written: a value
/// that cannot be saved becomes the atom's failure before its state advances. Everything here runs on the engine's
/// loop except <see cref="DeferFlowState"/> (a suspend from another thread) and <see cref="MarkStoreDirty"/>
/// (an <see cref="FlowStorage.Inject"/> from a task).
/// </remarks>
internal sealed class RunJournal
{
    internal const string StoreMetadataKey = "store";
    internal const string ProgressMetadataKey = "progress";

    private static readonly JsonElement JsonNull = JsonSerializer.SerializeToElement<object?>(null);
    private static readonly JsonElement ProgressZero = JsonSerializer.SerializeToElement(0.0);
    private static readonly JsonElement ProgressOne = JsonSerializer.SerializeToElement(1.0);

    private readonly IPersistenceBackend _backend;
    private readonly FlowEngine _engine;
    private readonly FlowStorage _s;
    private readonly CompiledFlow _c;
    private readonly Guid[] _atomIds;
    private readonly JsonElement?[] _resultJson;
    private readonly JsonElement?[] _revertJson;
    private readonly IReadOnlyDictionary<string, JsonElement>?[] _keptMetadata;
    private readonly bool[] _dirty;
    private readonly List<int> _dirtyNodes = [];
    private FlowDetail _header;
    private int _storeDirty;

    // Written from the loop and from Suspend() on any thread.
    private readonly Lock _gate = new();
    private FlowState? _unsavedFlowState;
    private List<PendingEvent> _pending = [];
    private List<PendingEvent> _publishing = [];

    private readonly record struct PendingEvent(bool IsFlow, AtomStateChanged Atom, FlowStateChanged Flow);

    private RunJournal(IPersistenceBackend backend, FlowEngine engine, FlowStorage storage, FlowDetail header)
    {
        _backend = backend;
        _engine = engine;
        _s = storage;
        _c = storage.Compiled;
        _header = header with { Atoms = [] };
        int n = _c.NodeCount;
        _atomIds = new Guid[n];
        _resultJson = new JsonElement?[n];
        _revertJson = new JsonElement?[n];
        _keptMetadata = new IReadOnlyDictionary<string, JsonElement>?[n];
        _dirty = new bool[n];
    }

    /// <summary>The flow detail the run is saved under.</summary>
    public Guid FlowDetailId => _header.Id;

    /// <summary>The logbook of that flow detail.</summary>
    public Guid LogBookId => _header.LogBookId;

    /// <summary>
    /// Opens the run's journal: creates the logbook and flow detail (with every atom PENDING) when
    /// <see cref="EngineOptions.FlowDetailId"/> is not stored, or loads the stored one into <paramref name="storage"/>.
    /// Returns the flow state the run was saved in.
    /// </summary>
    public static async Task<(RunJournal Journal, FlowState SavedState)> OpenAsync(FlowEngine engine, FlowStorage storage, EngineOptions options, CancellationToken cancellationToken)
    {
        // Backends create or check their schema on first use: no EnsureSchemaAsync round trip per run.
        var backend = options.Persistence!;
        var compiled = storage.Compiled;
        var flowName = compiled.Root.Name;
        FlowDetail? saved = options.FlowDetailId is { } wanted
            ? await backend.GetFlowDetailAsync(wanted, cancellationToken).ConfigureAwait(false)
            : null;
        if (saved is not null)
        {
            var journal = new RunJournal(backend, engine, storage, saved);
            var added = journal.Restore(saved, options.Store);
            if (added.Count > 0)
                await backend.SaveAtomDetailsAsync(saved.Id, added, cancellationToken).ConfigureAwait(false);
            if (Interlocked.Exchange(ref journal._storeDirty, 0) == 1)
                await journal.SaveHeaderAsync(cancellationToken).ConfigureAwait(false);
            return (journal, saved.State);
        }

        // Everything that can be refused is checked before the first write.
        var metadata = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        if (options.Store.Count > 0) metadata[StoreMetadataKey] = StoreToJson(options.Store);
        var time = options.TimeProvider;
        var logBookId = options.LogBookId ?? Guid.CreateVersion7(time.GetUtcNow());
        if (options.LogBookId is null || await backend.GetLogBookAsync(logBookId, cancellationToken).ConfigureAwait(false) is null)
            await backend.SaveLogBookAsync(LogBook.Create(flowName, time) with { Id = logBookId }, cancellationToken).ConfigureAwait(false);
        var detail = FlowDetail.Create(logBookId, flowName, time);
        if (options.FlowDetailId is { } id) detail = detail with { Id = id };
        var created = new RunJournal(backend, engine, storage, detail);
        var atoms = new List<AtomDetail>(compiled.AtomNodes.Length);
        foreach (var node in compiled.AtomNodes) atoms.Add(created.NewDetail(node));
        created._header = detail with { Metadata = metadata };
        await backend.SaveFlowDetailAsync(created._header with { Atoms = atoms }, cancellationToken).ConfigureAwait(false);
        return (created, FlowState.Pending);
    }

    // ---------------- resuming ----------------

    /// <summary>
    /// Loads a saved run into storage, matching atoms by name. Returns the details to add for atoms the saved run does
    /// not have yet. Refuses (with every problem listed) a definition that changed in a way that would make the saved
    /// run mean something else: an atom whose saved kind differs, an atom that started under another version, or a
    /// saved atom that did work (or is mid-way) and is no longer in the flow.
    /// </summary>
    private List<AtomDetail> Restore(FlowDetail saved, IDictionary<string, object?> optionStore)
    {
        var problems = new List<string>();
        var byName = new Dictionary<string, AtomDetail>(StringComparer.Ordinal);
        foreach (var d in saved.Atoms) byName[d.Name] = d;
        foreach (var d in saved.Atoms)
        {
            if (_c.NodeByAtomName.ContainsKey(d.Name)) continue;
            if (d.State is not (AtomState.Pending or AtomState.Ignore or AtomState.Reverted))
                problems.Add($"saved atom '{d.Name}' is {d.State.ToTaskFlowName()} but the flow has no atom of that name (removed or renamed)");
        }
        var added = new List<AtomDetail>();
        foreach (var node in _c.AtomNodes)
        {
            var atom = _c.Atoms[node]!;
            bool isRetry = _c.Kinds[node] == NodeKind.Retry;
            if (!byName.TryGetValue(atom.Name, out var d))
            {
                added.Add(NewDetail(node));
                continue;
            }
            if (isRetry != d is RetryDetail)
            {
                problems.Add($"atom '{atom.Name}' is a {(isRetry ? "retry" : "task")} but was saved as a {(d is RetryDetail ? "retry" : "task")}");
                continue;
            }
            if (d.Version != atom.Version && d.State != AtomState.Pending)
            {
                problems.Add($"atom '{atom.Name}' has version {atom.Version} but the saved run started it under version {d.Version}");
                continue;
            }
            Load(node, d);
        }
        if (problems.Count > 0)
            throw new FlowDefinitionException(
                $"Flow detail {saved.Id} cannot be resumed with this definition of flow '{_c.Root.Name}': {string.Join("; ", problems)}. "
                + "Resume it with the definition that saved it, or delete the saved run and start again.");

        var store = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (saved.Metadata.TryGetValue(StoreMetadataKey, out var savedStore) && savedStore.ValueKind == JsonValueKind.Object)
            foreach (var p in savedStore.EnumerateObject()) store[p.Name] = FromJson(p.Value);
        bool changed = false;
        foreach (var (k, v) in optionStore)
        {
            ArgumentNullException.ThrowIfNull(k, "store key");
            changed |= !store.TryGetValue(k, out var old) || !JsonElement.DeepEquals(ToStoreJson(k, old), ToStoreJson(k, v));
            store[k] = v;
        }
        _s.ReplaceStore(store);
        if (changed) _storeDirty = 1;
        return added;
    }

    private void Load(int node, AtomDetail d)
    {
        _atomIds[node] = d.Id;
        _s.States[node] = d.State;
        _s.Intentions[node] = d.Intention;
        var kept = d.Metadata.Where(kv => kv.Key != ProgressMetadataKey).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        if (kept.Count > 0) _keptMetadata[node] = kept;
        switch (d)
        {
            case TaskDetail t:
                _s.Results[node] = FromJson(t.Result);
                _resultJson[node] = t.Result;
                _s.RevertResults[node] = FromJson(t.RevertResult);
                _revertJson[node] = t.RevertResult;
                _s.FailureOf[node] = t.Failure;
                _s.RevertFailureOf[node] = t.RevertFailure;
                if (d.Metadata.TryGetValue(ProgressMetadataKey, out var p) && p.ValueKind == JsonValueKind.Number)
                    _s.Progress[node] = Math.Clamp(p.GetDouble(), 0.0, 1.0);
                break;
            case RetryDetail r:
                var history = _s.Histories[node]!;
                history.Clear();
                foreach (var attempt in r.History)
                    history.Add(new Retries.RetryAttempt(FromJson(attempt.Value), attempt.Failures) { SavedValue = attempt.Value ?? JsonNull });
                _s.FailureOf[node] = r.Failure;
                _s.RevertFailureOf[node] = r.RevertFailure;
                break;
        }
        // TaskFlow rebuilds its failure cache from the saved failures.
        if (_s.FailureOf[node] is { } f) _s.ExecuteFailureCache.Set(node, f);
        if (_s.RevertFailureOf[node] is { } rf) _s.RevertFailureCache.Set(node, rf);
    }

    /// <summary>A PENDING detail for an atom the saved run does not have yet (its id is remembered for later saves).</summary>
    private AtomDetail NewDetail(int node)
    {
        var atom = _c.Atoms[node]!;
        AtomDetail fresh = _c.Kinds[node] == NodeKind.Retry
            ? RetryDetail.Create(atom.Name) with { Version = atom.Version }
            : TaskDetail.Create(atom.Name) with { Version = atom.Version };
        _atomIds[node] = fresh.Id;
        return fresh;
    }

    /// <summary>Saved JSON as the value tasks see: JSON null is null, everything else stays a <see cref="JsonElement"/>.</summary>
    private static object? FromJson(JsonElement? value) =>
        value is not { } v || v.ValueKind == JsonValueKind.Null ? null : v;

    // ---------------- recording ----------------

    /// <summary>
    /// The JSON an atom's result, revert result or retry value is saved as, computed when it is produced.
    /// </summary>
    /// <exception cref="PersistenceException">The value cannot be represented as JSON; the message names the atom.</exception>
    public JsonElement ToJson(int node, object? value, string what) => Serialize(value, e =>
    {
        var atom = _c.Atoms[node]!;
        return new PersistenceException(
            $"The {what} of {(_c.Kinds[node] == NodeKind.Retry ? "retry" : "task")} '{atom.Name}' (a {value!.GetType().FullName}) cannot be saved as JSON: {e.Message} "
            + "Return a value System.Text.Json can serialize (records, collections, primitives), or run without persistence.", e);
    });

    /// <summary>A value as saved JSON; <paramref name="refuse"/> turns a serializer error into the exception to throw.</summary>
    private static JsonElement Serialize(object? value, Func<Exception, Exception> refuse)
    {
        if (value is null) return JsonNull;
        if (value is JsonElement element) return element;
        try
        {
            return JsonSerializer.SerializeToElement(value, value.GetType(), PersistenceJson.Options);
        }
        catch (Exception e) when (e is NotSupportedException or JsonException or InvalidOperationException or ArgumentException)
        {
            throw refuse(e);
        }
    }

    /// <summary>Marks an atom as changed since the last save.</summary>
    public void MarkDirty(int node)
    {
        if (_dirty[node]) return;
        _dirty[node] = true;
        _dirtyNodes.Add(node);
    }

    /// <summary>Follows the storage's put rules for the saved JSON, so what is written matches what the run holds.</summary>
    public void OnPut(int node, AtomState state, JsonElement? saved)
    {
        switch (state)
        {
            case AtomState.Success:
                _resultJson[node] = saved ?? JsonNull;
                _revertJson[node] = null;
                break;
            case AtomState.Failure:
                _resultJson[node] = null;
                _revertJson[node] = null;
                break;
            case AtomState.Reverted:
                _revertJson[node] = saved ?? JsonNull;
                break;
            case AtomState.RevertFailure:
                _resultJson[node] = null;
                _revertJson[node] = null;
                break;
        }
        MarkDirty(node);
    }

    /// <summary>Holds an atom notification until the change it reports is saved.</summary>
    public void Defer(in AtomStateChanged e)
    {
        lock (_gate) _pending.Add(new PendingEvent(false, e, default));
    }

    /// <summary>Records a flow state to save, and holds its notification until it is saved.</summary>
    public void DeferFlowState(FlowState state, in FlowStateChanged e, bool notify)
    {
        lock (_gate)
        {
            _unsavedFlowState = state;
            if (notify) _pending.Add(new PendingEvent(true, default, e));
        }
    }

    /// <summary>Marks the store as changed (it is saved in the flow detail's metadata).</summary>
    public void MarkStoreDirty() => Interlocked.Exchange(ref _storeDirty, 1);

    /// <summary>The JSON a store value is saved as; throws naming the key when it cannot be.</summary>
    public static JsonElement ToStoreJson(string key, object? value) => Serialize(value, e =>
        new ArgumentException($"Store value '{key}' (a {value!.GetType().FullName}) cannot be saved as JSON, which a persisted run needs: {e.Message}", e));

    private static JsonElement StoreToJson(IEnumerable<KeyValuePair<string, object?>> store)
    {
        var copy = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var (k, v) in store)
        {
            ArgumentNullException.ThrowIfNull(k, "store key");
            copy[k] = ToStoreJson(k, v);
        }
        return JsonSerializer.SerializeToElement(copy, PersistenceJson.Options);
    }

    // ---------------- saving ----------------

    /// <summary>Whether notifications are waiting for a save (someone listens, so the save should not wait).</summary>
    public bool HasPendingEvents
    {
        get { lock (_gate) return _pending.Count > 0; }
    }

    /// <summary>
    /// Saves every dirty atom (one batch), the store and the flow state, then publishes the notifications held back
    /// for them. When the backend fails nothing is marked clean, so the next flush writes it all again.
    /// </summary>
    public async ValueTask FlushAsync()
    {
        // Saves are not cancelled by the run's token: a cancelled run still records where it stopped.
        var ct = CancellationToken.None;
        if (Interlocked.Exchange(ref _storeDirty, 0) == 1)
        {
            try
            {
                await SaveHeaderAsync(ct).ConfigureAwait(false);
            }
            catch
            {
                _storeDirty = 1;
                throw;
            }
        }
        if (_dirtyNodes.Count > 0)
        {
            var batch = new AtomDetail[_dirtyNodes.Count];
            for (int i = 0; i < batch.Length; i++) batch[i] = BuildDetail(_dirtyNodes[i]);
            await Wrap(_backend.SaveAtomDetailsAsync(_header.Id, batch, ct), "the state of " + (batch.Length == 1 ? $"atom '{batch[0].Name}'" : $"{batch.Length} atoms")).ConfigureAwait(false);
            foreach (var n in _dirtyNodes) _dirty[n] = false;
            _dirtyNodes.Clear();
        }
        FlowState? flowState;
        lock (_gate)
        {
            flowState = _unsavedFlowState;
            _unsavedFlowState = null;
        }
        if (flowState is { } fs)
        {
            try
            {
                await Wrap(_backend.UpdateFlowStateAsync(_header.Id, fs, ct), $"flow state {fs.ToTaskFlowName()}").ConfigureAwait(false);
            }
            catch
            {
                lock (_gate) _unsavedFlowState ??= fs;
                throw;
            }
        }
        PublishPending();
    }

    private void PublishPending()
    {
        List<PendingEvent> events;
        lock (_gate)
        {
            if (_pending.Count == 0) return;
            events = _pending;
            _pending = _publishing;
            _publishing = events;
        }
        var hub = _engine.Notifications;
        foreach (var e in events)
        {
            if (e.IsFlow) hub.Publish(e.Flow);
            else hub.Publish(e.Atom);
        }
        events.Clear();
    }

    private async Task SaveHeaderAsync(CancellationToken ct)
    {
        var metadata = new Dictionary<string, JsonElement>(_header.Metadata, StringComparer.Ordinal)
        {
            [StoreMetadataKey] = StoreToJson(_s.Store),
        };
        _header = _header with { Metadata = metadata };
        await Wrap(_backend.SaveFlowDetailAsync(_header, ct), "the flow's store").ConfigureAwait(false);
    }

    private async Task Wrap(Task save, string what)
    {
        try
        {
            await save.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The backend's own message says which store and why; this adds which run and what was being saved.
            throw new PersistenceException(
                $"Saving {what} of flow '{_c.Root.Name}' (flow detail {_header.Id}) failed: {e.Message} "
                + "The run stopped; it resumes from what was saved once the store is reachable again.", e);
        }
    }

    private AtomDetail BuildDetail(int node)
    {
        var atom = _c.Atoms[node]!;
        var kept = _keptMetadata[node];
        if (_c.Kinds[node] == NodeKind.Retry)
        {
            var history = _s.Histories[node]!;
            var attempts = new PersistedAttempt[history.Count];
            for (int i = 0; i < attempts.Length; i++)
            {
                var a = history[i];
                attempts[i] = new PersistedAttempt(a.SavedValue ?? ToJson(node, a.Value, "value"), a.Failures);
            }
            return new RetryDetail
            {
                Id = _atomIds[node],
                Name = atom.Name,
                Version = atom.Version,
                State = _s.States[node],
                Intention = _s.Intentions[node],
                Metadata = kept ?? ModelValues.EmptyMetadata,
                History = attempts,
                Failure = _s.FailureOf[node],
                RevertFailure = _s.RevertFailureOf[node],
            };
        }
        double progress = Volatile.Read(ref _s.Progress[node]);
        var progressJson = progress == 0.0 ? ProgressZero : progress == 1.0 ? ProgressOne : JsonSerializer.SerializeToElement(progress);
        IReadOnlyDictionary<string, JsonElement> metadata;
        if (kept is null) metadata = new Dictionary<string, JsonElement>(1, StringComparer.Ordinal) { [ProgressMetadataKey] = progressJson };
        else metadata = new Dictionary<string, JsonElement>(kept, StringComparer.Ordinal) { [ProgressMetadataKey] = progressJson };
        return new TaskDetail
        {
            Id = _atomIds[node],
            Name = atom.Name,
            Version = atom.Version,
            State = _s.States[node],
            Intention = _s.Intentions[node],
            Metadata = metadata,
            Result = _resultJson[node],
            Failure = _s.FailureOf[node],
            RevertResult = _revertJson[node],
            RevertFailure = _s.RevertFailureOf[node],
        };
    }
}
