namespace TaskFlow.Workers;

/// <summary>
/// Moves worker-protocol messages between engines and workers: requests to a topic (each taken by one worker of the
/// topic), responses to an engine's reply address, and notifications (heartbeats, discovery) to everyone. Bodies are
/// opaque bytes here; <see cref="WorkerProtocol"/> gives them meaning. A transport is one connection: disposing it
/// closes everything opened through it, and requests delivered through it but not yet acknowledged go back to their
/// topic for another worker.
/// </summary>
/// <remarks>
/// Delivery is at least once: a request that was delivered but not acknowledged (the worker died) is delivered again.
/// Handlers are called on the transport's threads, possibly concurrently; they should hand work off quickly.
/// </remarks>
public interface IWorkerTransport : IAsyncDisposable
{
    /// <summary>Sends a request to a topic, to be taken by one worker consuming it; completes once the transport has it safely.</summary>
    Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default);

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

    /// <summary>Acknowledges the request: it will not be delivered again, even if this worker dies.</summary>
    public abstract Task AcknowledgeAsync(CancellationToken cancellationToken = default);
}
