using System.Threading.Channels;
using TaskFlow.Atoms;
using TaskFlow.Engines.Compilation;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;
using TaskFlow.Storage;

namespace TaskFlow.Engines.Scheduling;

/// <summary>
/// The engine's run loop: TaskFlow's machine (RESUMING → SCHEDULING → WAITING → ANALYZING → … → GAME_OVER) with
/// the selector, scheduler and completer. Readiness is checked against neighbours only (a linear flow costs O(1)
/// per atom), never by rescanning the graph, and the walks reuse the loop's scratch space instead of allocating.
/// All state changes happen on the loop; tasks only run user code.
/// </summary>
internal sealed class EngineLoop
{
    private readonly FlowEngine _engine;
    private readonly FlowStorage _s;
    private readonly CompiledFlow _c;
    private readonly CancellationToken _cancellationToken;
    private readonly bool _parallel;
    private readonly SemaphoreSlim? _throttle;
    private readonly Channel<Completion>? _completions;
    private readonly Action<int, double, object?> _onProgress;
    private List<(int From, FlowLink Link)>?[]? _edgeDeciders; // only flows with decider links need it
    private readonly TaskExecutor? _executor;
    private readonly Journaling.RunJournal? _journal;
    private readonly List<TaskCall> _starts = [];

    // What the next call of NextAsync does; the state it returns is the one it performed.
    private EngineState _next = EngineState.Resuming;
    private readonly List<int> _nextUp = [];
    private readonly bool[] _inNextUp;
    private readonly List<Completion> _done = [];
    private readonly List<Failure> _failures = [];
    private int _inFlight;
    private bool _anyCancelled;

    // Browsing (which calls the readiness checks) and the readiness checks each have their own scratch walk.
    private readonly Walk _browseWalk;
    private readonly Walk _readyWalk;

    private readonly record struct Completion(int Node, bool IsRevert, object? Result, Failure? Failure, bool Cancelled);

    /// <summary>Verdict of a readiness walk on one atom: blocks readiness, settles its branch, or is looked through.</summary>
    private enum Verdict { Block, Settled, LookThrough }

    /// <summary>
    /// Visited marks for one kind of walk: a node is visited in the current walk when its mark equals the stamp, so
    /// starting a walk costs nothing. Browsing keeps a queue (TaskFlow browses breadth-first), readiness checks a stack.
    /// </summary>
    private sealed class Walk(int nodeCount)
    {
        private readonly int[] _marks = new int[nodeCount];
        private int _stamp;
        public readonly Stack<int> Stack = new();
        public readonly Queue<int> Queue = new();

        public void Start()
        {
            if (++_stamp == int.MaxValue) { Array.Clear(_marks); _stamp = 1; }
            Stack.Clear();
            Queue.Clear();
        }

        /// <summary>Marks <paramref name="node"/> visited; false when it already was in this walk.</summary>
        public bool Visit(int node)
        {
            if (_marks[node] == _stamp) return false;
            _marks[node] = _stamp;
            return true;
        }
    }

    public EngineLoop(FlowEngine engine, FlowStorage storage, CancellationToken cancellationToken)
    {
        _engine = engine;
        _s = storage;
        _c = storage.Compiled;
        _cancellationToken = cancellationToken;
        _parallel = engine.IsParallel;
        _executor = engine.Options.Executor;
        _journal = storage.Journal;
        _inNextUp = new bool[_c.NodeCount];
        _onProgress = OnProgress;
        _browseWalk = new Walk(_c.NodeCount);
        _readyWalk = new Walk(_c.NodeCount);
        if (_parallel)
        {
            int max = engine.Options.MaxDegreeOfParallelism;
            if (max > 0) _throttle = new SemaphoreSlim(max, max);
            _completions = Channel.CreateUnbounded<Completion>(new UnboundedChannelOptions { SingleReader = true });
        }
    }

