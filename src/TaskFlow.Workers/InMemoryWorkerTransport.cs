using System.Threading.Channels;

namespace TaskFlow.Workers;

/// <summary>
/// The message broker behind <see cref="InMemoryWorkerTransport"/> connections: topic queues with acknowledgements and
/// redelivery, reply addresses and a notification fanout, all in this process. Share one broker between the
/// connections of an engine and its workers. Like RabbitMQ it honours a request's time to live (an expired request is
/// dropped, never delivered), and requests a worker rejects are dropped (counted, as there is no dead-letter queue here).
/// </summary>
public sealed class InMemoryWorkerBroker
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, TopicQueue> _topics = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Pump<ReadOnlyMemory<byte>>> _replies = new(StringComparer.Ordinal);
    private readonly List<Pump<ReadOnlyMemory<byte>>> _subscribers = [];
    private long _rejected;
    private long _expired;

    /// <summary>The clock that times requests' time to live.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>How many requests wait in a topic's queue (delivered but unacknowledged ones, and expired ones, not counted).</summary>
    public int CountWaiting(string topic)
    {
        lock (_gate)
        {
            if (!_topics.TryGetValue(topic, out var q)) return 0;
            DropExpired(q);
            return q.Messages.Count;
        }
    }

    /// <summary>How many delivered requests workers rejected (RabbitMQ would dead-letter them).</summary>
    internal long CountRejected => Interlocked.Read(ref _rejected);

    /// <summary>How many requests expired before they could be delivered.</summary>
    internal long CountExpired => Interlocked.Read(ref _expired);

    internal void Enqueue(string topic, ReadOnlyMemory<byte> body, bool redelivered, TimeSpan? timeToLive = null) =>
        Enqueue(topic, new QueuedMessage(body.ToArray(), redelivered, timeToLive is { } ttl ? TimeProvider.GetUtcNow() + ttl : null));

    private void Enqueue(string topic, QueuedMessage message, bool atFront = false)
    {
        lock (_gate)
        {
            var q = Topic(topic);
            if (atFront)
            {
                var rest = q.Messages.ToArray();
                q.Messages.Clear();
                q.Messages.Enqueue(message);
                foreach (var m in rest) q.Messages.Enqueue(m);
            }
            else q.Messages.Enqueue(message);
            Dispatch(q);
        }
    }

    internal Consumer AddConsumer(InMemoryWorkerTransport connection, string topic, int prefetch, Func<WorkerDelivery, Task> handler)
    {
        lock (_gate)
        {
            var q = Topic(topic);
            var consumer = new Consumer(this, connection, topic, prefetch, handler);
            q.Consumers.Add(consumer);
            Dispatch(q);
            return consumer;
        }
    }

    internal void RemoveConsumer(Consumer consumer)
    {
        List<QueuedMessage> requeue;
        lock (_gate)
        {
            if (!_topics.TryGetValue(consumer.Topic, out var q) || !q.Consumers.Remove(consumer)) return;
            consumer.Removed = true;
            requeue = [.. consumer.Unacked.Values];
            consumer.Unacked.Clear();
            consumer.Pump.Complete();
        }
        // Unacknowledged requests go back to the front of the queue, marked redelivered, as a broker does on disconnect
        // (keeping their expiry, as RabbitMQ keeps a requeued message's expiration).
        foreach (var m in requeue.AsEnumerable().Reverse()) Enqueue(consumer.Topic, m with { Redelivered = true }, atFront: true);
    }

    // Settles a delivery (ack or reject). One that is no longer outstanding (its consumer stopped, so it was requeued for
    // another worker, or it was settled before) cannot be settled: the worker must not run it.
    internal void Settle(Consumer consumer, long tag, bool rejected)
    {
        lock (_gate)
        {
            if (consumer.Removed || !consumer.Unacked.Remove(tag))
                throw new InvalidOperationException($"Delivery {tag} on topic '{consumer.Topic}' is no longer outstanding: its consumer stopped (the request went back to its topic) or it was settled already.");
            if (rejected) Interlocked.Increment(ref _rejected);
            if (_topics.TryGetValue(consumer.Topic, out var q)) Dispatch(q);
        }
    }

    internal string AddReplyEndpoint(Func<ReadOnlyMemory<byte>, Task> handler)
    {
        var address = WorkerProtocol.ReplyAddressPrefix + Guid.NewGuid().ToString("N");
        lock (_gate) _replies[address] = new Pump<ReadOnlyMemory<byte>>(handler);
        return address;
    }

    internal void RemoveReplyEndpoint(string address)
    {
        lock (_gate)
            if (_replies.Remove(address, out var pump)) pump.Complete();
    }

    internal void Reply(string address, ReadOnlyMemory<byte> body)
    {
        lock (_gate)
            // A reply to an address that is gone is dropped, as a broker drops a message routed nowhere.
            if (_replies.TryGetValue(address, out var pump)) pump.Post(body.ToArray());
    }

    internal Pump<ReadOnlyMemory<byte>> AddSubscriber(Func<ReadOnlyMemory<byte>, Task> handler)
    {
        var pump = new Pump<ReadOnlyMemory<byte>>(handler);
        lock (_gate) _subscribers.Add(pump);
        return pump;
    }

    internal void RemoveSubscriber(Pump<ReadOnlyMemory<byte>> pump)
    {
        lock (_gate)
            if (_subscribers.Remove(pump)) pump.Complete();
    }

    internal void Publish(ReadOnlyMemory<byte> body)
    {
        var copy = body.ToArray();
        lock (_gate)
            foreach (var s in _subscribers) s.Post(copy);
    }

    private TopicQueue Topic(string topic)
    {
        if (!_topics.TryGetValue(topic, out var q)) _topics[topic] = q = new TopicQueue();
        return q;
    }

    // Expired requests are dropped, never delivered; called under the lock.
    private void DropExpired(TopicQueue q)
    {
        if (q.Messages.Count == 0) return;
        var now = TimeProvider.GetUtcNow();
        bool any = false;
        foreach (var m in q.Messages) if (m.ExpiresAt <= now) { any = true; break; }
        if (!any) return;
        var kept = q.Messages.Where(m => !(m.ExpiresAt <= now)).ToList();
        Interlocked.Add(ref _expired, q.Messages.Count - kept.Count);
        q.Messages.Clear();
        foreach (var m in kept) q.Messages.Enqueue(m);
    }

    // Round-robin over the consumers with room under their prefetch; called under the lock.
    private void Dispatch(TopicQueue q)
    {
        DropExpired(q);
        while (q.Messages.Count > 0 && q.Consumers.Count > 0)
        {
            Consumer? chosen = null;
            for (int i = 0; i < q.Consumers.Count; i++)
            {
                var c = q.Consumers[(q.NextConsumer + i) % q.Consumers.Count];
                if (c.Unacked.Count < c.Prefetch)
                {
                    chosen = c;
                    q.NextConsumer = (q.NextConsumer + i + 1) % q.Consumers.Count;
                    break;
                }
            }
            if (chosen is null) return;
            var m = q.Messages.Dequeue();
            long tag = ++chosen.LastTag;
            chosen.Unacked[tag] = m;
            chosen.Pump.Post(new Delivery(chosen, tag, m));
        }
    }

    private sealed class TopicQueue
    {
        public readonly Queue<QueuedMessage> Messages = new();
        public readonly List<Consumer> Consumers = [];
        public int NextConsumer;
    }

    internal readonly record struct QueuedMessage(byte[] Body, bool Redelivered, DateTimeOffset? ExpiresAt);

    internal sealed class Consumer(InMemoryWorkerBroker broker, InMemoryWorkerTransport connection, string topic, int prefetch, Func<WorkerDelivery, Task> handler)
    {
        public InMemoryWorkerBroker Broker { get; } = broker;
        public InMemoryWorkerTransport Connection { get; } = connection;
        public string Topic { get; } = topic;
        public int Prefetch { get; } = prefetch;
        public Dictionary<long, QueuedMessage> Unacked { get; } = [];
        public long LastTag;
        public bool Removed;
        public Pump<WorkerDelivery> Pump { get; } = new(handler);
    }

    private sealed class Delivery(Consumer consumer, long tag, QueuedMessage message) : WorkerDelivery
    {
        public override ReadOnlyMemory<byte> Body => message.Body;
        public override bool Redelivered => message.Redelivered;

        public override Task AcknowledgeAsync(CancellationToken cancellationToken = default)
        {
            consumer.Connection.ThrowIfClosed();
            consumer.Broker.Settle(consumer, tag, rejected: false);
            return Task.CompletedTask;
        }

        public override Task RejectAsync(CancellationToken cancellationToken = default)
        {
            consumer.Connection.ThrowIfClosed();
            consumer.Broker.Settle(consumer, tag, rejected: true);
            return Task.CompletedTask;
        }
    }

    /// <summary>Hands items to a handler one at a time, in order, on the thread pool.</summary>
    internal sealed class Pump<T>
    {
        private readonly Channel<T> _channel = Channel.CreateUnbounded<T>(new UnboundedChannelOptions { SingleReader = true });

        public Pump(Func<T, Task> handler)
        {
            _ = Task.Run(async () =>
            {
                await foreach (var item in _channel.Reader.ReadAllAsync().ConfigureAwait(false))
                {
                    try { await handler(item).ConfigureAwait(false); }
                    catch (Exception) { /* A handler's failure is its own; the transport keeps delivering, like a broker client. */ }
                }
            });
        }

        public void Post(T item) => _channel.Writer.TryWrite(item);

        public void Complete() => _channel.Writer.TryComplete();
    }
}

