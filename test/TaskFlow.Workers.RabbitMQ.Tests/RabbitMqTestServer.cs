namespace TaskFlow.Workers.RabbitMQ.Tests;

/// <summary>
/// The RabbitMQ server for these tests, from TASKFLOW_AMQP (an AMQP URI; scripts/services.sh sets it). Each test uses
/// its own topic and a queue prefix of its own, and topic queues expire a minute after their last use.
/// </summary>
internal static class RabbitMqTestServer
{
    public const string Variable = "TASKFLOW_AMQP";

    /// <summary>
    /// The URI, or null when no server is configured on a developer machine: the tests then return early, because
    /// xunit 2 cannot skip at run time. Under CI=true a missing server is a failure, never a silent pass.
    /// </summary>
    public static string? Uri
    {
        get
        {
            var value = Environment.GetEnvironmentVariable(Variable);
            if (!string.IsNullOrWhiteSpace(value)) return value;
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                throw new InvalidOperationException(
                    $"{Variable} is not set but CI=true: the RabbitMQ transport tests need a server. Start one with scripts/services.sh and export {Variable}.");
            return null;
        }
    }

    public static RabbitMqTransportOptions Options(string uri) => new()
    {
        Uri = uri,
        QueuePrefix = "taskflow.test.",
        TopicQueueExpiry = TimeSpan.FromMinutes(1),
    };

    public static Task<RabbitMqWorkerTransport> ConnectAsync(string uri) => RabbitMqWorkerTransport.ConnectAsync(Options(uri));

    public static string NewTopic() => "t." + Guid.NewGuid().ToString("N");
}
