using TaskFlow.Workers.RabbitMQ;

namespace TaskFlow.Conformance;

/// <summary>
/// The RabbitMQ server for distributed runs, from TASKFLOW_AMQP (scripts/services.sh sets it). Topic queues made per
/// scenario expire a minute after their last use, so runs leave nothing behind.
/// </summary>
public sealed class RabbitMqConnection : IAsyncDisposable
{
    public const string Variable = "TASKFLOW_AMQP";

    private RabbitMqConnection(RabbitMqWorkerTransport transport) => Transport = transport;

    public RabbitMqWorkerTransport Transport { get; }

    /// <summary>
    /// Null when no server is configured on a developer machine; under CI=true a missing server is an error, never a
    /// silent pass.
    /// </summary>
    public static string? Uri
    {
        get
        {
            var value = Environment.GetEnvironmentVariable(Variable);
            if (!string.IsNullOrWhiteSpace(value)) return value;
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                throw new InvalidOperationException($"{Variable} is not set but CI=true: the RabbitMQ runs need a server. Start one with scripts/services.sh and export {Variable}.");
            return null;
        }
    }

    public static async Task<RabbitMqConnection> OpenAsync()
    {
        var uri = Uri ?? throw new InvalidOperationException($"{Variable} is not set: start RabbitMQ with scripts/services.sh and export {Variable}.");
        return new RabbitMqConnection(await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions
        {
            Uri = uri,
            TopicQueueExpiry = TimeSpan.FromMinutes(1),
            QueuePrefix = "taskflow.conformance.",
        }));
    }

    public ValueTask DisposeAsync() => Transport.DisposeAsync();
}
