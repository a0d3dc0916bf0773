using System.Diagnostics;
using TaskFlow.Benchmarks.Cases;

namespace TaskFlow.Benchmarks.Tests;

/// <summary>The timer behind B3's exact-timer rows: never early, in due order, cancellable.</summary>
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
    public async Task Waits_end_in_the_order_they_are_due_whatever_order_they_were_started_in()
    {
        var order = new List<int>();
        var waits = new[] { 30, 5, 20, 10 }.Select(async ms =>
        {
            await ExactDelay.WaitAsync(TimeSpan.FromMilliseconds(ms));
            lock (order) order.Add(ms);
        }).ToArray();
        await Task.WhenAll(waits);
        Assert.Equal([5, 10, 20, 30], order);
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