/// <summary>
/// A connection to an <see cref="InMemoryWorkerBroker"/>: the worker transport for tests and single-process use.
/// It behaves like a broker connection: requests wait in their topic until a consumer takes them, unacknowledged
/// requests are redelivered when the connection closes, and a closed connection can send nothing. An engine and its
/// workers may share one connection, or use one each (so that closing a worker's connection simulates its crash).
/// </summary>
public sealed class InMemoryWorkerTransport : IWorkerTransport
{
    private readonly Lock _gate = new();
    private readonly List<Func<ValueTask>> _closers = [];
    private List<Action>? _held;
    private bool _closed;

    /// <summary>A connection to <paramref name="broker"/>, or to a new broker of its own when it is null.</summary>
    public InMemoryWorkerTransport(InMemoryWorkerBroker? broker = null) => Broker = broker ?? new InMemoryWorkerBroker();

    /// <summary>The broker this connection talks to.</summary>
    public InMemoryWorkerBroker Broker { get; }

    /// <summary>
    /// Holds everything this connection sends (requests, replies, notifications) until <see cref="ResumeOutgoing"/>:
    /// a network partition or a stalled process, for tests of late and lost messages.
    /// </summary>
    public void PauseOutgoing()
    {
        lock (_gate) _held ??= [];
    }

