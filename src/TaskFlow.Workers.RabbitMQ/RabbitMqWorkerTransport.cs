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
/// <item>notifications (heartbeats, discovery): fanout exchange <see cref="RabbitMqTransportOptions.NotificationExchange"/>,
/// one exclusive auto-deleted queue per subscriber.</item>
/// </list>
/// Every publish waits for the broker's confirmation. Each consumer has its own channel, so stopping one (or the
/// process dying) returns its unacknowledged requests to their queue.
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
            RabbitLog.Connected(logger, options.ToString(), options.ClientName);
            return new RabbitMqWorkerTransport(connection, publisher, options, logger);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    public async Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ThrowIfDisposed();
        // The engine declares the topic queue too, so a request for a topic whose workers are all restarting waits there.
        await DeclareTopicAsync(topic, cancellationToken).ConfigureAwait(false);
        await PublishAsync(_options.RequestExchange, topic, mandatory: true, body, cancellationToken).ConfigureAwait(false);
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
        consumer.ReceivedAsync += (_, e) => handler(new Delivery(channel, e.DeliveryTag, e.Body.ToArray(), e.Redelivered));
        await channel.BasicConsumeAsync(queue, autoAck: false, consumer, cancellationToken).ConfigureAwait(false);
        return Track(new ChannelCloser(channel));
    }

    /// <inheritdoc />
    public async Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ThrowIfDisposed();
        var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        var name = "taskflow.reply." + Guid.NewGuid().ToString("N");
        await channel.QueueDeclareAsync(name, durable: false, exclusive: true, autoDelete: true, cancellationToken: cancellationToken).ConfigureAwait(false);
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += async (_, e) =>
        {
            try { await handler(e.Body.ToArray()).ConfigureAwait(false); }
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
        await channel.QueueDeclareAsync(name, durable: false, exclusive: true, autoDelete: true, cancellationToken: cancellationToken).ConfigureAwait(false);
        await channel.QueueBindAsync(name, _options.NotificationExchange, "", cancellationToken: cancellationToken).ConfigureAwait(false);
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, e) => handler(e.Body.ToArray());
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

    private async Task PublishAsync(string exchange, string routingKey, bool mandatory, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        var properties = new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Transient };
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

    private async Task DeclareTopicCoreAsync(string queue, string topic)
    {
        Dictionary<string, object?>? arguments = _options.TopicQueueExpiry is { } expiry
            ? new() { ["x-expires"] = (int)Math.Min(int.MaxValue, expiry.TotalMilliseconds) }
            : null;
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
    }
}

internal static partial class RabbitLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Connected to RabbitMQ at {Endpoint} as {ClientName}")]
    public static partial void Connected(ILogger logger, string endpoint, string clientName);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Closing a RabbitMQ channel or connection failed")]
    public static partial void CloseFailed(ILogger logger, Exception exception);
}