    public async ValueTask<EngineState> NextAsync()
    {
        var current = _next;
        switch (current)
        {
            case EngineState.Resuming:
                Resume();
                _next = EngineState.Scheduling;
                break;
            case EngineState.Scheduling:
                await ScheduleAsync().ConfigureAwait(false);
                _next = EngineState.Waiting;
                break;
            case EngineState.Waiting:
                await WaitAsync().ConfigureAwait(false);
                _next = EngineState.Analyzing;
                break;
            case EngineState.Analyzing:
                _next = Analyze();
                // Listeners hear of completions before anything else is scheduled, as without persistence (a suspend
                // from a handler stops the next batch); with nobody listening the next save point writes them.
                if (_journal is { HasPendingEvents: true }) await _journal.FlushAsync().ConfigureAwait(false);
                break;
            case EngineState.GameOver:
                _next = EngineState.Undefined;
                return GameOver();
            default:
                throw new InvalidStateException($"Engine loop of flow '{_c.Root.Name}' has already finished.");
        }
        return current;
    }

    // ---------------- RESUMING ----------------

    private void Resume()
    {
        foreach (var node in _c.AtomNodes)
            if (_s.States[node] == AtomState.Failure)
                ProcessAtomFailure(node, _s.FailureOf[node]!);
        foreach (var node in _c.AtomNodes)
            if (_c.Kinds[node] == NodeKind.Retry && _s.States[node] == AtomState.Retrying)
                RetrySubflow(node);
        foreach (var node in _c.AtomNodes)
            if (_s.States[node] is AtomState.Running or AtomState.Reverting)
                AddNext(node);
        foreach (var node in _c.AtomNodes)
            if (IsReadyForExecute(node) && CheckDeciders(node)) AddNext(node);
        foreach (var node in _c.AtomNodes)
            if (IsReadyForRevert(node)) AddNext(node);
    }

    private void AddNext(int node)
    {
        if (_inNextUp[node]) return;
        _inNextUp[node] = true;
        _nextUp.Add(node);
    }

    // ---------------- SCHEDULING ----------------

    private async ValueTask ScheduleAsync()
    {
        // Scheduling adds nothing to _nextUp, so the batch is walked in place and cleared afterwards; a scheduling
        // failure drops the rest of the batch, as TaskFlow does.
        try
        {
            if (_engine.State != FlowState.Running || _nextUp.Count == 0 || _engine.SuspendRequested) return;
            SortByPriority();
            for (int i = 0; i < _nextUp.Count; i++)
            {
                int node = _nextUp[i];
                // An atom picked as ready may have been redirected since (a failure resolved in the same batch):
                // never start or revert it then (TaskFlow would revert an atom that never ran; SPEC note N13).
                if (_s.States[node] is not (AtomState.Running or AtomState.Reverting) && !IsReadyForExecute(node) && !IsReadyForRevert(node))
                    continue;
                try
                {
                    await ScheduleOneAsync(node).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    _failures.Add(Failure.FromException(e));
                    return;
                }
            }
        }
        finally
        {
            foreach (var n in _nextUp) _inNextUp[n] = false;
            _nextUp.Clear();
            // Parallel tasks start together once their RUNNING/REVERTING states are saved (one write for the batch).
            if (_journal is not null) await _journal.FlushAsync().ConfigureAwait(false);
            foreach (var call in _starts)
            {
                _inFlight++;
                _ = Task.Run(() => InvokeThrottledAsync(call));
            }
            _starts.Clear();
        }
    }

    /// <summary>Saves what changed before user code runs (a persisted run only).</summary>
    private ValueTask SaveBeforeActingAsync() => _journal is { } j ? j.FlushAsync() : ValueTask.CompletedTask;

    private void SortByPriority()
    {
        if (_nextUp.Count < 2) return;
        bool any = false;
        foreach (var n in _nextUp) if (_c.Atoms[n]!.Priority != 0) { any = true; break; }
        if (!any) return;
        // Stable: equal priorities keep the order they became ready in.
        var ordered = _nextUp.Select((n, i) => (n, i)).OrderByDescending(x => _c.Atoms[x.n]!.Priority).ThenBy(x => x.i).Select(x => x.n).ToArray();
        _nextUp.Clear();
        _nextUp.AddRange(ordered);
    }

