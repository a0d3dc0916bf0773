using System.Text;

namespace TaskFlow.Workers.Tests;

public sealed class InMemoryWorkerTransportTests
{
    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition() && DateTime.UtcNow < deadline) await Task.Delay(10);
    }

    [Fact]
    public async Task UnacknowledgedRequest_IsRedeliveredWhenItsConnectionCloses_AcknowledgedOneIsNot()
    {
        var broker = new InMemoryWorkerBroker();
        await using var sender = new InMemoryWorkerTransport(broker);
        var dying = new InMemoryWorkerTransport(broker);
        var got = new List<string>();
        var both = new TaskCompletionSource();
        await dying.ConsumeRequestsAsync("t", 2, async d =>
        {
            var text = Encoding.UTF8.GetString(d.Body.Span);
            if (text == "acked") await d.AcknowledgeAsync();
            lock (got) { got.Add(text); if (got.Count == 2) both.TrySetResult(); }
        });
        await sender.SendRequestAsync("t", Utf8("acked"));
        await sender.SendRequestAsync("t", Utf8("unacked"));
        await both.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await dying.DisposeAsync();
        Assert.Equal(1, broker.CountWaiting("t"));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => dying.SendRequestAsync("t", Utf8("x")));

        await using var survivor = new InMemoryWorkerTransport(broker);
        var again = new TaskCompletionSource<(string, bool)>();
        await survivor.ConsumeRequestsAsync("t", 1, async d => { await d.AcknowledgeAsync(); again.TrySetResult((Encoding.UTF8.GetString(d.Body.Span), d.Redelivered)); });
        Assert.Equal(("unacked", true), await again.Task.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task Prefetch_BoundsUnacknowledgedDeliveries()
    {
        var broker = new InMemoryWorkerBroker();
        await using var t = new InMemoryWorkerTransport(broker);
        var delivered = new List<WorkerDelivery>();
        await t.ConsumeRequestsAsync("t", 2, d => { lock (delivered) delivered.Add(d); return Task.CompletedTask; });
        for (int i = 0; i < 5; i++) await t.SendRequestAsync("t", Utf8($"{i}"));
        await WaitUntilAsync(() => { lock (delivered) return delivered.Count >= 2; });
        await Task.Delay(100); // time for a delivery beyond the prefetch, were there one
        lock (delivered) Assert.Equal(2, delivered.Count);
        Assert.Equal(3, broker.CountWaiting("t"));
        await delivered[0].AcknowledgeAsync();
        await WaitUntilAsync(() => { lock (delivered) return delivered.Count >= 3; });
        lock (delivered) Assert.Equal(3, delivered.Count);
        Assert.Equal(2, broker.CountWaiting("t"));
    }

    [Fact]
    public async Task PauseOutgoing_HoldsEverythingSentUntilResumed_InOrder()
    {
        var broker = new InMemoryWorkerBroker();
        await using var a = new InMemoryWorkerTransport(broker);
        await using var b = new InMemoryWorkerTransport(broker);
        var seen = new List<string>();
        await b.SubscribeNotificationsAsync(body => { lock (seen) seen.Add(Encoding.UTF8.GetString(body.Span)); return Task.CompletedTask; });
        a.PauseOutgoing();
        await a.PublishNotificationAsync(Utf8("1"));
        await a.PublishNotificationAsync(Utf8("2"));
        await Task.Delay(100);
        lock (seen) Assert.Empty(seen);
        a.ResumeOutgoing();
        await WaitUntilAsync(() => { lock (seen) return seen.Count >= 2; });
        lock (seen) Assert.Equal(["1", "2"], seen);
    }
}
