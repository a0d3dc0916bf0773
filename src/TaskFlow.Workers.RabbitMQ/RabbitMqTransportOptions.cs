using System.Net.Security;
using Microsoft.Extensions.Logging;

namespace TaskFlow.Workers.RabbitMQ;

/// <summary>
/// Where and how <see cref="RabbitMqWorkerTransport"/> connects, and the names of what it declares. Credentials are
/// given here (in <see cref="Uri"/> or <see cref="UserName"/>/<see cref="Password"/>) and are never logged or shown by
/// <see cref="ToString"/>.
/// </summary>
public sealed class RabbitMqTransportOptions
{
    /// <summary>An AMQP URI, e.g. <c>amqp://user:password@host:5672/vhost</c> (<c>amqps://</c> turns TLS on). Other properties override its parts.</summary>
    public string? Uri { get; init; }

    /// <summary>The broker's host name; default from <see cref="Uri"/>, else localhost.</summary>
    public string? HostName { get; init; }

    /// <summary>The broker's port; default from <see cref="Uri"/>, else 5672 (5671 with TLS).</summary>
    public int? Port { get; init; }

    /// <summary>The virtual host; default from <see cref="Uri"/>, else "/".</summary>
    public string? VirtualHost { get; init; }

    /// <summary>The user name; default from <see cref="Uri"/>, else guest.</summary>
    public string? UserName { get; init; }

    /// <summary>The password; default from <see cref="Uri"/>, else guest.</summary>
    public string? Password { get; init; }

    /// <summary>Use TLS (also turned on by an <c>amqps://</c> URI).</summary>
    public bool UseTls { get; init; }

    /// <summary>The name the server's certificate must carry; default the host name.</summary>
    public string? TlsServerName { get; init; }

    /// <summary>Certificate problems to accept (for test brokers with self-signed certificates); none by default.</summary>
    public SslPolicyErrors TlsAcceptablePolicyErrors { get; init; } = SslPolicyErrors.None;

    /// <summary>A client certificate file for TLS authentication, and its passphrase.</summary>
    public string? TlsClientCertificatePath { get; init; }

    /// <summary>The passphrase of <see cref="TlsClientCertificatePath"/>.</summary>
    public string? TlsClientCertificatePassphrase { get; init; }

    /// <summary>The name this connection shows in the broker's management UI.</summary>
    public string ClientName { get; init; } = $"taskflow-{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>The direct exchange requests are published to, routed by topic. Declared durable, idempotently.</summary>
    public string RequestExchange { get; init; } = "taskflow.workers";

    /// <summary>The fanout exchange heartbeats and discovery requests go to. Declared durable, idempotently.</summary>
    public string NotificationExchange { get; init; } = "taskflow.workers.notify";

    /// <summary>The prefix of topic queue names: a topic's requests wait in queue <c>{prefix}{topic}</c>.</summary>
    public string QueuePrefix { get; init; } = "taskflow.workers.";

    /// <summary>
    /// A topic queue unused this long (no consumer, no declare) is deleted by the broker (<c>x-expires</c>). Every client
    /// must use the same value, or declaring the queue fails. Null keeps queues forever.
    /// </summary>
    public TimeSpan? TopicQueueExpiry { get; init; } = TimeSpan.FromHours(1);

    /// <summary>
    /// The largest message body the transport hands to a worker or engine (the worker protocol's bound, 4 MiB by
    /// default). A larger body is rejected before it is copied: a request is dead-lettered, a reply or notification
    /// dropped, and the rejection logged.
    /// </summary>
    public int MaxMessageBytes { get; init; } = WorkerProtocol.DefaultMaxMessageBytes;

    /// <summary>
    /// The most bytes of waiting messages a queue holds (<c>x-max-length-bytes</c> with <c>x-overflow: reject-publish</c>
    /// on topic, reply and notification queues): a publish that would exceed it is refused by the broker, so the send
    /// fails. It is also the connection's inbound body limit (<c>MaxInboundMessageBodySize</c>), so that any message a
    /// queue can hold can be received and rejected cleanly: RabbitMQ.Client closes the whole connection on a larger
    /// body, and the broker would deliver that message again after every reconnect. 16 MiB (4 × the protocol's bound)
    /// by default; at least <see cref="MaxMessageBytes"/>. Every client must use the same value, or declaring a queue fails.
    /// </summary>
    public int MaxQueueBytes { get; init; } = 4 * WorkerProtocol.DefaultMaxMessageBytes;

