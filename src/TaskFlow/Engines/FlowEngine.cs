using System.Runtime.CompilerServices;
using TaskFlow.Engines.Compilation;
using TaskFlow.Engines.Journaling;
using TaskFlow.Engines.Scheduling;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.States;
using TaskFlow.Storage;

namespace TaskFlow.Engines;

/// <summary>
/// Runs a flow: executes atoms in dependency order, reverts what was done when something fails (or retries under a
/// retry controller), and publishes every state change. Create one with <see cref="CreateSerial"/> or
/// <see cref="CreateParallel"/>; run it with <see cref="RunAsync"/>.
/// </summary>
public sealed class FlowEngine
{
    private readonly EngineOptions _options;
    private CompiledFlow? _compiled;
    private FlowStorage? _storage;
    // The store snapshot the last successful Validate checked (requirements depend only on the compiled flow and on
    // the store's keys): RunAsync after an explicit Validate does not walk every atom a second time.
    private object? _validatedStore;
    private RunJournal? _journal;
    private FlowState _flowState = FlowState.Pending;
    private int _running;
    private volatile bool _suspendRequested;
    private readonly Lock _stateGate = new();

    private FlowEngine(Flow flow, EngineOptions? options, bool parallel)
    {
        ArgumentNullException.ThrowIfNull(flow);
        Flow = flow;
        _options = options ?? new EngineOptions();
        IsParallel = parallel;
        if (parallel && _options.MaxDegreeOfParallelism == 0)
            throw new ArgumentOutOfRangeException(nameof(options), "MaxDegreeOfParallelism must be positive, or -1 for unbounded.");
    }

    /// <summary>An engine that runs one atom at a time on the caller's context.</summary>
    public static FlowEngine CreateSerial(Flow flow, EngineOptions? options = null) => new(flow, options, parallel: false);

    /// <summary>An engine that runs independent atoms concurrently, up to <see cref="EngineOptions.MaxDegreeOfParallelism"/>.</summary>
    public static FlowEngine CreateParallel(Flow flow, EngineOptions? options = null) => new(flow, options, parallel: true);

    /// <summary>The flow this engine runs.</summary>
    public Flow Flow { get; }

    /// <summary>Whether this is the parallel engine.</summary>
    public bool IsParallel { get; }

    /// <summary>The options.</summary>
    public EngineOptions Options => _options;

    /// <summary>Where state changes, progress and flow events are published.</summary>
    public NotificationHub Notifications { get; } = new();

    /// <summary>The flow's current state.</summary>
    public FlowState State => _flowState;

    /// <summary>The run's storage (atom states, results, the store). Available after <see cref="Prepare"/>.</summary>
    public FlowStorage Storage => _storage ?? throw new InvalidOperationException($"Engine for flow '{Flow.Name}' is not prepared yet; call Prepare() or run it first.");

    internal CompiledFlow Compiled => _compiled ?? throw new InvalidOperationException("Not compiled.");

    /// <summary>Compiles the flow into its execution graph (once); definition errors surface here.</summary>
    public void Compile() => _compiled ??= FlowCompiler.Compile(Flow);

    /// <summary>
    /// Compiles and creates the run's storage (once). A REVERTED run is reset so it can run again. An engine with
    /// <see cref="EngineOptions.Persistence"/> must be prepared with <see cref="PrepareAsync"/>, which loads or creates
    /// the saved run.
    /// </summary>
    /// <exception cref="InvalidOperationException">The engine persists its run and <see cref="PrepareAsync"/> has not run yet.</exception>
    public void Prepare()
    {
        EnsureStorage();
        if (_flowState == FlowState.Reverted) Reset();
    }

    private void EnsureStorage()
    {
        Compile();
        if (_storage is not null) return;
        if (_options.Persistence is not null)
            throw new InvalidOperationException($"Engine for flow '{Flow.Name}' persists its run: prepare it with PrepareAsync (RunAsync does), which loads or creates the saved run.");
        _storage = new FlowStorage(_compiled!, _options.Store);
    }

