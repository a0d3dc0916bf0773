using TaskFlow.Failures;

namespace TaskFlow.Atoms;

/// <summary>What the engine gives a running task besides its arguments: its name, cancellation and progress reporting.</summary>
public sealed class TaskContext
{
    private readonly int _node;
    private readonly Action<int, double, object?>? _progress;

    // One context per atom and run: the engine hands the same instance to every call of that atom.
    internal TaskContext(string atomName, int node, CancellationToken cancellationToken, Action<int, double, object?>? progress)
    {
        AtomName = atomName;
        CancellationToken = cancellationToken;
        _node = node;
        _progress = progress;
    }

    /// <summary>
    /// A context for running a task outside an engine's loop: in a worker process that executes it for a remote
    /// engine, or in a test. <paramref name="progress"/> receives every clamped progress report.
    /// </summary>
    public static TaskContext Create(string atomName, CancellationToken cancellationToken = default, Action<double, object?>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(atomName);
        return new TaskContext(atomName, 0, cancellationToken, progress is null ? null : (_, p, d) => progress(p, d));
    }

    /// <summary>The running atom's name.</summary>
    public string AtomName { get; }

    /// <summary>Cancelled when the run is cancelled.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Reports progress between 0 and 1 (clamped), with optional details, to the engine's notifications.</summary>
    public void ReportProgress(double progress, object? details = null)
    {
        if (double.IsNaN(progress)) throw new ArgumentOutOfRangeException(nameof(progress), "Progress must be a number between 0 and 1.");
        _progress?.Invoke(_node, Math.Clamp(progress, 0.0, 1.0), details);
    }
}

/// <summary>What an atom's execute produced: a value, or the <see cref="Failures.Failure"/> it raised. Given to revert.</summary>
public readonly struct TaskOutcome
{
    private TaskOutcome(object? value, Failure? failure)
    {
        Value = value;
        Failure = failure;
    }

    /// <summary>A successful outcome.</summary>
    public static TaskOutcome FromValue(object? value) => new(value, null);

    /// <summary>A failed outcome.</summary>
    public static TaskOutcome FromFailure(Failure failure)
    {
        ArgumentNullException.ThrowIfNull(failure);
        return new(null, failure);
    }

    /// <summary>The value execute returned (null when it failed).</summary>
    public object? Value { get; }

    /// <summary>The failure execute raised, or null when it succeeded.</summary>
    public Failure? Failure { get; }

    /// <summary>Whether execute failed.</summary>
    public bool IsFailure => Failure is not null;

    /// <summary>The value as <typeparamref name="T"/>.</summary>
    public T GetValue<T>() => ArgumentConverter.Convert<T>(Value, "result", "result");

    /// <inheritdoc />
    public override string ToString() => IsFailure ? Failure!.ToString() : $"{Value}";
}