    /// <summary>Sends everything held since <see cref="PauseOutgoing"/>, in order, and stops holding.</summary>
    public void ResumeOutgoing()
    {
        List<Action>? held;
        lock (_gate)
        {
            held = _held;
            _held = null;
        }
        if (held is not null) foreach (var send in held) send();
    }

    /// <inheritdoc />
    public Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, TimeSpan? timeToLive = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        var copy = body.ToArray();
        // A held (paused) request's time to live runs from when it reaches the broker, as with a slow network.
        Send(() => Broker.Enqueue(topic, copy, redelivered: false, timeToLive));
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<IAsyncDisposable> ConsumeRequestsAsync(string topic, int prefetch, Func<WorkerDelivery, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefetch, 1);
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfClosed();
        var consumer = Broker.AddConsumer(this, topic, prefetch, handler);
        return Task.FromResult<IAsyncDisposable>(Track(() => Broker.RemoveConsumer(consumer)));
    }

    /// <inheritdoc />
    public Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfClosed();
        var address = Broker.AddReplyEndpoint(handler);
        var closer = Track(() => Broker.RemoveReplyEndpoint(address));
        return Task.FromResult<IReplyEndpoint>(new ReplyEndpoint(address, closer));
    }

    /// <inheritdoc />
    public Task SendReplyAsync(string replyTo, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(replyTo);
        var copy = body.ToArray();
        Send(() => Broker.Reply(replyTo, copy));
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task PublishNotificationAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
    {
        var copy = body.ToArray();
        Send(() => Broker.Publish(copy));
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<IAsyncDisposable> SubscribeNotificationsAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfClosed();
        var pump = Broker.AddSubscriber(handler);
        return Task.FromResult<IAsyncDisposable>(Track(() => Broker.RemoveSubscriber(pump)));
    }

    /// <summary>Closes the connection: its consumers stop, their unacknowledged requests are redelivered, nothing more is sent.</summary>
    public async ValueTask DisposeAsync()
    {
        Func<ValueTask>[] closers;
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            _held = null;
            closers = [.. _closers];
            _closers.Clear();
        }
        foreach (var close in closers) await close().ConfigureAwait(false);
    }

    internal void ThrowIfClosed()
    {
        if (Volatile.Read(ref _closed)) throw new ObjectDisposedException(nameof(InMemoryWorkerTransport), "The in-memory worker transport connection is closed.");
    }

    private void Send(Action send)
    {
        lock (_gate)
        {
            ThrowIfClosed();
            if (_held is not null)
            {
                _held.Add(send);
                return;
            }
        }
        send();
    }

    private Closer Track(Action close)
    {
        var closer = new Closer(this, close);
        lock (_gate)
        {
            ThrowIfClosed();
            _closers.Add(closer.CloseAsync);
        }
        return closer;
    }

    private void Untrack(Closer closer)
    {
        lock (_gate) _closers.Remove(closer.CloseAsync);
    }

    private sealed class Closer(InMemoryWorkerTransport owner, Action close) : IAsyncDisposable
    {
        private int _done;

        public ValueTask CloseAsync()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) close();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            owner.Untrack(this);
            return CloseAsync();
        }
    }

    private sealed class ReplyEndpoint(string address, IAsyncDisposable closer) : IReplyEndpoint
    {
        public string Address { get; } = address;
        public ValueTask DisposeAsync() => closer.DisposeAsync();
    }
}