    /// <summary>
    /// Compiles and creates the run's storage (once). With <see cref="EngineOptions.Persistence"/> it creates the
    /// logbook and flow detail, or loads the saved run of <see cref="EngineOptions.FlowDetailId"/> so finished atoms
    /// keep their results and are not run again. A REVERTED run is reset so it can run again.
    /// </summary>
    /// <exception cref="FlowDefinitionException">The saved run does not match this flow's definition (each difference is named).</exception>
    /// <exception cref="Persistence.PersistenceException">The backend failed or holds malformed data.</exception>
    /// <exception cref="ArgumentException">A store value cannot be saved as JSON.</exception>
    public async Task PrepareAsync(CancellationToken cancellationToken = default)
    {
        Compile();
        if (_storage is null && _options.Persistence is not null)
        {
            var storage = new FlowStorage(_compiled!, _options.Store);
            var (journal, savedState) = await RunJournal.OpenAsync(this, storage, _options, cancellationToken).ConfigureAwait(false);
            storage.Journal = journal;
            _journal = journal;
            _flowState = savedState;
            _storage = storage;
            // TaskFlow's prepare: RESUMING, then SUSPENDED (a run saved as RUNNING or SUSPENDING was interrupted).
            ChangeFlowState(FlowState.Resuming);
            ChangeFlowState(FlowState.Suspended);
        }
        Prepare();
        if (_journal is not null) await _journal.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>The id of the flow detail this run is saved under; null when the engine has no persistence or is not prepared.</summary>
    public Guid? FlowDetailId => _journal?.FlowDetailId;

    /// <summary>The id of the logbook holding <see cref="FlowDetailId"/>; null when the engine has no persistence or is not prepared.</summary>
    public Guid? LogBookId => _journal?.LogBookId;

    /// <summary>Checks that every atom's required inputs are available; throws <see cref="MissingDependenciesException"/> listing all that are not.</summary>
    public void Validate()
    {
        Prepare();
        var s = _storage!;
        var store = s.StoreVersion;
        if (ReferenceEquals(store, _validatedStore)) return;
        var c = _compiled!;
        var missing = new List<MissingRequirement>();
        foreach (var node in c.AtomNodes)
        {
            var atom = c.Atoms[node]!;
            var exec = atom.ExecuteBindings;
            for (int i = 0; i < exec.Count; i++)
                if (!s.IsSatisfiable(node, i, exec[i], revert: false))
                    missing.Add(new MissingRequirement(atom.Name, exec[i].Parameter, exec[i].Symbol, "execute"));
            var rev = atom.RevertBindings;
            if (ReferenceEquals(rev, exec)) continue; // revert binds as execute does: the same answers, already listed
            for (int i = 0; i < rev.Count; i++)
                if (!s.IsSatisfiable(node, i, rev[i], revert: true) && !IsListed(missing, atom.Name, rev[i].Symbol))
                    missing.Add(new MissingRequirement(atom.Name, rev[i].Parameter, rev[i].Symbol, "revert"));
        }
        if (missing.Count > 0) throw new MissingDependenciesException(Flow.Name, missing);
        _validatedStore = store;
    }

    // A loop, not a lambda: a lambda capturing the atom would cost a closure per atom validated.
    private static bool IsListed(List<MissingRequirement> missing, string atomName, string symbol)
    {
        foreach (var m in missing)
            if (m.AtomName == atomName && m.SymbolName == symbol) return true;
        return false;
    }

    /// <summary>
    /// Runs the flow to the end. On success returns; when atoms failed and were reverted, throws the original exception
    /// (or <see cref="WrappedFailureException"/> for several); when a revert failed, throws the revert failure.
    /// Cancelling <paramref name="cancellationToken"/> suspends the run (running atoms see the token; nothing new
    /// starts) and then throws <see cref="OperationCanceledException"/>; a later run continues it.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        var last = EngineState.Undefined;
        var states = RunIterAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
        await using (states.ConfigureAwait(false))
        {
            while (await states.MoveNextAsync().ConfigureAwait(false))
            {
                last = states.Current;
                if (last is EngineState.Success or EngineState.Reverted or EngineState.Suspended) break;
            }
        }
        // What the iterator would raise after its last state, raised here: the exception then leaves one async frame
        // fewer (each frame it leaves costs a rethrow).
        RaiseFor(last, cancellationToken);
    }

