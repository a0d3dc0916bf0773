using TaskFlow.Failures;

namespace TaskFlow.States;

/// <summary>
/// TaskFlow's transition tables. The engine consults them before every state change;
/// an illegal move throws <see cref="InvalidStateException"/>.
/// </summary>
public static class Transitions
{
    // Bit sets indexed by the source state: bit n set = transition to state n allowed.
    private static readonly int[] TaskTable = BuildAtomTable(isRetry: false);
    private static readonly int[] RetryTable = BuildAtomTable(isRetry: true);

    private static int[] BuildAtomTable(bool isRetry)
    {
        var table = new int[Enum.GetValues<AtomState>().Length];
        void Allow(AtomState from, params AtomState[] to)
        {
            foreach (var t in to) table[(int)from] |= 1 << (int)t;
        }
        Allow(AtomState.Pending, AtomState.Running, AtomState.Ignore);
        Allow(AtomState.Running, AtomState.Success, AtomState.Failure);
        Allow(AtomState.Success, AtomState.Reverting);
        Allow(AtomState.Failure, AtomState.Reverting);
        Allow(AtomState.Reverting, AtomState.Reverted, AtomState.RevertFailure);
        Allow(AtomState.Reverted, AtomState.Pending);
        Allow(AtomState.Ignore, AtomState.Pending);
        if (isRetry)
        {
            Allow(AtomState.Success, AtomState.Retrying);
            Allow(AtomState.Retrying, AtomState.Running);
        }
        return table;
    }

    /// <summary>Whether a task may move from <paramref name="from"/> to <paramref name="to"/>.</summary>
    public static bool IsValidTaskTransition(AtomState from, AtomState to) => (TaskTable[(int)from] & (1 << (int)to)) != 0;

    /// <summary>Whether a retry controller may move from <paramref name="from"/> to <paramref name="to"/>.</summary>
    public static bool IsValidRetryTransition(AtomState from, AtomState to) => (RetryTable[(int)from] & (1 << (int)to)) != 0;

    /// <summary>
    /// Whether a flow may move between the given states. Returns <see langword="null"/> when the move is one
    /// TaskFlow silently ignores (same state, or into SUSPENDING/SUSPENDED/RESUMING from a resting state).
    /// </summary>
    public static bool? CheckFlowTransition(FlowState from, FlowState to)
    {
        if (from == to) return null;
        bool resting = from is FlowState.Pending or FlowState.Failure or FlowState.Success or FlowState.Suspended or FlowState.Reverted;
        if (resting && to is FlowState.Suspending or FlowState.Suspended or FlowState.Resuming) return null;
        return (from, to) switch
        {
            (FlowState.Pending, FlowState.Running) => true,
            (FlowState.Running, FlowState.Success or FlowState.Failure or FlowState.Reverted or FlowState.Suspending or FlowState.Resuming) => true,
            (FlowState.Success, FlowState.Running or FlowState.Pending) => true,
            (FlowState.Failure, FlowState.Running) => true,
            (FlowState.Reverted, FlowState.Pending) => true,
            (FlowState.Suspending, FlowState.Suspended or FlowState.Success or FlowState.Failure or FlowState.Reverted or FlowState.Resuming) => true,
            (FlowState.Suspended, FlowState.Running) => true,
            (FlowState.Resuming, FlowState.Suspended) => true,
            _ => false,
        };
    }

    /// <summary>Throws <see cref="InvalidStateException"/> unless the task transition is legal.</summary>
    public static void EnsureTaskTransition(string atomName, AtomState from, AtomState to)
    {
        if (!IsValidTaskTransition(from, to))
            throw new InvalidStateException($"Task '{atomName}' cannot move from {from.ToTaskFlowName()} to {to.ToTaskFlowName()}.");
    }

    /// <summary>Throws <see cref="InvalidStateException"/> unless the retry transition is legal.</summary>
    public static void EnsureRetryTransition(string atomName, AtomState from, AtomState to)
    {
        if (!IsValidRetryTransition(from, to))
            throw new InvalidStateException($"Retry '{atomName}' cannot move from {from.ToTaskFlowName()} to {to.ToTaskFlowName()}.");
    }
}