    private async ValueTask ScheduleOneAsync(int node)
    {
        var atom = _c.Atoms[node]!;
        var intention = _s.Intentions[node];
        if (atom is RetryController retry)
        {
            switch (intention)
            {
                case AtomIntention.Execute:
                    _done.Add(await ExecuteRetryAsync(node, retry).ConfigureAwait(false));
                    break;
                case AtomIntention.Revert:
                    _done.Add(await RevertRetryAsync(node, retry).ConfigureAwait(false));
                    break;
                case AtomIntention.Retry:
                    AtomActions.ChangeState(_engine, _s, node, AtomState.Retrying);
                    RetrySubflow(node);
                    _done.Add(await ExecuteRetryAsync(node, retry).ConfigureAwait(false));
                    break;
                default:
                    throw new InvalidStateException($"Retry '{atom.Name}' cannot be scheduled with intention {intention.ToTaskFlowName()}.");
            }
            return;
        }
        TaskCall call;
        switch (intention)
        {
            case AtomIntention.Execute:
                AtomActions.ChangeState(_engine, _s, node, AtomState.Running);
                call = new TaskCall(node, (FlowTask)atom, _s.FetchArguments(node, revert: false), false, default, null);
                break;
            case AtomIntention.Revert:
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Reverting);
                if (!_parallel && _executor is null && ((FlowTask)atom).RevertDoesNothing)
                {
                    // Nothing to call (no context, no arguments): the task is reverted once its REVERTING state is saved.
                    // The parallel engine keeps its one path, where completions arrive in the order calls end.
                    await SaveBeforeActingAsync().ConfigureAwait(false);
                    _done.Add(new Completion(node, true, null, null, false));
                    return;
                }
                var args = _s.FetchArguments(node, revert: true);
                _s.TryGetExecuteResult(node, out var prior, out _);
                var outcome = prior is Failure pf ? TaskOutcome.FromFailure(pf) : TaskOutcome.FromValue(prior);
                call = new TaskCall(node, (FlowTask)atom, args, true, outcome, _s.GetFailures());
                break;
            }
            default:
                throw new InvalidStateException($"Task '{atom.Name}' cannot be scheduled with intention {intention.ToTaskFlowName()}.");
        }
        if (!_parallel)
        {
            await SaveBeforeActingAsync().ConfigureAwait(false);
            _done.Add(await InvokeAsync(call).ConfigureAwait(false));
            return;
        }
        _starts.Add(call);
    }

    /// <summary>Everything one task call needs, fixed at scheduling time on the loop.</summary>
    private readonly record struct TaskCall(int Node, FlowTask Task, TaskArguments Arguments, bool IsRevert, TaskOutcome Outcome, IReadOnlyDictionary<string, Failure>? FlowFailures);

    // A context per call rather than one kept per atom for the run: short-lived objects cost a gen-0 collection
    // nothing, while 100k contexts held for the run survive every collection and get copied to gen 2.
    private TaskContext ContextOf(int node) => new(_c.Atoms[node]!.Name, node, _cancellationToken, _onProgress);

    private void OnProgress(int node, double progress, object? details)
    {
        Volatile.Write(ref _s.Progress[node], progress);
        var hub = _engine.Notifications;
        if (hub.HasSubscribers<TaskProgressChanged>()) hub.Publish(new TaskProgressChanged(_c.Atoms[node]!.Name, progress, details));
    }

    private async Task InvokeThrottledAsync(TaskCall call)
    {
        var throttle = _throttle;
        if (throttle is not null) await throttle.WaitAsync().ConfigureAwait(false);
        Completion completion;
        try
        {
            completion = await InvokeAsync(call).ConfigureAwait(false);
        }
        finally
        {
            throttle?.Release();
        }
        _completions!.Writer.TryWrite(completion);
    }

    private async ValueTask<Completion> InvokeAsync(TaskCall call)
    {
        try
        {
            var context = ContextOf(call.Node); // fresh for each call, so progress throttling starts afresh too
            var executor = _executor;
            var result = executor is null
                ? call.IsRevert
                    ? await call.Task.RevertAsync(call.Arguments, call.Outcome, call.FlowFailures!, context).ConfigureAwait(false)
                    : await call.Task.ExecuteAsync(call.Arguments, context).ConfigureAwait(false)
                : call.IsRevert
                    ? await executor.RevertAsync(call.Task, call.Arguments, call.Outcome, call.FlowFailures!, context).ConfigureAwait(false)
                    : await executor.ExecuteAsync(call.Task, call.Arguments, context).ConfigureAwait(false);
            return new Completion(call.Node, call.IsRevert, result, null, false);
        }
        catch (OperationCanceledException) when (_cancellationToken.IsCancellationRequested)
        {
            // Cancelled by the run's token: the atom is left RUNNING/REVERTING, as after a crash, and runs again on resume.
            return new Completion(call.Node, call.IsRevert, null, null, true);
        }
        catch (Exception e)
        {
            return new Completion(call.Node, call.IsRevert, null, Failure.FromException(e), false);
        }
    }

    private async ValueTask<Completion> ExecuteRetryAsync(int node, RetryController retry)
    {
        AtomActions.ChangeState(_engine, _s, node, AtomState.Running);
        await SaveBeforeActingAsync().ConfigureAwait(false);
        var args = _s.FetchArguments(node, revert: false);
        try
        {
            return new Completion(node, false, retry.Execute(AtomActions.HistoryOf(_s, node), args), null, false);
        }
        catch (Exception e)
        {
            return new Completion(node, false, null, Failure.FromException(e), false);
        }
    }

    private async ValueTask<Completion> RevertRetryAsync(int node, RetryController retry)
    {
        AtomActions.ChangeState(_engine, _s, node, AtomState.Reverting);
        await SaveBeforeActingAsync().ConfigureAwait(false);
        var args = _s.FetchArguments(node, revert: true);
        try
        {
            retry.Revert(AtomActions.HistoryOf(_s, node), args, _s.GetFailures());
            return new Completion(node, true, null, null, false);
        }
        catch (Exception e)
        {
            return new Completion(node, true, null, Failure.FromException(e), false);
        }
    }

    // ---------------- WAITING ----------------

    private async ValueTask WaitAsync()
    {
        if (!_parallel || _inFlight == 0) return;
        await SaveBeforeActingAsync().ConfigureAwait(false);
        var reader = _completions!.Reader;
        _done.Add(await reader.ReadAsync().ConfigureAwait(false));
        _inFlight--;
        while (reader.TryRead(out var more))
        {
            _done.Add(more);
            _inFlight--;
        }
    }

    // ---------------- ANALYZING ----------------

    private EngineState Analyze()
    {
        // Completing adds nothing to _done, so it is walked in place.
        foreach (var c in _done)
        {
            if (c.Cancelled)
            {
                _anyCancelled = true;
                continue;
            }
            try
            {
                Complete(c);
                if (_failures.Count == 0) AddNextAtoms(c.Node);
            }
            catch (Exception e)
            {
                _failures.Add(Failure.FromException(e));
            }
        }
        _done.Clear();
        if (_engine.State == FlowState.Running && !_engine.SuspendRequested && _nextUp.Count > 0 && _failures.Count == 0)
            return EngineState.Scheduling;
        if (_inFlight > 0) return EngineState.Waiting;
        return EngineState.GameOver;
    }

    private void Complete(Completion c)
    {
        int node = c.Node;
        var failure = c.Failure;
        System.Text.Json.JsonElement? saved = null;
        if (failure is null && _journal is not null)
        {
            // A result that cannot be saved fails the atom instead of advancing it (a persisted run only).
            try
            {
                saved = _journal.ToJson(node, c.Result, c.IsRevert ? "revert result" : _c.Kinds[node] == NodeKind.Retry ? "value" : "result");
            }
            catch (Persistence.PersistenceException e)
            {
                failure = Failure.FromException(e);
            }
        }
        if (!c.IsRevert)
        {
            if (failure is { } f)
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Failure, f, hasResult: true);
                ProcessAtomFailure(node, f); // execute failures are resolved, never retained
            }
            else
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Success, c.Result, hasResult: true, saved);
            }
        }
        else if (failure is { } f)
        {
            AtomActions.ChangeState(_engine, _s, node, AtomState.RevertFailure, f, hasResult: true);
            _failures.Add(f); // revert failures are retained: nothing more is scheduled
        }
        else
        {
            AtomActions.ChangeState(_engine, _s, node, AtomState.Reverted, c.Result, hasResult: true, saved);
        }
    }

    // ---------------- GAME_OVER ----------------

    private EngineState GameOver()
    {
        if (_failures.Count > 0) FlowEngine.ThrowFailures(_failures);
        if (_anyCancelled || AnyLeftover()) return EngineState.Suspended;
        foreach (var node in _c.AtomNodes)
            if (_s.States[node] is not (AtomState.Success or AtomState.Ignore))
                return EngineState.Reverted;
        return EngineState.Success;
    }

    /// <summary>Whether any atom is still ready to execute or revert (deciders not applied): the run stopped early.</summary>
    private bool AnyLeftover()
    {
        foreach (var node in _c.AtomNodes)
            if (IsReadyForExecute(node) || IsReadyForRevert(node)) return true;
        return false;
    }

    // ---------------- failure resolution (TaskFlow's Completer) ----------------

    private enum Strategy { RevertAll, Revert, RevertAndRetry }

    private readonly record struct Resolver(Strategy Strategy, int Node);

    /// <summary>No retry controller anywhere above the failed atom: revert everything.</summary>
    private static readonly Resolver Undefined = new(Strategy.RevertAll, -1);

    private void ProcessAtomFailure(int node, Failure failure)
    {
        var resolver = DetermineResolution(node, failure);
        if (resolver.Strategy == Strategy.RevertAll)
        {
            foreach (var n in _c.AtomNodes) _s.SetIntention(n, AtomIntention.Revert);
            return;
        }
        _s.SetIntention(resolver.Node, resolver.Strategy == Strategy.RevertAndRetry ? AtomIntention.Retry : AtomIntention.Revert);
        foreach (var n in ForwardAtoms(resolver.Node)) _s.SetIntention(n, AtomIntention.Revert);
    }

    private Resolver DetermineResolution(int node, Failure failure)
    {
        int retryNode = _c.RetryOf[node];
        if (retryNode < 0) return Undefined;
        var retry = (RetryController)_c.Atoms[retryNode]!;
        var decision = OnFailure(retryNode, retry, node, failure);
        switch (decision)
        {
            case RetryDecision.Retry:
                return new Resolver(Strategy.RevertAndRetry, retryNode);
            case RetryDecision.Revert:
            {
                var parent = DetermineResolution(retryNode, failure);
                if (parent != Undefined && parent.Strategy != Strategy.Revert) return parent;
                return new Resolver(Strategy.Revert, retryNode);
            }
            case RetryDecision.RevertAll:
                return new Resolver(Strategy.RevertAll, retryNode); // a real answer: it beats a REVERT below it
            default:
                throw new InvalidStateException($"Retry '{retry.Name}' returned unknown decision {decision}.");
        }
    }

    private RetryDecision OnFailure(int retryNode, RetryController retry, int failedNode, Failure failure)
    {
        var history = _s.Histories[retryNode]!;
        if (history.Count == 0)
            throw new InvalidStateException($"Retry '{retry.Name}' has no attempt to record the failure of '{_c.Atoms[failedNode]!.Name}' in.");
        var last = history[^1];
        var failedName = _c.Atoms[failedNode]!.Name;
        if (!last.Failures.ContainsKey(failedName))
        {
            // Attempts are immutable (a retry controller may keep the history it was given): replace the latest one.
            var failures = new Dictionary<string, Failure>(last.Failures, StringComparer.Ordinal) { [failedName] = failure };
            history.ReplaceLast(last with { Failures = failures });
            _journal?.MarkDirty(retryNode);
        }
        var args = _s.FetchArguments(retryNode, revert: false);
        return retry.OnFailure(AtomActions.HistoryOf(_s, retryNode), args);
    }

    private void RetrySubflow(int retryNode)
    {
        _s.SetIntention(retryNode, AtomIntention.Execute);
        foreach (var n in ForwardAtoms(retryNode))
        {
            AtomActions.ChangeState(_engine, _s, n, AtomState.Pending);
            _s.SetIntention(n, AtomIntention.Execute);
        }
    }

    /// <summary>Every atom reachable forward from <paramref name="node"/> (TaskFlow's depth-first successor walk), each once.</summary>
    private List<int> ForwardAtoms(int node, bool onlyThroughTasks = false)
    {
        // Failure and decider paths only: allocating the result here keeps the walk independent of the scratch walks.
        var result = new List<int>();
        var seen = new HashSet<int>();
        var stack = new Stack<int>(_c.Successors[node]);
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!seen.Add(n)) continue;
            if (_c.IsAtom(n)) result.Add(n);
            if (onlyThroughTasks && _c.Kinds[n] != NodeKind.Task) continue;
            foreach (var s in _c.Successors[n]) stack.Push(s);
        }
        return result;
    }

    // ---------------- selection (TaskFlow's Selector) ----------------

    private void AddNextAtoms(int node)
    {
        var state = _s.States[node];
        var intention = _s.Intentions[node];
        switch (state)
        {
            case AtomState.Success when intention == AtomIntention.Revert:
                AddNext(node);
                break;
            case AtomState.Success when intention == AtomIntention.Execute:
                Browse<ForExecute>(node);
                break;
            case AtomState.Reverted:
                Browse<ForRevert>(node);
                break;
            case AtomState.Failure:
                foreach (var n in _c.AtomNodes) if (IsReadyForRevert(n)) AddNext(n);
                break;
        }
    }

    /// <summary>
    /// Adds to the next batch the atoms that <paramref name="from"/> finishing may have made ready: for execution its
    /// successors, for reverting its predecessors. The walk looks through flow markers and through atoms that are settled
    /// in a way that lets readiness pass (ignored atoms; for reverts also never-run and reverted tasks), never past a retry.
    /// </summary>
    /// <remarks>
    /// The direction is a type argument, not a flag or a delegate: the JIT compiles each direction's walk and readiness
    /// check as code of its own, specialized and profiled on its own (no delegate call per neighbour).
    /// </remarks>
    private void Browse<TDirection>(int from) where TDirection : struct, IDirection
    {
        var edges = TDirection.Edges(_c);
        var walk = _browseWalk;
        walk.Start();
        foreach (var e in edges[from]) walk.Queue.Enqueue(e);
        while (walk.Queue.Count > 0)
        {
            int n = walk.Queue.Dequeue();
            if (!walk.Visit(n)) continue;
            bool lookThrough;
            if (!_c.IsAtom(n)) lookThrough = true;
            else if (typeof(TDirection) == typeof(ForExecute))
            {
                if (IsReadyForExecute(n))
                {
                    bool runs = CheckDeciders(n);
                    if (runs) AddNext(n);
                    lookThrough = !runs; // ignored: what follows may be ready now
                }
                else lookThrough = _s.States[n] == AtomState.Ignore;
            }
            else
            {
                if (IsReadyForRevert(n)) { AddNext(n); lookThrough = false; }
                else lookThrough = _c.Kinds[n] == NodeKind.Task && _s.States[n] is AtomState.Pending or AtomState.Reverted or AtomState.Ignore;
            }
            if (lookThrough) foreach (var e in edges[n]) walk.Queue.Enqueue(e);
        }
    }

    private bool IsReadyForExecute(int node)
    {
        var state = _s.States[node];
        bool canRun = state == AtomState.Pending || (state == AtomState.Retrying && _c.Kinds[node] == NodeKind.Retry);
        if (!canRun || _s.Intentions[node] != AtomIntention.Execute) return false;
        // Every predecessor must be done (SUCCESS/IGNORE with intention EXECUTE/IGNORE). An atom that ran had its own
        // predecessors done, so the walk stops there; it looks through flow markers and ignored atoms.
        return NeighboursAllow<ForExecute>(node);
    }

    private bool IsReadyForRevert(int node)
    {
        if (!(_s.States[node] is AtomState.Success or AtomState.Failure)) return false;
        if (!(_s.Intentions[node] is AtomIntention.Revert or AtomIntention.Retry)) return false;
        // Every successor must be PENDING, REVERTED or IGNORE; ignored ones are looked through.
        return NeighboursAllow<ForRevert>(node);
    }

    /// <summary>Which way readiness looks (predecessors to execute, successors to revert) and what it accepts there.</summary>
    private interface IDirection
    {
        /// <summary>The edges readiness checks follow.</summary>
        static abstract int[][] ReadinessEdges(CompiledFlow c);

        /// <summary>The edges browsing follows from an atom that finished.</summary>
        static abstract int[][] Edges(CompiledFlow c);

        static abstract Verdict Judge(AtomState state, AtomIntention intention);
    }

    private readonly struct ForExecute : IDirection
    {
        public static int[][] ReadinessEdges(CompiledFlow c) => c.Predecessors;

        public static int[][] Edges(CompiledFlow c) => c.Successors;

        public static Verdict Judge(AtomState s, AtomIntention i) =>
            !(s is AtomState.Success or AtomState.Ignore) || !(i is AtomIntention.Execute or AtomIntention.Ignore) ? Verdict.Block
            : s == AtomState.Success ? Verdict.Settled
            : Verdict.LookThrough;
    }

    private readonly struct ForRevert : IDirection
    {
        public static int[][] ReadinessEdges(CompiledFlow c) => c.Successors;

        public static int[][] Edges(CompiledFlow c) => c.Predecessors;

        public static Verdict Judge(AtomState s, AtomIntention _) =>
            s is AtomState.Pending or AtomState.Reverted ? Verdict.Settled
            : s == AtomState.Ignore ? Verdict.LookThrough
            : Verdict.Block;
    }

    private bool NeighboursAllow<TDirection>(int node) where TDirection : struct, IDirection
    {
        var edges = TDirection.ReadinessEdges(_c);
        var first = edges[node];
        // Fast path, a chain: one neighbour that is an atom and settles it.
        if (first.Length == 1 && _c.IsAtom(first[0]))
        {
            var v = TDirection.Judge(_s.States[first[0]], _s.Intentions[first[0]]);
            if (v != Verdict.LookThrough) return v == Verdict.Settled;
        }
        var walk = _readyWalk;
        walk.Start();
        foreach (var e in first) walk.Stack.Push(e);
        while (walk.Stack.Count > 0)
        {
            int n = walk.Stack.Pop();
            if (!walk.Visit(n)) continue;
            if (_c.IsAtom(n))
            {
                var v = TDirection.Judge(_s.States[n], _s.Intentions[n]);
                if (v == Verdict.Block) return false;
                if (v == Verdict.Settled) continue;
            }
            foreach (var e in edges[n]) walk.Stack.Push(e);
        }
        return true;
    }

    // ---------------- deciders (TaskFlow's IgnoreDecider) ----------------

    private bool CheckDeciders(int node)
    {
        if (_c.DeciderEdges.Count == 0) return true;
        _edgeDeciders ??= new List<(int, FlowLink)>?[_c.NodeCount];
        var edges = _edgeDeciders[node] ??= EdgeDeciders(node);
        if (edges.Count == 0) return true;
        var history = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (from, _) in edges)
            if (_c.IsAtom(from) && _s.States[from] != AtomState.Ignore && _s.TryGetExecuteResult(from, out var v, out _))
                history[_c.Atoms[from]!.Name] = v;
        DeciderDepth? widest = null;
        foreach (var (from, link) in edges)
        {
            if (_c.IsAtom(from) && !history.ContainsKey(_c.Atoms[from]!.Name)) continue;
            if (!link.Decider!(history))
                widest = widest is null || (int)link.Depth < (int)widest ? link.Depth : widest;
        }
        if (widest is null) return true;
        IEnumerable<int> affected = widest switch
        {
            DeciderDepth.All => [node, .. ForwardAtoms(node)],
            // TaskFlow's walk with through_flows=False, through_retries=False: continues only through tasks.
            DeciderDepth.Flow => [node, .. ForwardAtoms(node, onlyThroughTasks: true)],
            DeciderDepth.Neighbors => [node, .. _c.Successors[node].Where(n => _c.Kinds[n] == NodeKind.Task)],
            _ => [node],
        };
        foreach (var n in affected)
        {
            AtomActions.ChangeState(_engine, _s, n, AtomState.Ignore);
            _s.SetIntention(n, AtomIntention.Ignore);
        }
        return false;
    }

    /// <summary>The decider links into <paramref name="node"/>, looking through the entries of flows it starts.</summary>
    private List<(int From, FlowLink Link)> EdgeDeciders(int node)
    {
        var result = new List<(int, FlowLink)>();
        var queue = new Queue<(int U, int V)>();
        foreach (var p in _c.Predecessors[node]) queue.Enqueue((p, node));
        var visited = new HashSet<int>();
        while (queue.Count > 0)
        {
            var (u, v) = queue.Dequeue();
            if (_c.DeciderEdges.TryGetValue((u, v), out var link)) result.Add((u, link));
            if (_c.Kinds[u] == NodeKind.FlowEntry && visited.Add(u))
                foreach (var uu in _c.Predecessors[u]) queue.Enqueue((uu, u));
        }
        return result;
    }
}
