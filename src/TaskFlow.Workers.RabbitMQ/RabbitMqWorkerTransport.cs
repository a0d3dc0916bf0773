using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace TaskFlow.Workers.RabbitMQ;

/// <summary>
/// The worker transport over RabbitMQ. Topology, all declared idempotently by whoever needs it first:
/// <list type="bullet">
/// <item>requests: direct exchange <see cref="RabbitMqTransportOptions.RequestExchange"/>; topic <c>t</c> is routed to the
/// durable queue <c>{QueuePrefix}t</c>, consumed by that topic's workers with manual acknowledgements and a prefetch of
/// their concurrency;</item>
/// <item>replies: one exclusive, auto-deleted queue per reply endpoint (per engine process), addressed through the
/// default exchange;</item>
/// <item>notifications (heartbeats, discovery, withdrawals): fanout exchange <see cref="RabbitMqTransportOptions.NotificationExchange"/>,
/// one exclusive auto-deleted queue per subscriber;</item>
/// <item>rejected requests: headers exchange <see cref="RabbitMqTransportOptions.DeadLetterExchange"/> (each topic queue's
/// dead-letter exchange) into the bounded queue <see cref="RabbitMqTransportOptions.DeadLetterQueue"/>.</item>
/// </list>
/// Every queue holds at most <see cref="RabbitMqTransportOptions.MaxQueueBytes"/> of waiting messages (publishes past it
/// are refused), which is also the connection's inbound body limit; bodies above
/// <see cref="RabbitMqTransportOptions.MaxMessageBytes"/> are rejected before they are copied. A request is published with
/// its time to live as the message's expiration, so the broker drops it unread once it expires. Every publish waits for
/// the broker's confirmation. Each consumer has its own channel, so stopping one (or the process dying) returns its
/// unacknowledged requests to their queue.
/// </summary>
public sealed class RabbitMqWorkerTransport : IWorkerTransport
{
    private readonly IConnection _connection;
    private readonly IChannel _publisher;
    private readonly RabbitMqTransportOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Task> _declaredTopics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<IAsyncDisposable, byte> _open = new();
    private int _disposed;

    private RabbitMqWorkerTransport(IConnection connection, IChannel publisher, RabbitMqTransportOptions options, ILogger logger)
    {
        _connection = connection;
        _publisher = publisher;
        _options = options;
        _logger = logger;
    }

    /// <summary>The endpoint this transport is connected to (without credentials).</summary>
    public string Endpoint => _options.ToString();

