using TaskFlow.Failures;

namespace TaskFlow.Atoms;

/// <summary>What the engine gives a running task besides its arguments: its name, cancellation and progress reporting.</summary>
public sealed class TaskContext
{
    /// <summary>
    /// Reports that move progress by less than this from the last delivered one are dropped (unless they are 0, 1, or
    /// carry new details), so a task reporting in a tight loop costs its subscribers at most about a hundred events
    /// per call. A change of value, not of time: the throttle needs no clock and behaves the same under test.
    /// </summary>
    public const double ProgressDelta = 0.01;

    private readonly int _node;
    private readonly Action<int, double, object?>? _progress;
    // The last delivered report; NaN before the first, so the first always goes out.
    private double _lastProgress = double.NaN;
    private object? _lastDetails;

    // The engine creates one context per call (execute or revert) of an atom.
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

    /// <summary>
    /// Reports progress between 0 and 1 (clamped), with optional details, to the engine's notifications. Throttled
    /// without allocating: a report is delivered when it is 0 or 1, when it differs from the last delivered one by
    /// at least <see cref="ProgressDelta"/>, or when it carries details other than the last delivered ones; others are
    /// dropped.
    /// </summary>
    public void ReportProgress(double progress, object? details = null)
    {
        if (double.IsNaN(progress)) throw new ArgumentOutOfRangeException(nameof(progress), "Progress must be a number between 0 and 1.");
        if (_progress is null) return;
        progress = Math.Clamp(progress, 0.0, 1.0);
        if (!ShouldDeliver(progress, details)) return;
        // Reports of one call come from the task's own code; a race between two threads of one task at worst lets
        // an extra report through or drops one that is within the delta, never a 0 or a 1.
        Volatile.Write(ref _lastProgress, progress);
        _lastDetails = details;
        _progress(_node, progress, details);
    }

    private bool ShouldDeliver(double progress, object? details)
    {
        if (progress is 0.0 or 1.0) return true;
        if (details is not null && !ReferenceEquals(details, _lastDetails) && !details.Equals(_lastDetails)) return true;
        double last = Volatile.Read(ref _lastProgress);
        return double.IsNaN(last) || Math.Abs(progress - last) >= ProgressDelta;
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
