using TaskFlow.Engines;
using TaskFlow.Notifications;
using TaskFlow.States;

namespace TaskFlow.Listeners;

/// <summary>Whether an atom call executed it or reverted it.</summary>
public enum AtomAction
{
    /// <summary>The atom's execute (for a retry controller: its execute, which records a retry attempt).</summary>
    Execute,
    /// <summary>The atom's revert.</summary>
    Revert,
}

/// <summary>How long one call of an atom took.</summary>
/// <param name="FlowName">The flow the engine ran.</param>
/// <param name="AtomName">The atom.</param>
/// <param name="Kind">Task or retry controller.</param>
/// <param name="Action">Execute or revert.</param>
/// <param name="Outcome">The state the call ended in: SUCCESS, FAILURE, REVERTED or REVERT_FAILURE.</param>
/// <param name="StartedAt">When the call started, by the engine's <see cref="EngineOptions.TimeProvider"/>.</param>
/// <param name="Duration">How long it ran, by the same clock.</param>
public readonly record struct AtomTiming(
    string FlowName, string AtomName, AtomKind Kind, AtomAction Action, AtomState Outcome, DateTimeOffset StartedAt, TimeSpan Duration);

/// <summary>
/// Measures every execute and revert of every atom (TaskFlow's <c>TimingListener</c>) with the engine's
/// <see cref="EngineOptions.TimeProvider"/>, so durations are exact under a fake clock in tests.
/// </summary>
public sealed class TimingListener : FlowListener
{
    private readonly Lock _gate = new();
    private readonly Dictionary<(FlowEngine, string), (long Timestamp, DateTimeOffset StartedAt)> _started = [];
    private readonly List<AtomTiming> _timings = [];

    /// <summary>Every finished call so far, in the order they finished.</summary>
    public IReadOnlyList<AtomTiming> Timings
    {
        get { lock (_gate) return _timings.ToArray(); }
    }

    /// <summary>Called after each finished call (on the engine's run loop; keep it short).</summary>
    public event Action<AtomTiming>? Measured;

    /// <summary>The duration of <paramref name="atomName"/>'s last successful execute, or null when it has none.</summary>
    public TimeSpan? GetDuration(string atomName)
    {
        ArgumentNullException.ThrowIfNull(atomName);
        lock (_gate)
        {
            for (int i = _timings.Count - 1; i >= 0; i--)
            {
                var t = _timings[i];
                if (t.AtomName == atomName && t.Action == AtomAction.Execute && t.Outcome == AtomState.Success) return t.Duration;
            }
        }
        return null;
    }

    /// <inheritdoc />
    protected override void OnAtomStateChanged(FlowEngine engine, in AtomStateChanged e)
    {
        var clock = engine.Options.TimeProvider;
        switch (e.State)
        {
            case AtomState.Running or AtomState.Reverting:
                lock (_gate) _started[(engine, e.AtomName)] = (clock.GetTimestamp(), clock.GetUtcNow());
                break;
            case AtomState.Success or AtomState.Failure or AtomState.Reverted or AtomState.RevertFailure:
                AtomTiming timing;
                lock (_gate)
                {
                    // A state saved without a call (a resumed run, a reset) has no start: nothing to time.
                    if (!_started.Remove((engine, e.AtomName), out var start)) return;
                    var action = e.State is AtomState.Reverted or AtomState.RevertFailure ? AtomAction.Revert : AtomAction.Execute;
                    timing = new AtomTiming(engine.Flow.Name, e.AtomName, e.Kind, action, e.State, start.StartedAt, clock.GetElapsedTime(start.Timestamp));
                    _timings.Add(timing);
                }
                Measured?.Invoke(timing);
                break;
        }
    }
}
