using TaskFlow.Atoms;
using TaskFlow.Failures;

namespace TaskFlow.Engines;

/// <summary>
/// Where an engine runs a task's execute and revert (TaskFlow's executor). The engines call tasks directly in
/// process when <see cref="EngineOptions.Executor"/> is null; an executor sends them elsewhere, for example to
/// worker processes over a message broker. Every state change still happens on the engine: an executor only runs
/// user code and returns its result or throws its failure.
/// </summary>
/// <remarks>
/// Implementations are called concurrently by the parallel engine. They must honour
/// <see cref="TaskContext.CancellationToken"/> (the run was cancelled: throw <see cref="OperationCanceledException"/>
/// and the atom is re-run on resume), may report progress through <see cref="TaskContext.ReportProgress"/>, and
/// turn lost workers or timeouts into exceptions, which become the atom's failure.
/// </remarks>
public abstract class TaskExecutor
{
    /// <summary>Runs <paramref name="task"/>'s execute with the bound arguments and returns its result.</summary>
    public abstract ValueTask<object?> ExecuteAsync(FlowTask task, TaskArguments arguments, TaskContext context);

    /// <summary>Runs <paramref name="task"/>'s revert with the bound arguments, its execute outcome and the flow's failures.</summary>
    public abstract ValueTask<object?> RevertAsync(FlowTask task, TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context);
}