    /// <summary>
    /// The exchange that requests rejected by a worker (malformed, oversized, replying outside the protocol's reply
    /// addresses) are dead-lettered to: a headers exchange, declared durable; it routes to <see cref="DeadLetterQueue"/>
    /// only what was rejected, not requests that expired. Needs RabbitMQ 3.10 or later.
    /// </summary>
    public string DeadLetterExchange { get; init; } = "taskflow.workers.dead";

    /// <summary>The durable queue that keeps dead-lettered requests for inspection, oldest dropped first past <see cref="DeadLetterQueueBytes"/>.</summary>
    public string DeadLetterQueue { get; init; } = "taskflow.workers.dead";

    /// <summary>How many bytes of dead-lettered requests <see cref="DeadLetterQueue"/> keeps (64 MiB by default).</summary>
    public int DeadLetterQueueBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>How long a publish may wait for the broker's confirmation.</summary>
    public TimeSpan PublishTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Where connection events are logged (never with credentials).</summary>
    public ILogger? Logger { get; init; }

    /// <summary>The options from the TASKFLOW_AMQP environment variable (an AMQP URI), or null when it is not set.</summary>
    public static RabbitMqTransportOptions? FromEnvironment(string variable = "TASKFLOW_AMQP")
    {
        var uri = Environment.GetEnvironmentVariable(variable);
        return string.IsNullOrWhiteSpace(uri) ? null : new RabbitMqTransportOptions { Uri = uri };
    }

    /// <summary>The endpoint, without credentials.</summary>
    public override string ToString()
    {
        var (host, port, vhost, tls) = Endpoint();
        return $"{(tls ? "amqps" : "amqp")}://{host}:{port}/{(vhost == "/" ? "" : System.Uri.EscapeDataString(vhost))}";
    }

    internal void Validate()
    {
        if (MaxMessageBytes < 1024) throw new ArgumentOutOfRangeException(nameof(MaxMessageBytes), MaxMessageBytes, "RabbitMqTransportOptions.MaxMessageBytes must be at least 1024.");
        if (MaxQueueBytes < MaxMessageBytes)
            throw new ArgumentOutOfRangeException(nameof(MaxQueueBytes), MaxQueueBytes, $"RabbitMqTransportOptions.MaxQueueBytes must be at least MaxMessageBytes ({MaxMessageBytes}).");
        if (DeadLetterQueueBytes < 1) throw new ArgumentOutOfRangeException(nameof(DeadLetterQueueBytes), DeadLetterQueueBytes, "RabbitMqTransportOptions.DeadLetterQueueBytes must be positive.");
        foreach (var (name, value) in new[] { (nameof(RequestExchange), RequestExchange), (nameof(NotificationExchange), NotificationExchange), (nameof(DeadLetterExchange), DeadLetterExchange), (nameof(DeadLetterQueue), DeadLetterQueue) })
            if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"RabbitMqTransportOptions.{name} must be a non-empty name.", name);
    }

    internal (string Host, int Port, string VirtualHost, bool Tls) Endpoint()
    {
        System.Uri? uri = null;
        if (Uri is not null && !System.Uri.TryCreate(Uri, UriKind.Absolute, out uri))
            throw new ArgumentException("RabbitMqTransportOptions.Uri is not an absolute AMQP URI (amqp://user:password@host:port/vhost).", nameof(Uri));
        if (uri is not null && uri.Scheme is not ("amqp" or "amqps"))
            throw new ArgumentException($"RabbitMqTransportOptions.Uri has scheme '{uri.Scheme}'; expected amqp or amqps.", nameof(Uri));
        bool tls = UseTls || uri?.Scheme == "amqps";
        var host = HostName ?? (string.IsNullOrEmpty(uri?.Host) ? "localhost" : uri.Host);
        var port = Port ?? (uri is { IsDefaultPort: false } ? uri.Port : tls ? 5671 : 5672);
        var vhost = VirtualHost ?? (uri is not null && uri.AbsolutePath.Length > 1 ? System.Uri.UnescapeDataString(uri.AbsolutePath[1..]) : "/");
        return (host, port, vhost, tls);
    }

    internal (string User, string Password) Credentials()
    {
        string? user = null, password = null;
        if (Uri is not null && System.Uri.TryCreate(Uri, UriKind.Absolute, out var uri) && uri.UserInfo.Length > 0)
        {
            var parts = uri.UserInfo.Split(':', 2);
            user = System.Uri.UnescapeDataString(parts[0]);
            if (parts.Length > 1) password = System.Uri.UnescapeDataString(parts[1]);
        }
        return (UserName ?? user ?? "guest", Password ?? password ?? "guest");
    }
}
