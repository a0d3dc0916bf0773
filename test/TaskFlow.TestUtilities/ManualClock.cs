namespace TaskFlow.TestUtilities;

/// <summary>A <see cref="TimeProvider"/> whose time moves only when told to.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private readonly Lock _gate = new();
    private DateTimeOffset _now = start;

    /// <summary>A clock at 2025-01-02 03:04:05.1234567 UTC (sub-microsecond on purpose).</summary>
    public ManualClock() : this(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero).AddTicks(1234567)) { }

    public override DateTimeOffset GetUtcNow()
    {
        lock (_gate) return _now;
    }

    // Timestamps follow the manual time too, so elapsed-time measurements (TimeProvider.GetElapsedTime) are exact.
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp()
    {
        lock (_gate) return _now.UtcTicks;
    }

    public void Advance(TimeSpan by)
    {
        lock (_gate) _now += by;
    }
}
