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
/// per atom), never by rescanning the graph. All state changes happen on the loop; tasks only run user code.
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

    private EngineState _state = EngineState.Undefined;
    private readonly List<int> _nextUp = [];
    private readonly bool[] _inNextUp;
    private readonly List<Completion> _done = [];
    private readonly List<Failure> _failures = [];
    private int _inFlight;
    private bool _anyCancelled;

    private readonly struct Completion(int node, bool isRevert, object? result, Failure? failure, bool cancelled)
    {
        public int Node { get; } = node;
        public bool IsRevert { get; } = isRevert;
        public object? Result { get; } = result;
        public Failure? Failure { get; } = failure;
        public bool Cancelled { get; } = cancelled;
    }

    public EngineLoop(FlowEngine engine, FlowStorage storage, CancellationToken cancellationToken)
    {
        _engine = engine;
        _s = storage;
        _c = storage.Compiled;
        _cancellationToken = cancellationToken;
        _parallel = engine.IsParallel;
        _inNextUp = new bool[_c.NodeCount];
        if (_parallel)
        {
            int max = engine.Options.MaxDegreeOfParallelism;
            if (max > 0) _throttle = new SemaphoreSlim(max, max);
            _completions = Channel.CreateUnbounded<Completion>(new UnboundedChannelOptions { SingleReader = true });
        }
    }

    public async ValueTask<EngineState> NextAsync()
    {
        switch (_state)
        {
            case EngineState.Undefined:
                Resume();
                return _state = EngineState.Resuming;
            case EngineState.Resuming:
            case EngineState.Analyzing when _pendingTransition == EngineState.Scheduling:
                await ScheduleAsync().ConfigureAwait(false);
                return _state = EngineState.Scheduling;
            case EngineState.Scheduling:
            case EngineState.Analyzing when _pendingTransition == EngineState.Waiting:
                await WaitAsync().ConfigureAwait(false);
                return _state = EngineState.Waiting;
            case EngineState.Waiting:
                _pendingTransition = Analyze();
                return _state = EngineState.Analyzing;
            case EngineState.Analyzing:
                return _state = EngineState.GameOver;
            case EngineState.GameOver:
                return _state = GameOver();
            default:
                throw new InvalidStateException($"Engine loop of flow '{_c.Root.Name}' has already finished in {_state}.");
        }
    }

    private EngineState _pendingTransition;

    // ---------------- RESUMING ----------------

    private void Resume()
    {
        var unfinished = new List<int>();
        foreach (var node in _c.AtomNodes)
            if (_s.States[node] == AtomState.Failure)
                ProcessAtomFailure(node, _s.FailureOf[node]!);
        foreach (var node in _c.AtomNodes)
            if (_s.Histories[node] is not null && _s.States[node] == AtomState.Retrying)
                RetrySubflow(node);
        foreach (var node in _c.AtomNodes)
            if (_s.States[node] is AtomState.Running or AtomState.Reverting)
                unfinished.Add(node);
        foreach (var n in unfinished) AddNext(n);
        foreach (var n in BrowseAll(applyDeciders: true)) AddNext(n);
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
        if (_engine.State == FlowState.Running && _nextUp.Count > 0 && !_engine.SuspendRequested)
        {
            var batch = _nextUp.ToArray();
            foreach (var n in batch) _inNextUp[n] = false;
            _nextUp.Clear();
            if (batch.Length > 1) SortByPriority(batch);
            foreach (var node in batch)
            {
                // An atom picked as ready may have been redirected since (a failure resolved in the same batch):
                // never start or revert it then (TaskFlow would revert an atom that never ran; SPEC note N13).
                var state = _s.States[node];
                if (state is not (AtomState.Running or AtomState.Reverting) && !IsReadyForExecute(node) && !IsReadyForRevert(node))
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
    }

    private void SortByPriority(int[] batch)
    {
        bool any = false;
        foreach (var n in batch) if (_c.Atoms[n]!.Priority != 0) { any = true; break; }
        if (!any) return;
        var ordered = batch.Select((n, i) => (n, i)).OrderByDescending(x => _c.Atoms[x.n]!.Priority).ThenBy(x => x.i).Select(x => x.n).ToArray();
        ordered.CopyTo(batch, 0);
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
                    _done.Add(ExecuteRetry(node, retry));
                    break;
                case AtomIntention.Revert:
                    _done.Add(RevertRetry(node, retry));
                    break;
                case AtomIntention.Retry:
                    AtomActions.ChangeState(_engine, _s, node, AtomState.Retrying);
                    RetrySubflow(node);
                    _done.Add(ExecuteRetry(node, retry));
                    break;
                default:
                    throw new InvalidStateException($"Retry '{atom.Name}' cannot be scheduled with intention {intention.ToTaskFlowName()}.");
            }
            return;
        }
        var task = (FlowTask)atom;
        switch (intention)
        {
            case AtomIntention.Execute:
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Running);
                var args = _s.FetchArguments(node, revert: false);
                await RunAsync(node, false, ct => task.ExecuteAsync(args, NewContext(atom, ct))).ConfigureAwait(false);
                break;
            }
            case AtomIntention.Revert:
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Reverting);
                var args = _s.FetchArguments(node, revert: true);
                _s.TryGetExecuteResult(node, out var prior, out _);
                var outcome = prior is Failure pf ? TaskOutcome.FromFailure(pf) : TaskOutcome.FromValue(prior);
                var failures = _s.GetFailures();
                await RunAsync(node, true, ct => task.RevertAsync(args, outcome, failures, NewContext(atom, ct))).ConfigureAwait(false);
                break;
            }
            default:
                throw new InvalidStateException($"Task '{atom.Name}' cannot be scheduled with intention {intention.ToTaskFlowName()}.");
        }
    }

    private TaskContext NewContext(Atom atom, CancellationToken ct) => new(atom.Name, ct, OnProgress);

    private void OnProgress(string atomName, double progress, object? details)
    {
        if (_c.NodeByAtomName.TryGetValue(atomName, out var node)) Volatile.Write(ref _s.Progress[node], progress);
        var hub = _engine.Notifications;
        if (hub.HasSubscribers<TaskProgressChanged>()) hub.Publish(new TaskProgressChanged(atomName, progress, details));
    }

    private async ValueTask RunAsync(int node, bool isRevert, Func<CancellationToken, ValueTask<object?>> work)
    {
        if (!_parallel)
        {
            _done.Add(await InvokeAsync(node, isRevert, work).ConfigureAwait(false));
            return;
        }
        _inFlight++;
        var writer = _completions!.Writer;
        var throttle = _throttle;
        _ = Task.Run(async () =>
        {
            if (throttle is not null) await throttle.WaitAsync().ConfigureAwait(false);
            Completion c;
            try
            {
                c = await InvokeAsync(node, isRevert, work).ConfigureAwait(false);
            }
            finally
            {
                throttle?.Release();
            }
            writer.TryWrite(c);
        });
    }

    private async ValueTask<Completion> InvokeAsync(int node, bool isRevert, Func<CancellationToken, ValueTask<object?>> work)
    {
        try
        {
            var result = await work(_cancellationToken).ConfigureAwait(false);
            return new Completion(node, isRevert, result, null, false);
        }
        catch (OperationCanceledException) when (_cancellationToken.IsCancellationRequested)
        {
            // Cancelled by the run's token: the atom is left RUNNING/REVERTING, as after a crash, and runs again on resume.
            return new Completion(node, isRevert, null, null, true);
        }
        catch (Exception e)
        {
            return new Completion(node, isRevert, null, Failure.FromException(e), false);
        }
    }

    private Completion ExecuteRetry(int node, RetryController retry)
    {
        AtomActions.ChangeState(_engine, _s, node, AtomState.Running);
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

    private Completion RevertRetry(int node, RetryController retry)
    {
        AtomActions.ChangeState(_engine, _s, node, AtomState.Reverting);
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
        var reader = _completions!.Reader;
        var first = await reader.ReadAsync().ConfigureAwait(false);
        _done.Add(first);
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
        var completions = _done.ToArray();
        _done.Clear();
        foreach (var c in completions)
        {
            bool cancelled = c.Cancelled;
            if (cancelled) _anyCancelled = true;
            else
            {
                try
                {
                    Complete(c);
                }
                catch (Exception e)
                {
                    _failures.Add(Failure.FromException(e));
                    continue;
                }
            }
            if (_failures.Count == 0 && !cancelled)
            {
                try
                {
                    foreach (var n in NextAtoms(c.Node)) AddNext(n);
                }
                catch (Exception e)
                {
                    _failures.Add(Failure.FromException(e));
                }
            }
        }
        if (_engine.State == FlowState.Running && !_engine.SuspendRequested && _nextUp.Count > 0 && _failures.Count == 0)
            return EngineState.Scheduling;
        if (_inFlight > 0) return EngineState.Waiting;
        return EngineState.GameOver;
    }

    private void Complete(Completion c)
    {
        int node = c.Node;
        bool isRetry = _s.Histories[node] is not null;
        if (!c.IsRevert)
        {
            if (c.Failure is { } f)
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Failure, f, hasResult: true);
                ProcessAtomFailure(node, f); // execute failures are resolved, never retained
            }
            else
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Success, c.Result, hasResult: true);
                if (!isRetry) _s.Progress[node] = 1.0;
            }
        }
        else
        {
            if (c.Failure is { } f)
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.RevertFailure, f, hasResult: true);
                _failures.Add(f); // revert failures are retained: nothing more is scheduled
            }
            else
            {
                AtomActions.ChangeState(_engine, _s, node, AtomState.Reverted, c.Result, hasResult: true);
                if (!isRetry) _s.Progress[node] = 1.0;
            }
        }
    }

    // ---------------- GAME_OVER ----------------

    private EngineState GameOver()
    {
        if (_failures.Count > 0)
        {
            FlowEngine.ThrowFailures(_failures);
        }
        if (_anyCancelled || AnyLeftover()) return EngineState.Suspended;
        foreach (var node in _c.AtomNodes)
            if (_s.States[node] is not (AtomState.Success or AtomState.Ignore))
                return EngineState.Reverted;
        return EngineState.Success;
    }

    private bool AnyLeftover()
    {
        foreach (var _ in BrowseAll(applyDeciders: false)) return true;
        return false;
    }

    // ---------------- failure resolution (TaskFlow's Completer) ----------------

    private enum Strategy { RevertAll, Revert, RevertAndRetry }

    private readonly record struct Resolver(Strategy Strategy, int Node);

    private static readonly Resolver Undefined = new(Strategy.RevertAll, -1);

    private void ProcessAtomFailure(int node, Failure failure)
    {
        var resolver = DetermineResolution(node, failure);
        switch (resolver.Strategy)
        {
            case Strategy.RevertAll:
                foreach (var n in _c.AtomNodes) _s.Intentions[n] = AtomIntention.Revert;
                break;
            case Strategy.Revert:
                _s.Intentions[resolver.Node] = AtomIntention.Revert;
                foreach (var n in ForwardAtoms(resolver.Node)) _s.Intentions[n] = AtomIntention.Revert;
                break;
            case Strategy.RevertAndRetry:
                _s.Intentions[resolver.Node] = AtomIntention.Retry;
                foreach (var n in ForwardAtoms(resolver.Node)) _s.Intentions[n] = AtomIntention.Revert;
                break;
        }
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
        var failures = (Dictionary<string, Failure>)last.Failures;
        failures.TryAdd(_c.Atoms[failedNode]!.Name, failure);
        var args = _s.FetchArguments(retryNode, revert: false);
        return retry.OnFailure(AtomActions.HistoryOf(_s, retryNode), args);
    }

    private void RetrySubflow(int retryNode)
    {
        _s.Intentions[retryNode] = AtomIntention.Execute;
        foreach (var n in ForwardAtoms(retryNode))
        {
            AtomActions.ChangeState(_engine, _s, n, AtomState.Pending);
            _s.Intentions[n] = AtomIntention.Execute;
        }
    }

    /// <summary>Every atom reachable forward from <paramref name="node"/> (TaskFlow's depth-first successor walk), each once.</summary>
    private List<int> ForwardAtoms(int node)
    {
        var result = new List<int>();
        var seen = new HashSet<int>();
        var stack = new Stack<int>();
        foreach (var s in _c.Successors[node]) stack.Push(s);
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!seen.Add(n)) continue;
            if (_c.IsAtom(n)) result.Add(n);
            var succ = _c.Successors[n];
            for (int i = 0; i < succ.Length; i++) stack.Push(succ[i]);
        }
        return result;
    }

    // ---------------- selection (TaskFlow's Selector) ----------------

    private IEnumerable<int> NextAtoms(int node)
    {
        var state = _s.States[node];
        var intention = _s.Intentions[node];
        switch (state)
        {
            case AtomState.Success when intention == AtomIntention.Revert:
                return [node];
            case AtomState.Success when intention == AtomIntention.Execute:
                return BrowseForExecute(node);
            case AtomState.Reverted:
                return BrowseForRevert(node);
            case AtomState.Failure:
                return BrowseAllForRevert();
            default:
                return [];
        }
    }

    private List<int> BrowseAll(bool applyDeciders)
    {
        var result = new List<int>();
        foreach (var n in _c.AtomNodes)
            if (IsReadyForExecute(n) && (!applyDeciders || CheckDeciders(n))) result.Add(n);
        foreach (var n in _c.AtomNodes)
            if (IsReadyForRevert(n) && !result.Contains(n)) result.Add(n);
        return result;
    }

    private List<int> BrowseAllForRevert()
    {
        var result = new List<int>();
        foreach (var n in _c.AtomNodes) if (IsReadyForRevert(n)) result.Add(n);
        return result;
    }

    private List<int> BrowseForExecute(int from)
    {
        var result = new List<int>();
        var seen = new HashSet<int>();
        var queue = new Queue<int>();
        foreach (var s in _c.Successors[from]) queue.Enqueue(s);
        while (queue.Count > 0)
        {
            int n = queue.Dequeue();
            if (!seen.Add(n)) continue;
            bool descend;
            if (!_c.IsAtom(n)) descend = true;
            else if (IsReadyForExecute(n))
            {
                if (CheckDeciders(n)) { result.Add(n); descend = false; }
                else descend = true; // ignored: what follows may be ready now
            }
            else descend = _s.States[n] == AtomState.Ignore;
            if (descend) foreach (var s in _c.Successors[n]) queue.Enqueue(s);
        }
        return result;
    }

    private List<int> BrowseForRevert(int from)
    {
        var result = new List<int>();
        var seen = new HashSet<int>();
        var queue = new Queue<int>();
        foreach (var p in _c.Predecessors[from]) queue.Enqueue(p);
        while (queue.Count > 0)
        {
            int n = queue.Dequeue();
            if (!seen.Add(n)) continue;
            bool descend;
            if (!_c.IsAtom(n)) descend = true;
            else if (IsReadyForRevert(n)) { result.Add(n); descend = false; }
            else descend = _c.Kinds[n] == NodeKind.Task && _s.States[n] is AtomState.Pending or AtomState.Reverted or AtomState.Ignore;
            if (descend) foreach (var p in _c.Predecessors[n]) queue.Enqueue(p);
        }
        return result;
    }

    private bool IsReadyForExecute(int node)
    {
        var state = _s.States[node];
        bool canRun = state == AtomState.Pending || (state == AtomState.Retrying && _c.Kinds[node] == NodeKind.Retry);
        if (!canRun || _s.Intentions[node] != AtomIntention.Execute) return false;
        // Every predecessor must be done (SUCCESS/IGNORE with intention EXECUTE/IGNORE); look through flow markers and
        // ignored atoms, and trust that an atom which ran had its own predecessors done.
        var preds = _c.Predecessors[node];
        if (preds.Length == 1 && _c.IsAtom(preds[0]))
        {
            int p = preds[0];
            if (_s.States[p] == AtomState.Success && _s.Intentions[p] == AtomIntention.Execute) return true;
        }
        var stack = new Stack<int>(preds);
        var seen = new HashSet<int>();
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!seen.Add(n)) continue;
            if (_c.IsAtom(n))
            {
                var s = _s.States[n];
                var i = _s.Intentions[n];
                if (!(s is AtomState.Success or AtomState.Ignore) || !(i is AtomIntention.Execute or AtomIntention.Ignore)) return false;
                if (s == AtomState.Success) continue;
            }
            foreach (var p in _c.Predecessors[n]) stack.Push(p);
        }
        return true;
    }

    private bool IsReadyForRevert(int node)
    {
        var state = _s.States[node];
        if (!(state is AtomState.Success or AtomState.Failure)) return false;
        var intention = _s.Intentions[node];
        if (!(intention is AtomIntention.Revert or AtomIntention.Retry)) return false;
        var stack = new Stack<int>(_c.Successors[node]);
        var seen = new HashSet<int>();
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!seen.Add(n)) continue;
            if (_c.IsAtom(n))
            {
                var s = _s.States[n];
                if (!(s is AtomState.Pending or AtomState.Reverted or AtomState.Ignore)) return false;
                if (s != AtomState.Ignore) continue;
            }
            foreach (var x in _c.Successors[n]) stack.Push(x);
        }
        return true;
    }

    // ---------------- deciders (TaskFlow's IgnoreDecider) ----------------

    private bool CheckDeciders(int node)
    {
        if (_c.DeciderEdges.Count == 0) return true;
        var edges = EdgeDeciders(node);
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
            DeciderDepth.Flow => [node, .. SuccessorTasksInSameFlow(node)],
            DeciderDepth.Neighbors => [node, .. _c.Successors[node].Where(n => _c.Kinds[n] == NodeKind.Task)],
            _ => [node],
        };
        foreach (var n in affected)
        {
            AtomActions.ChangeState(_engine, _s, n, AtomState.Ignore);
            _s.Intentions[n] = AtomIntention.Ignore;
        }
        return false;
    }

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

    private List<int> SuccessorTasksInSameFlow(int node)
    {
        // TaskFlow's depth-first walk with through_flows=False, through_retries=False: yields non-marker successors,
        // and continues only through tasks.
        var result = new List<int>();
        var stack = new Stack<int>(_c.Successors[node]);
        var seen = new HashSet<int>();
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!seen.Add(n)) continue;
            if (_c.IsAtom(n)) result.Add(n);
            if (_c.Kinds[n] == NodeKind.Task) foreach (var s in _c.Successors[n]) stack.Push(s);
        }
        return result;
    }
}
