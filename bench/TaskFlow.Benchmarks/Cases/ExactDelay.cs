using System.Diagnostics;

namespace TaskFlow.Benchmarks.Cases;

/// <summary>
/// Asynchronous waits that end within a fraction of a millisecond of their due time, for B3's "10 ms" tasks.
/// </summary>
/// <remarks>
/// Why not <see cref="Task.Delay(TimeSpan, CancellationToken)"/>: on this machine the runtime's timer fires on a coarse
/// tick, so <c>Task.Delay(10)</c> ends after 12.0 ms and <c>Task.Delay(1)</c> after 4.0 ms (measured without any engine:
/// 100 sequential waits; 1,000 waits 8 at a time take 1.50 s, not 1.25 s). A fan-out of <c>Task.Delay(10)</c> therefore
/// measures the timer. Here one dedicated thread waits on a monitor until the earliest due time (a timed wait ends
/// ~0.1 ms late here) and completes the waiters, whose continuations run on the thread pool — like an I/O completion.
/// B3 runs both kinds, so the <c>Task.Delay</c> figure stays visible beside its no-engine baseline.
/// </remarks>
public static class ExactDelay
{
    private static readonly object Gate = new(); // a monitor, for Wait/Pulse
    private static readonly PriorityQueue<TaskCompletionSource, long> Due = new();
    private static readonly Thread Timer = StartTimer();

    /// <summary>Completes after <paramref name="delay"/> (measured with <see cref="Stopwatch"/>), or is cancelled.</summary>
    public static Task WaitAsync(TimeSpan delay, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delay, TimeSpan.Zero);
        cancellationToken.ThrowIfCancellationRequested();
        if (delay == TimeSpan.Zero) return Task.CompletedTask;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long due = Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);
        lock (Gate)
        {
            bool earliest = !Due.TryPeek(out _, out var first) || due < first;
            Due.Enqueue(done, due);
            if (earliest) Monitor.Pulse(Gate);
        }
        return cancellationToken.CanBeCanceled ? done.Task.WaitAsync(cancellationToken) : done.Task;
    }

    private static Thread StartTimer()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "ExactDelay timer", Priority = ThreadPriority.AboveNormal };
        thread.Start();
        return thread;
    }

    private static void Run()
    {
        lock (Gate)
        {
            while (true)
            {
                if (!Due.TryPeek(out var next, out var due))
                {
                    Monitor.Wait(Gate);
                    continue;
                }
                long now = Stopwatch.GetTimestamp();
                if (due <= now)
                {
                    Due.Dequeue();
                    next.TrySetResult(); // continuations run asynchronously, off this thread
                    continue;
                }
                Monitor.Wait(Gate, Stopwatch.GetElapsedTime(now, due));
            }
        }
    }
}
