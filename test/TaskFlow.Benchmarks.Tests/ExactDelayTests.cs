using System.Diagnostics;
using TaskFlow.Benchmarks.Cases;

namespace TaskFlow.Benchmarks.Tests;

/// <summary>The timer behind B3's exact-timer rows: never early, earliest due first, cancellable.</summary>
public sealed class ExactDelayTests
{
    [Fact]
    public async Task A_wait_never_ends_before_its_due_time()
    {
        for (int i = 0; i < 20; i++)
        {
            long start = Stopwatch.GetTimestamp();
            await ExactDelay.WaitAsync(TimeSpan.FromMilliseconds(3));
            Assert.True(Stopwatch.GetElapsedTime(start) >= TimeSpan.FromMilliseconds(3), $"wait {i} ended early");
        }
    }

    [Fact]
    public async Task A_wait_due_sooner_ends_first_even_when_started_after_a_longer_one()
    {
        var longer = ExactDelay.WaitAsync(TimeSpan.FromSeconds(2));
        var shorter = ExactDelay.WaitAsync(TimeSpan.FromMilliseconds(5));
        await shorter;
        Assert.False(longer.IsCompleted, "the 2 s wait ended with the 5 ms one");
        await longer;
    }

    [Fact]
    public async Task A_cancelled_wait_ends_cancelled_and_later_waits_still_end()
    {
        using var cts = new CancellationTokenSource();
        var cancelled = ExactDelay.WaitAsync(TimeSpan.FromSeconds(30), cts.Token);
        var later = ExactDelay.WaitAsync(TimeSpan.FromMilliseconds(5));
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        await later;
    }

    [Fact]
    public void A_negative_delay_is_refused_when_called() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = ExactDelay.WaitAsync(TimeSpan.FromMilliseconds(-1)); });
}
