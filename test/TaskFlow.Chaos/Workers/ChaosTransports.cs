using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using TaskFlow.Failures;
using TaskFlow.Workers;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// The request id the chaos task is running for, so that its ledger lines name it. Set by
/// <see cref="WorkerSideTransport"/> around each delivery; the worker's own code carries it (the execution context flows
/// into the task it starts for that delivery).
/// </summary>
public static class RequestContext
{
    private static readonly AsyncLocal<string?> Current = new();

    public static void Set(string? requestId) => Current.Value = requestId;

    public static string Require(string atom) =>
        Current.Value ?? throw new InvalidOperationException($"The chaos task for atom '{atom}' runs without a request id: the worker did not carry its delivery's context.");
}

/// <summary>
/// A worker process's transport, in test code: it tells each delivery's request id to <see cref="RequestContext"/>.
/// Broken (the self-test's variant) it also makes the worker ignore deadlines and withdrawals, as before the fix:
/// it strips <c>deadline_ms</c> from every request and drops every <c>cancel</c> notification.
/// </summary>
public sealed class WorkerSideTransport(IWorkerTransport inner, bool broken) : IWorkerTransport
{
    public Task<IAsyncDisposable> ConsumeRequestsAsync(string topic, int prefetch, Func<WorkerDelivery, Task> handler, CancellationToken cancellationToken = default) =>
        inner.ConsumeRequestsAsync(topic, prefetch, delivery =>
        {
            string? id = null;
            try
            {
                using var doc = JsonDocument.Parse(delivery.Body);
                if (doc.RootElement.TryGetProperty("id", out var p) && p.ValueKind == JsonValueKind.String) id = p.GetString();
            }
            catch (JsonException) { }
            RequestContext.Set(id);
            return handler(broken ? new DeadlineStripped(delivery) : delivery);
        }, cancellationToken);

    public Task<IAsyncDisposable> SubscribeNotificationsAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default) =>
        inner.SubscribeNotificationsAsync(body => broken && TypeOf(body) == "cancel" ? Task.CompletedTask : handler(body), cancellationToken);

    public Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, TimeSpan? timeToLive = null, CancellationToken cancellationToken = default) => inner.SendRequestAsync(topic, body, timeToLive, cancellationToken);
    public Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default) => inner.OpenReplyEndpointAsync(handler, cancellationToken);
    public Task SendReplyAsync(string replyTo, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default) => inner.SendReplyAsync(replyTo, body, cancellationToken);
    public Task PublishNotificationAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default) => inner.PublishNotificationAsync(body, cancellationToken);
    public ValueTask DisposeAsync() => inner.DisposeAsync();

    internal static string? TypeOf(ReadOnlyMemory<byte> body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        }
        catch (JsonException) { return null; }
    }

    private sealed class DeadlineStripped(WorkerDelivery inner) : WorkerDelivery
    {
        private readonly ReadOnlyMemory<byte> _body = Strip(inner.Body);

        public override ReadOnlyMemory<byte> Body => _body;
        public override bool Redelivered => inner.Redelivered;
        public override Task AcknowledgeAsync(CancellationToken cancellationToken = default) => inner.AcknowledgeAsync(cancellationToken);
        public override Task RejectAsync(CancellationToken cancellationToken = default) => inner.RejectAsync(cancellationToken);

        private static ReadOnlyMemory<byte> Strip(ReadOnlyMemory<byte> body)
        {
            try
            {
                if (JsonNode.Parse(body.Span) is not JsonObject o || !o.Remove("deadline_ms")) return body;
                return JsonSerializer.SerializeToUtf8Bytes(o);
            }
            catch (JsonException) { return body; }
        }
    }
}

/// <summary>
/// The self-test's broken engine side, in test code: requests go out without a time to live, and a request with no
/// RUNNING after <paramref name="requestTimeout"/> is reported to the engine as refused, i.e. the timeout is taken as
/// "did not run" (the behaviour before the fix), so the engine reverts at once while the request may still start.
/// </summary>
public sealed class TimeoutMeansNotRunTransport(IWorkerTransport inner, TimeSpan requestTimeout) : IWorkerTransport
{
    private readonly ConcurrentDictionary<string, byte> _started = new(StringComparer.Ordinal);
    private Func<ReadOnlyMemory<byte>, Task>? _replies;

    public async Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, TimeSpan? timeToLive = null, CancellationToken cancellationToken = default)
    {
        await inner.SendRequestAsync(topic, body, timeToLive: null, cancellationToken);
        string id;
        using (var doc = JsonDocument.Parse(body)) id = doc.RootElement.GetProperty("id").GetString()!;
        _ = Task.Delay(requestTimeout).ContinueWith(async _ =>
        {
            if (_started.ContainsKey(id) || _replies is not { } replies) return;
            var failure = Failure.FromException(new WorkerTimeoutException($"request {id} timed out (the broken variant takes that as 'did not run')"));
            var node = JsonNode.Parse(WorkerProtocol.Serialize(new TaskResponse(id, ResponseState.Failure, "broken-variant") { Failure = failure }))!.AsObject();
            node["refused"] = "expired";
            await replies(JsonSerializer.SerializeToUtf8Bytes(node));
        }, TaskScheduler.Default);
    }

    public Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default)
    {
        Task Observe(ReadOnlyMemory<byte> body)
        {
            try
            {
                using var doc = JsonDocument.Parse(body);
                if (doc.RootElement.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String) _started.TryAdd(id.GetString()!, 0);
            }
            catch (JsonException) { }
            return handler(body);
        }
        _replies = Observe;
        return inner.OpenReplyEndpointAsync(Observe, cancellationToken);
    }

    public Task<IAsyncDisposable> ConsumeRequestsAsync(string topic, int prefetch, Func<WorkerDelivery, Task> handler, CancellationToken cancellationToken = default) => inner.ConsumeRequestsAsync(topic, prefetch, handler, cancellationToken);
    public Task SendReplyAsync(string replyTo, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default) => inner.SendReplyAsync(replyTo, body, cancellationToken);
    public Task PublishNotificationAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default) =>
        WorkerSideTransport.TypeOf(body) == "cancel" ? Task.CompletedTask : inner.PublishNotificationAsync(body, cancellationToken);
    public Task<IAsyncDisposable> SubscribeNotificationsAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default) => inner.SubscribeNotificationsAsync(handler, cancellationToken);
    public ValueTask DisposeAsync() => ValueTask.CompletedTask; // the inner transport is the caller's
}
