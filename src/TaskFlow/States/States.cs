namespace TaskFlow.States;

/// <summary>The state of a whole flow run (TaskFlow's flow states).</summary>
public enum FlowState
{
    /// <summary>Not started yet (or reset).</summary>
    Pending,
    /// <summary>The engine is executing or reverting atoms.</summary>
    Running,
    /// <summary>Every atom finished with SUCCESS or IGNORE.</summary>
    Success,
    /// <summary>A revert failed, or a failure could not be resolved; the run raised.</summary>
    Failure,
    /// <summary>A failure was handled by reverting; the run raised the original failure.</summary>
    Reverted,
    /// <summary>Suspension was requested; running atoms are finishing.</summary>
    Suspending,
    /// <summary>The run stopped early with work left; a later run continues it.</summary>
    Suspended,
    /// <summary>The engine is resuming a previously interrupted run.</summary>
    Resuming,
}

/// <summary>The state of one atom (task or retry).</summary>
public enum AtomState
{
    /// <summary>Not run yet.</summary>
    Pending,
    /// <summary>Executing.</summary>
    Running,
    /// <summary>Executed successfully.</summary>
    Success,
    /// <summary>Execution failed.</summary>
    Failure,
    /// <summary>Reverting.</summary>
    Reverting,
    /// <summary>Reverted.</summary>
    Reverted,
    /// <summary>The revert failed (terminal).</summary>
    RevertFailure,
    /// <summary>Skipped by a graph decider; counts as success, never reverted.</summary>
    Ignore,
    /// <summary>A retry controller is about to run its subflow again.</summary>
    Retrying,
}

/// <summary>What the engine intends to do with an atom next.</summary>
public enum AtomIntention
{
    /// <summary>Execute it.</summary>
    Execute,
    /// <summary>Revert it.</summary>
    Revert,
    /// <summary>Retry its subflow (retry controllers only).</summary>
    Retry,
    /// <summary>Ignore it (decided against by a graph link's decider).</summary>
    Ignore,
}

/// <summary>The states an engine's run loop goes through, yielded by <c>RunIterAsync</c>.</summary>
public enum EngineState
{
    /// <summary>Before the loop starts.</summary>
    Undefined,
    /// <summary>Picking up what a previous run left.</summary>
    Resuming,
    /// <summary>Starting ready atoms.</summary>
    Scheduling,
    /// <summary>Waiting for started atoms to finish.</summary>
    Waiting,
    /// <summary>Processing finished atoms and deciding what comes next.</summary>
    Analyzing,
    /// <summary>Nothing more can be scheduled.</summary>
    GameOver,
    /// <summary>The flow succeeded.</summary>
    Success,
    /// <summary>The flow was reverted.</summary>
    Reverted,
    /// <summary>The flow was suspended.</summary>
    Suspended,
    /// <summary>The flow failed.</summary>
    Failure,
}

/// <summary>Text forms of the states exactly as TaskFlow spells them (used by persistence, logs and diagrams).</summary>
public static class StateNames
{
    /// <summary>TaskFlow's name for a flow state, e.g. <c>REVERTED</c>.</summary>
    public static string ToTaskFlowName(this FlowState state) => state switch
    {
        FlowState.Pending => "PENDING",
        FlowState.Running => "RUNNING",
        FlowState.Success => "SUCCESS",
        FlowState.Failure => "FAILURE",
        FlowState.Reverted => "REVERTED",
        FlowState.Suspending => "SUSPENDING",
        FlowState.Suspended => "SUSPENDED",
        FlowState.Resuming => "RESUMING",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>TaskFlow's name for an atom state, e.g. <c>REVERT_FAILURE</c>.</summary>
    public static string ToTaskFlowName(this AtomState state) => state switch
    {
        AtomState.Pending => "PENDING",
        AtomState.Running => "RUNNING",
        AtomState.Success => "SUCCESS",
        AtomState.Failure => "FAILURE",
        AtomState.Reverting => "REVERTING",
        AtomState.Reverted => "REVERTED",
        AtomState.RevertFailure => "REVERT_FAILURE",
        AtomState.Ignore => "IGNORE",
        AtomState.Retrying => "RETRYING",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>TaskFlow's name for an intention, e.g. <c>EXECUTE</c>.</summary>
    public static string ToTaskFlowName(this AtomIntention intention) => intention switch
    {
        AtomIntention.Execute => "EXECUTE",
        AtomIntention.Revert => "REVERT",
        AtomIntention.Retry => "RETRY",
        AtomIntention.Ignore => "IGNORE",
        _ => throw new ArgumentOutOfRangeException(nameof(intention), intention, null),
    };

    /// <summary>Parses TaskFlow's name of an atom state.</summary>
    public static AtomState ParseAtomState(string name) => name switch
    {
        "PENDING" => AtomState.Pending,
        "RUNNING" => AtomState.Running,
        "SUCCESS" => AtomState.Success,
        "FAILURE" => AtomState.Failure,
        "REVERTING" => AtomState.Reverting,
        "REVERTED" => AtomState.Reverted,
        "REVERT_FAILURE" => AtomState.RevertFailure,
        "IGNORE" => AtomState.Ignore,
        "RETRYING" => AtomState.Retrying,
        _ => throw new FormatException($"'{name}' is not an atom state; expected one of PENDING, RUNNING, SUCCESS, FAILURE, REVERTING, REVERTED, REVERT_FAILURE, IGNORE, RETRYING."),
    };

    /// <summary>Parses TaskFlow's name of a flow state.</summary>
    public static FlowState ParseFlowState(string name) => name switch
    {
        "PENDING" => FlowState.Pending,
        "RUNNING" => FlowState.Running,
        "SUCCESS" => FlowState.Success,
        "FAILURE" => FlowState.Failure,
        "REVERTED" => FlowState.Reverted,
        "SUSPENDING" => FlowState.Suspending,
        "SUSPENDED" => FlowState.Suspended,
        "RESUMING" => FlowState.Resuming,
        _ => throw new FormatException($"'{name}' is not a flow state; expected one of PENDING, RUNNING, SUCCESS, FAILURE, REVERTED, SUSPENDING, SUSPENDED, RESUMING."),
    };

    /// <summary>Parses TaskFlow's name of an intention.</summary>
    public static AtomIntention ParseIntention(string name) => name switch
    {
        "EXECUTE" => AtomIntention.Execute,
        "REVERT" => AtomIntention.Revert,
        "RETRY" => AtomIntention.Retry,
        "IGNORE" => AtomIntention.Ignore,
        _ => throw new FormatException($"'{name}' is not an intention; expected one of EXECUTE, REVERT, RETRY, IGNORE."),
    };
}
