using TaskFlow.Atoms;
using TaskFlow.Engines.Compilation;
using TaskFlow.Failures;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;
using TaskFlow.Storage;

namespace TaskFlow.Engines.Scheduling;

/// <summary>
/// The one place atom states change (TaskFlow's TaskAction/RetryAction.change_state plus the detail's put rules):
/// it updates storage, records failures, and publishes the notification.
/// </summary>
internal static class AtomActions
{
    public static bool SavesResult(AtomState s) => s is AtomState.Success or AtomState.Failure or AtomState.Reverted or AtomState.RevertFailure;

    /// <summary>
    /// Moves an atom to <paramref name="state"/>. In a persisted run <paramref name="saved"/> is the result as JSON
    /// (computed by the caller, so a value that cannot be saved never advances the state), the atom is marked for the
    /// next save and its notification waits for that save.
    /// </summary>
    public static void ChangeState(FlowEngine engine, FlowStorage s, int node, AtomState state, object? result = null, bool hasResult = false, System.Text.Json.JsonElement? saved = null)
    {
        var old = s.States[node];
        bool isRetry = s.Histories[node] is not null;
        // Resets (to PENDING, or to IGNORE by a decider) write states directly, as TaskFlow's do; every other move
        // must be in the transition table (staying in a state is allowed: a resumed atom is re-run in place).
        if (state is not (AtomState.Pending or AtomState.Ignore) && state != old)
        {
            var name = s.Compiled.Atoms[node]!.Name;
            if (isRetry) Transitions.EnsureRetryTransition(name, old, state);
            else Transitions.EnsureTaskTransition(name, old, state);
        }
        var journal = s.Journal;
        if (SavesResult(state))
        {
            Put(s, node, state, result, isRetry, saved);
            journal?.OnPut(node, state, saved);
            if (state is AtomState.Failure or AtomState.RevertFailure && result is Failure f)
            {
                var intention = s.Intentions[node];
                if (intention == AtomIntention.Execute) s.ExecuteFailureCache.Set(node, f);
                else if (intention == AtomIntention.Revert) s.RevertFailureCache.Set(node, f);
            }
        }
        else
        {
            if (state == old) return;
            s.States[node] = state;
            journal?.MarkDirty(node);
        }
        // Task progress as TaskFlow keeps it: 0 when a call starts or the task is reset, 1 when a call succeeds.
        if (!isRetry)
        {
            if (state is AtomState.Running or AtomState.Reverting or AtomState.Pending) s.Progress[node] = 0.0;
            else if (state is AtomState.Success or AtomState.Reverted) s.Progress[node] = 1.0;
        }
        var hub = engine.Notifications;
        if (hub.HasSubscribers<AtomStateChanged>())
        {
            var atom = s.Compiled.Atoms[node]!;
            var e = new AtomStateChanged(atom.Name, isRetry ? AtomKind.Retry : AtomKind.Task, state, old, hasResult ? result : null);
            if (journal is null) hub.Publish(e);
            else journal.Defer(e);
        }
    }

    private static void Put(FlowStorage s, int node, AtomState state, object? result, bool isRetry, System.Text.Json.JsonElement? saved)
    {
        s.States[node] = state;
        switch (state)
        {
            case AtomState.RevertFailure:
                s.RevertFailureOf[node] = result as Failure;
                if (!isRetry) s.Results[node] = null;
                s.RevertResults[node] = null;
                break;
            case AtomState.Failure:
                s.FailureOf[node] = result as Failure;
                if (!isRetry) s.Results[node] = null;
                s.RevertResults[node] = null;
                s.RevertFailureOf[node] = null;
                break;
            case AtomState.Success:
                s.FailureOf[node] = null;
                s.RevertFailureOf[node] = null;
                s.RevertResults[node] = null;
                if (isRetry) s.Histories[node]!.Add(new RetryAttempt(result, FlowTask.EmptyFailures) { SavedValue = saved });
                else s.Results[node] = result;
                break;
            case AtomState.Reverted:
                s.RevertResults[node] = result;
                s.RevertFailureOf[node] = null;
                if (isRetry) s.Histories[node]!.Clear();
                break;
        }
    }

    public static RetryHistory HistoryOf(FlowStorage s, int node) =>
        s.Histories[node]!.Snapshot(s.FailureOf[node]);
}
