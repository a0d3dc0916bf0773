using System.Diagnostics;

namespace TaskFlow.Benchmarks.Cases;

/// <summary>
/// B3's floor: the fan-out's waits run with no engine at all — started as soon as a slot is free, at most
/// <c>maxDegree</c> at a time — so the engine's figure can be held against what the waits alone take on this machine.
/// </summary>
public static class NoEngineFanOut
{
    /// <summary>Runs <paramref name="n"/> waits of <paramref name="delay"/>, at most <paramref name="maxDegree"/> at once (all at once when negative).</summary>
    public static async Task<TimeSpan> RunAsync(int n, TimeSpan delay, int maxDegree, bool exactTimer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        using var slots = new SemaphoreSlim(maxDegree < 0 ? n : maxDegree);
        var waits = new Task[n];
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < n; i++)
        {
            await slots.WaitAsync().ConfigureAwait(false);
            waits[i] = WaitThenReleaseAsync(delay, exactTimer, slots);
        }
        await Task.WhenAll(waits).ConfigureAwait(false);
        return Stopwatch.GetElapsedTime(start);
    }

    private static async Task WaitThenReleaseAsync(TimeSpan delay, bool exactTimer, SemaphoreSlim slots)
    {
        try
        {
            if (exactTimer) await ExactDelay.WaitAsync(delay).ConfigureAwait(false);
            else await Task.Delay(delay).ConfigureAwait(false);
        }
        finally
        {
            slots.Release();
        }
    }
}
