namespace TaskFlow.Workers;

/// <summary>
/// Moves worker-protocol messages between engines and workers: requests to a topic (each taken by one worker of the
/// topic), responses to an engine's reply address, and notifications (heartbeats, discovery) to everyone. Bodies are
/// opaque bytes here; <see cref="WorkerProtocol"/> gives them meaning. A transport is one connection: disposing it
/// closes everything opened through it, and requests delivered through it but not yet acknowledged go back to their
/// topic for another worker.
/// </summary>
/// <remarks>
/// Delivery is at least once until acknowledged: a request that was delivered but not acknowledged (the worker died)
/// is delivered again. A worker acknowledges a request before it starts it, so from then on it is at most once.
/// Handlers are called on the transport's threads, possibly concurrently; they should hand work off quickly.
/// </remarks>
public interface IWorkerTransport : IAsyncDisposable
{
    /// <summary>
    /// Sends a request to a topic, to be taken by one worker consuming it; completes once the transport has it safely.
    /// When it throws, the request may or may not have been queued (a confirmation can be lost), and the caller must
    /// assume it may still be delivered until its time to live has passed.
    /// </summary>
    /// <param name="topic">The topic.</param>
    /// <param name="body">The request.</param>
    /// <param name="timeToLive">
    /// How long the request may wait to be delivered: once it has passed, the transport drops the request instead of
    /// delivering it (RabbitMQ: the message's expiration). Null: it may wait forever. A request already delivered is not
    /// affected; workers refuse expired requests themselves.
    /// </param>
    /// <param name="cancellationToken">Cancels waiting for the transport.</param>
    Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, TimeSpan? timeToLive = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Starts taking requests from a topic. At most <paramref name="prefetch"/> delivered requests are unacknowledged at
    /// once; each must be acknowledged (<see cref="WorkerDelivery.AcknowledgeAsync"/>) when the worker takes
    /// responsibility for it. Dispose the result to stop.
    /// </summary>
    Task<IAsyncDisposable> ConsumeRequestsAsync(string topic, int prefetch, Func<WorkerDelivery, Task> handler, CancellationToken cancellationToken = default);

    /// <summary>Opens a private reply address for this connection; responses sent to it reach <paramref name="handler"/>.</summary>
    Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default);

    /// <summary>Sends a response to a reply address.</summary>
    Task SendReplyAsync(string replyTo, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default);

    /// <summary>Publishes a notification (heartbeat, discovery) to every subscriber.</summary>
    Task PublishNotificationAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default);

    /// <summary>Receives every notification published from now on (its own included). Dispose the result to stop.</summary>
    Task<IAsyncDisposable> SubscribeNotificationsAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default);
}

/// <summary>A reply address opened by <see cref="IWorkerTransport.OpenReplyEndpointAsync"/>.</summary>
public interface IReplyEndpoint : IAsyncDisposable
{
    /// <summary>The address to put in requests' reply-to.</summary>
    string Address { get; }
}

/// <summary>One delivered request: its body and the acknowledgement that removes it from its topic for good.</summary>
public abstract class WorkerDelivery
{
    /// <summary>The message body.</summary>
    public abstract ReadOnlyMemory<byte> Body { get; }

    /// <summary>Whether the transport delivered this request before (to a worker that did not acknowledge it).</summary>
    public abstract bool Redelivered { get; }

    /// <summary>
    /// Acknowledges the request: it will not be delivered again, even if this worker dies.
    /// Throws when the acknowledgement cannot be made (the channel or consumer is closed, so the request goes back to
    /// its topic); the worker must then not run it.
    /// </summary>
    public abstract Task AcknowledgeAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Rejects a request that cannot be served (malformed, oversized, with a reply address outside the protocol's):
    /// it is not delivered again; the transport dead-letters it where it can (RabbitMQ: the dead-letter exchange), or
    /// drops it.
    /// </summary>
    public abstract Task RejectAsync(CancellationToken cancellationToken = default);
}
