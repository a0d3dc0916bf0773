using TaskFlow.Atoms;

namespace TaskFlow.Benchmarks.Cases;

/// <summary>A task that does nothing: what is measured is the engine's own cost per task.</summary>
public sealed class NoOpTask(string name) : FlowTask(name)
{
    public void Execute() { }
}

/// <summary>Adds one to its input (rebound to the previous task's result): the provides/requires chain of B2.</summary>
public sealed class IncrementTask(string name) : FlowTask(name)
{
    public int Execute(int value) => value + 1;
}

/// <summary>Waits asynchronously, never blocking a thread: the I/O-bound fan-out of B3.</summary>
/// <param name="name">The task's name.</param>
/// <param name="delay">How long each execution waits.</param>
/// <param name="exact">Wait with <see cref="ExactDelay"/> (ends on time) instead of <see cref="Task.Delay(TimeSpan, CancellationToken)"/> (ends on the runtime's next timer tick).</param>
public sealed class DelayTask(string name, TimeSpan delay, bool exact = false) : FlowTask(name)
{
    public async Task ExecuteAsync(CancellationToken cancellationToken)
    {
        if (delay <= TimeSpan.Zero) return;
        if (exact) await ExactDelay.WaitAsync(delay, cancellationToken).ConfigureAwait(false);
        else await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>
/// Always fails: the last task of B6, whose failure reverts everything before it. It notes when it failed
/// (<see cref="System.Diagnostics.Stopwatch"/> timestamp), which splits a B6 run into its forward part and the rest:
/// handling the failure, reverting, and rethrowing to the caller.
/// </summary>
public sealed class FailingTask(string name) : FlowTask(name)
{
    public long FailedAt { get; private set; }

    public void Execute()
    {
        FailedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        throw new InvalidOperationException($"Task '{Name}' fails on purpose (benchmark B6).");
    }
}

/// <summary>Fails its first <c>failures</c> executions, then succeeds; counts executions and reverts (B7).</summary>
public sealed class FlakyTask(string name, int failures) : FlowTask(name)
{
    public int Calls { get; private set; }

    public int Reverts { get; private set; }

    public int Execute()
    {
        Calls++;
        if (Calls <= failures) throw new InvalidOperationException($"Task '{Name}' fails on purpose, call {Calls} of {failures}.");
        return Calls;
    }

    public void Revert() => Reverts++;
}