    /// <summary>Runs the flow, yielding each state of the engine's machine (the last is SUCCESS, REVERTED or SUSPENDED).</summary>
    public async IAsyncEnumerable<EngineState> RunIterAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _running, 1) == 1)
            throw new InvalidStateException($"Engine for flow '{Flow.Name}' is already running; an engine runs one flow run at a time.");
        try
        {
            await PrepareAsync(cancellationToken).ConfigureAwait(false);
            Validate();
            using var telemetry = Telemetry.EngineTelemetry.AttachIfListening(this);
            _suspendRequested = false;
            ChangeFlowState(FlowState.Running);
            if (_journal is not null) await _journal.FlushAsync().ConfigureAwait(false);
            var loop = new EngineLoop(this, _storage!, cancellationToken);
            using var registration = cancellationToken.Register(static e => ((FlowEngine)e!).Suspend(), this);
            while (true)
            {
                EngineState state;
                try
                {
                    state = await loop.NextAsync().ConfigureAwait(false);
                }
                catch
                {
                    ChangeFlowState(FlowState.Failure);
                    await SaveAfterFailureAsync().ConfigureAwait(false);
                    throw;
                }
                if (state == EngineState.GameOver) continue;
                if (state is EngineState.Success or EngineState.Reverted or EngineState.Suspended)
                {
                    // A cancelled run can end before the token's Suspend() callback has run: suspend on its behalf.
                    if (state == EngineState.Suspended) ChangeFlowState(FlowState.Suspending);
                    ChangeFlowState(state switch
                    {
                        EngineState.Success => FlowState.Success,
                        EngineState.Reverted => FlowState.Reverted,
                        _ => FlowState.Suspended,
                    });
                    if (_journal is not null) await _journal.FlushAsync().ConfigureAwait(false);
                    yield return state;
                    RaiseFor(state, cancellationToken);
                    yield break;
                }
                yield return state;
            }
        }
        finally
        {
            Volatile.Write(ref _running, 0);
        }
    }

    /// <summary>
    /// Saves what it can after the loop failed. If the store itself is what failed, the run stays saved as it was
    /// (RUNNING), which resumes like a crash; the loop's exception is the one the caller needs, so this one is dropped.
    /// </summary>
    private async ValueTask SaveAfterFailureAsync()
    {
        if (_journal is null) return;
        try
        {
            await _journal.FlushAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Deliberately dropped: see above.
        }
    }

    /// <summary>What a run that ended in <paramref name="final"/> raises: its failures when reverted, a cancellation when suspended by it.</summary>
    private void RaiseFor(EngineState final, CancellationToken cancellationToken)
    {
        if (final == EngineState.Reverted) RaiseStoredFailures();
        if (final == EngineState.Suspended) cancellationToken.ThrowIfCancellationRequested();
    }

    private void RaiseStoredFailures()
    {
        var s = _storage!;
        var failures = s.ExecuteFailureCache.Values.Concat(s.RevertFailureCache.Values).ToList();
        ThrowFailures(failures);
    }

    internal static void ThrowFailures(IReadOnlyList<Failure> failures)
    {
        if (failures.Count == 1) failures[0].Rethrow();
        if (failures.Count > 1) throw new WrappedFailureException(failures);
    }

    /// <summary>
    /// Asks a running flow to stop gracefully: running atoms finish, nothing new starts, and the run ends SUSPENDED
    /// (or in its final state if nothing was left). A later <see cref="RunAsync"/> continues it.
    /// </summary>
    public void Suspend()
    {
        _suspendRequested = true;
        ChangeFlowState(FlowState.Suspending);
    }

    /// <summary>
    /// Returns every atom to PENDING/EXECUTE and the flow to PENDING, so the flow can run again from the start. In a
    /// persisted run the reset is saved at the next run's first save point.
    /// </summary>
    public void Reset()
    {
        if (Volatile.Read(ref _running) == 1)
            throw new InvalidStateException($"Engine for flow '{Flow.Name}' is running; it cannot be reset now.");
        EnsureStorage();
        var s = _storage!;
        foreach (var node in _compiled!.AtomNodes)
        {
            AtomActions.ChangeState(this, s, node, AtomState.Pending);
            s.SetIntention(node, AtomIntention.Execute);
        }
        ChangeFlowState(FlowState.Pending);
    }

    internal bool SuspendRequested => _suspendRequested;

    internal void ChangeFlowState(FlowState state)
    {
        FlowState old;
        lock (_stateGate)
        {
            old = _flowState;
            var check = Transitions.CheckFlowTransition(old, state);
            if (check is null) return;
            if (check == false)
                throw new InvalidStateException($"Flow '{Flow.Name}' cannot move from {old.ToTaskFlowName()} to {state.ToTaskFlowName()}.");
            _flowState = state;
        }
        var e = new FlowStateChanged(Flow.Name, state, old);
        // A persisted run publishes the change once it is saved (the loop's next save point).
        if (_journal is { } journal) journal.DeferFlowState(state, e, Notifications.HasSubscribers<FlowStateChanged>());
        else Notifications.Publish(e);
    }
}