    /// <summary>Connects to the broker and declares the exchanges.</summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    /// <exception cref="global::RabbitMQ.Client.Exceptions.BrokerUnreachableException">The broker cannot be reached or refused the credentials.</exception>
    public static async Task<RabbitMqWorkerTransport> ConnectAsync(RabbitMqTransportOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (host, port, vhost, tls) = options.Endpoint();
        var (user, password) = options.Credentials();
        var factory = new ConnectionFactory
        {
            HostName = host,
            Port = port,
            VirtualHost = vhost,
            UserName = user,
            Password = password,
            ClientProvidedName = options.ClientName,
            AutomaticRecoveryEnabled = true,
            TopologyRecoveryEnabled = true,
            // One delivery at a time per consumer: a worker hands requests to its own runners, so this never blocks them.
            ConsumerDispatchConcurrency = 1,
            // Any body a queue can hold (see MaxQueueBytes): the client closes the connection on a larger one, and the
            // broker would deliver it again after each reconnect, forever. Bodies above MaxMessageBytes are rejected
            // by the consumers below, before they are copied.
            MaxInboundMessageBodySize = (uint)options.MaxQueueBytes,
        };
        if (tls)
        {
            factory.Ssl = new SslOption
            {
                Enabled = true,
                ServerName = options.TlsServerName ?? host,
                AcceptablePolicyErrors = options.TlsAcceptablePolicyErrors,
                CertPath = options.TlsClientCertificatePath ?? string.Empty,
                CertPassphrase = options.TlsClientCertificatePassphrase ?? string.Empty,
            };
        }
        var logger = options.Logger ?? NullLogger.Instance;
        var connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var publisher = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken).ConfigureAwait(false);
            await publisher.ExchangeDeclareAsync(options.RequestExchange, ExchangeType.Direct, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            await publisher.ExchangeDeclareAsync(options.NotificationExchange, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            await DeclareDeadLetterAsync(publisher, options, cancellationToken).ConfigureAwait(false);
            RabbitLog.Connected(logger, options.ToString(), options.ClientName);
            return new RabbitMqWorkerTransport(connection, publisher, options, logger);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    // Rejected requests are kept for inspection; expired ones are not (the headers binding matches only "rejected").
    private static async Task DeclareDeadLetterAsync(IChannel channel, RabbitMqTransportOptions options, CancellationToken cancellationToken)
    {
        await channel.ExchangeDeclareAsync(options.DeadLetterExchange, ExchangeType.Headers, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueDeclareAsync(options.DeadLetterQueue, durable: true, exclusive: false, autoDelete: false, new Dictionary<string, object?>
        {
            ["x-max-length-bytes"] = options.DeadLetterQueueBytes,
            ["x-overflow"] = "drop-head",
        }, cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueBindAsync(options.DeadLetterQueue, options.DeadLetterExchange, "", new Dictionary<string, object?>
        {
            ["x-match"] = "all-with-x",
            ["x-first-death-reason"] = "rejected",
        }, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, TimeSpan? timeToLive = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ThrowIfDisposed();
        // The engine declares the topic queue too, so a request for a topic whose workers are all restarting waits there.
        await DeclareTopicAsync(topic, cancellationToken).ConfigureAwait(false);
        // The broker drops the message unread once it expires (counted from when the broker has it).
        string? expiration = timeToLive is { } ttl
            ? Math.Clamp((long)Math.Ceiling(ttl.TotalMilliseconds), 1, int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture)
            : null;
        await PublishAsync(_options.RequestExchange, topic, mandatory: true, body, cancellationToken, expiration).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IAsyncDisposable> ConsumeRequestsAsync(string topic, int prefetch, Func<WorkerDelivery, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefetch, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(prefetch, ushort.MaxValue);
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfDisposed();
        var queue = await DeclareTopicAsync(topic, cancellationToken).ConfigureAwait(false);
        var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.BasicQosAsync(0, (ushort)prefetch, global: false, cancellationToken).ConfigureAwait(false);
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += async (_, e) =>
        {
            if (e.Body.Length > _options.MaxMessageBytes)
            {
                // Checked before the body is copied; rejected without requeue, so it is dead-lettered, not redelivered.
                RabbitLog.Oversized(_logger, "request", queue, e.Body.Length, _options.MaxMessageBytes);
                await channel.BasicRejectAsync(e.DeliveryTag, requeue: false).ConfigureAwait(false);
                return;
            }
            await handler(new Delivery(channel, e.DeliveryTag, e.Body.ToArray(), e.Redelivered)).ConfigureAwait(false);
        };
        await channel.BasicConsumeAsync(queue, autoAck: false, consumer, cancellationToken).ConfigureAwait(false);
        return Track(new ChannelCloser(channel));
    }

    /// <inheritdoc />
    public async Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfDisposed();
        var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        // Workers reply only to addresses under the protocol's prefix.
        var name = WorkerProtocol.ReplyAddressPrefix + Guid.NewGuid().ToString("N");
        await channel.QueueDeclareAsync(name, durable: false, exclusive: true, autoDelete: true, BoundedQueue(), cancellationToken: cancellationToken).ConfigureAwait(false);
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += async (_, e) =>
        {
            try
            {
                if (e.Body.Length > _options.MaxMessageBytes) RabbitLog.Oversized(_logger, "reply", name, e.Body.Length, _options.MaxMessageBytes);
                else await handler(e.Body.ToArray()).ConfigureAwait(false);
            }
            finally { await channel.BasicAckAsync(e.DeliveryTag, multiple: false).ConfigureAwait(false); }
        };
        await channel.BasicConsumeAsync(name, autoAck: false, consumer, cancellationToken).ConfigureAwait(false);
        var endpoint = new ReplyEndpoint(name, new ChannelCloser(channel));
        Track(endpoint);
        return endpoint;
    }

    /// <inheritdoc />
    public Task SendReplyAsync(string replyTo, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(replyTo);
        ThrowIfDisposed();
        // Not mandatory: an engine that is gone has no reply queue, and its late replies are simply dropped.
        return PublishAsync("", replyTo, mandatory: false, body, cancellationToken);
    }

    /// <inheritdoc />
    public Task PublishNotificationAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return PublishAsync(_options.NotificationExchange, "", mandatory: false, body, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IAsyncDisposable> SubscribeNotificationsAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfDisposed();
        var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        var name = "taskflow.notify." + Guid.NewGuid().ToString("N");
        await channel.QueueDeclareAsync(name, durable: false, exclusive: true, autoDelete: true, BoundedQueue(), cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueBindAsync(name, _options.NotificationExchange, "", cancellationToken: cancellationToken).ConfigureAwait(false);
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, e) =>
        {
            if (e.Body.Length <= _options.MaxMessageBytes) return handler(e.Body.ToArray());
            RabbitLog.Oversized(_logger, "notification", name, e.Body.Length, _options.MaxMessageBytes);
            return Task.CompletedTask;
        };
        // Heartbeats are periodic and idempotent: losing one to a crash is harmless, so they need no acknowledgement.
        await channel.BasicConsumeAsync(name, autoAck: true, consumer, cancellationToken).ConfigureAwait(false);
        return Track(new ChannelCloser(channel));
    }

    /// <summary>Closes every channel and the connection; unacknowledged requests go back to their queues.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        foreach (var open in _open.Keys)
        {
            try { await open.DisposeAsync().ConfigureAwait(false); }
            catch (Exception e) { RabbitLog.CloseFailed(_logger, e); }
        }
        try
        {
            await _publisher.DisposeAsync().ConfigureAwait(false);
            await _connection.CloseAsync().ConfigureAwait(false);
        }
        catch (Exception e) { RabbitLog.CloseFailed(_logger, e); }
        await _connection.DisposeAsync().ConfigureAwait(false);
    }

    private async Task PublishAsync(string exchange, string routingKey, bool mandatory, ReadOnlyMemory<byte> body, CancellationToken cancellationToken, string? expiration = null)
    {
        var properties = new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Transient, Expiration = expiration };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.PublishTimeout);
        // With confirmation tracking on, this completes when the broker confirms, and throws when it nacks or returns.
        await _publisher.BasicPublishAsync(exchange, routingKey, mandatory, properties, body, timeout.Token).ConfigureAwait(false);
    }

    private async Task<string> DeclareTopicAsync(string topic, CancellationToken cancellationToken)
    {
        var queue = _options.QueuePrefix + topic;
        var declared = _declaredTopics.GetOrAdd(topic, _ => DeclareTopicCoreAsync(queue, topic));
        try { await declared.WaitAsync(cancellationToken).ConfigureAwait(false); }
        catch when (declared.IsFaulted || declared.IsCanceled)
        {
            _declaredTopics.TryRemove(KeyValuePair.Create(topic, declared));
            throw;
        }
        return queue;
    }

    // Bounded by bytes, refusing publishes past the bound (the sender learns of it, nothing queued is dropped).
    private Dictionary<string, object?> BoundedQueue() => new()
    {
        ["x-max-length-bytes"] = _options.MaxQueueBytes,
        ["x-overflow"] = "reject-publish",
    };

    private async Task DeclareTopicCoreAsync(string queue, string topic)
    {
        var arguments = BoundedQueue();
        arguments["x-dead-letter-exchange"] = _options.DeadLetterExchange;
        if (_options.TopicQueueExpiry is { } expiry) arguments["x-expires"] = (int)Math.Min(int.MaxValue, expiry.TotalMilliseconds);
        await _publisher.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments).ConfigureAwait(false);
        await _publisher.QueueBindAsync(queue, _options.RequestExchange, topic).ConfigureAwait(false);
    }

    private IAsyncDisposable Track(IAsyncDisposable resource)
    {
        _open.TryAdd(resource, 0);
        return new Untracking(this, resource);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);

    private sealed class Untracking(RabbitMqWorkerTransport owner, IAsyncDisposable resource) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            owner._open.TryRemove(resource, out _);
            return resource.DisposeAsync();
        }
    }

    private sealed class ChannelCloser(IChannel channel) : IAsyncDisposable
    {
        private int _closed;

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 1) return;
            try { if (channel.IsOpen) await channel.CloseAsync().ConfigureAwait(false); }
            finally { await channel.DisposeAsync().ConfigureAwait(false); }
        }
    }

    private sealed class ReplyEndpoint(string address, IAsyncDisposable channel) : IReplyEndpoint
    {
        public string Address { get; } = address;
        public ValueTask DisposeAsync() => channel.DisposeAsync();
    }

    private sealed class Delivery(IChannel channel, ulong tag, byte[] body, bool redelivered) : WorkerDelivery
    {
        public override ReadOnlyMemory<byte> Body => body;
        public override bool Redelivered => redelivered;
        public override Task AcknowledgeAsync(CancellationToken cancellationToken = default) =>
            channel.BasicAckAsync(tag, multiple: false, cancellationToken).AsTask();

        // Without requeue: the topic queue dead-letters it.
        public override Task RejectAsync(CancellationToken cancellationToken = default) =>
            channel.BasicRejectAsync(tag, requeue: false, cancellationToken).AsTask();
    }
}

internal static partial class RabbitLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Connected to RabbitMQ at {Endpoint} as {ClientName}")]
    public static partial void Connected(ILogger logger, string endpoint, string clientName);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Closing a RabbitMQ channel or connection failed")]
    public static partial void CloseFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Rejected a {What} of {Size} bytes on queue {Queue} unread: the limit is {Limit} bytes")]
    public static partial void Oversized(ILogger logger, string what, string queue, int size, int limit);
}
