using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TaskFlow.Atoms;
using TaskFlow.Failures;

namespace TaskFlow.Workers;

/// <summary>
/// The engine side of one transport, shared by every executor on it: one reply address, the directory of live workers
/// (from their heartbeats) and the table of outstanding requests, with a sweep that dispatches waiting requests and
/// expires overdue ones. Requests move WAITING (no live worker yet) → PENDING (sent) → RUNNING (a worker accepted it)
/// → finished; only the first final response counts.
/// </summary>
internal sealed class WorkerClient
{
    private static readonly ConditionalWeakTable<IWorkerTransport, WorkerClient> Clients = [];
    private static readonly TimeSpan SweepInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan UnknownWorkerExpiry = TimeSpan.FromSeconds(15);

    private readonly IWorkerTransport _transport;
    private readonly TimeProvider _time;
    private readonly int _maxMessageBytes;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, WorkerInfo> _workers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Pending> _pending = new(StringComparer.Ordinal);
    private Task<string>? _started;
    private bool _sweeping;

    private WorkerClient(IWorkerTransport transport, DistributedEngineOptions options)
    {
        _transport = transport;
        _time = options.Engine?.TimeProvider ?? TimeProvider.System;
        _maxMessageBytes = options.MaxMessageBytes;
        Logger = options.Logger ?? NullLogger.Instance;
    }

    public ILogger Logger { get; }

    /// <summary>The client of <paramref name="transport"/> (created by the first executor on it, whose logger and limits it keeps).</summary>
    public static WorkerClient For(IWorkerTransport transport, DistributedEngineOptions options) =>
        Clients.GetValue(transport, t => new WorkerClient(t, options));

    /// <summary>Sends a request and waits for its final response (a FAILURE response is returned, not thrown).</summary>
    public async Task<TaskResponse> SendAsync(TaskRequest request, DistributedEngineOptions options, TaskContext context)
    {
        var replyTo = await EnsureStartedAsync().ConfigureAwait(false);
        request = request with { ReplyTo = replyTo };
        var pending = new Pending(request, WorkerProtocol.Serialize(request), options, context, _time.GetUtcNow());
        if (!_pending.TryAdd(request.Id, pending)) throw new InvalidOperationException($"Request id '{request.Id}' is already in use.");
        using var registration = context.CancellationToken.Register(static p => ((Pending)p!).Done.TrySetCanceled(((Pending)p).Context.CancellationToken), pending);
        try
        {
            StartSweep();
            TryDispatch(pending);
            return await pending.Done.Task.ConfigureAwait(false);
        }
        finally
        {
            _pending.TryRemove(request.Id, out _);
        }
    }

    private Task<string> EnsureStartedAsync()
    {
        lock (_gate)
        {
            if (_started is null || _started.IsFaulted || _started.IsCanceled) _started = StartAsync();
            return _started;
        }
    }

    private async Task<string> StartAsync()
    {
        var endpoint = await _transport.OpenReplyEndpointAsync(OnReplyAsync).ConfigureAwait(false);
        await _transport.SubscribeNotificationsAsync(OnNotificationAsync).ConfigureAwait(false);
        try { await _transport.PublishNotificationAsync(WorkerProtocol.Serialize(new DiscoveryRequest())).ConfigureAwait(false); }
        catch (Exception e) { WorkerLog.DiscoveryFailed(Logger, e); }
        return endpoint.Address;
    }

    private Task OnNotificationAsync(ReadOnlyMemory<byte> body)
    {
        WorkerMessage message;
        try { message = WorkerProtocol.Parse(body.Span, _maxMessageBytes); }
        catch (WorkerProtocolException e)
        {
            WorkerLog.EngineRejected(Logger, "notification: " + e.Message);
            return Task.CompletedTask;
        }
        if (message is not WorkerNotification n) return Task.CompletedTask; // discovery requests from other engines
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            if (!_workers.TryGetValue(n.WorkerId, out var w)) _workers[n.WorkerId] = w = new WorkerInfo(n.WorkerId);
            w.Topic = n.Topic;
            w.Tasks = new HashSet<string>(n.Tasks, StringComparer.Ordinal);
            w.HeartbeatInterval = n.HeartbeatInterval;
            w.LastSeen = now;
            w.Leaving = n.Leaving;
        }
        if (!n.Leaving) foreach (var p in _pending.Values) if (p.State == RequestState.Waiting) TryDispatch(p);
        return Task.CompletedTask;
    }

    private Task OnReplyAsync(ReadOnlyMemory<byte> body)
    {
        TaskResponse response;
        try
        {
            var message = WorkerProtocol.Parse(body.Span, _maxMessageBytes);
            response = message as TaskResponse ?? throw new WorkerProtocolException($"Expected a response on the reply address, got a {message.GetType().Name}.");
        }
        catch (WorkerProtocolException e)
        {
            WorkerLog.EngineRejected(Logger, e.Message);
            return Task.CompletedTask;
        }
        if (!_pending.TryGetValue(response.Id, out var p) || p.Done.Task.IsCompleted)
        {
            WorkerLog.LateResponse(Logger, WorkerProtocol.StateName(response.State), response.Id, response.WorkerId);
            return Task.CompletedTask;
        }
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            // A response is a sign of life; a worker not heard from yet (its heartbeat still on the way) gets an entry.
            if (!_workers.TryGetValue(response.WorkerId, out var w))
                _workers[response.WorkerId] = w = new WorkerInfo(response.WorkerId) { Topic = p.Topic ?? "?", HeartbeatInterval = UnknownWorkerExpiry / 3 };
            w.LastSeen = now;
        }
        switch (response.State)
        {
            case ResponseState.Running:
            case ResponseState.Progress:
                lock (p)
                {
                    if (p.State != RequestState.Running || p.WorkerId != response.WorkerId)
                    {
                        // A redelivered request may be taken over by another worker: follow the latest.
                        p.State = RequestState.Running;
                        p.WorkerId = response.WorkerId;
                        p.RunningSince = now;
                    }
                }
                if (response.State == ResponseState.Progress)
                {
                    try { p.Context.ReportProgress(response.Progress, WorkerProtocol.ToValue(response.Details)); }
                    catch (Exception e) { WorkerLog.EngineRejected(Logger, $"progress of request {response.Id} could not be reported: {e.Message}"); }
                }
                break;
            case ResponseState.Success:
            case ResponseState.Failure:
                p.Done.TrySetResult(response);
                break;
        }
        return Task.CompletedTask;
    }

    private void TryDispatch(Pending p)
    {
        string? topic;
        lock (p)
        {
            if (p.State != RequestState.Waiting || p.Done.Task.IsCompleted) return;
            topic = ChooseTopic(p);
            if (topic is null) return;
            p.State = RequestState.Pending;
            p.Topic = topic;
        }
        _ = SendRequestAsync(p, topic);
    }

    private async Task SendRequestAsync(Pending p, string topic)
    {
        try
        {
            await _transport.SendRequestAsync(topic, p.Body).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            p.Done.TrySetException(new WorkerTimeoutException(
                $"Task '{p.Request.TaskName}' (atom '{p.Request.AtomName}') could not be sent to topic '{topic}': {e.Message}"));
        }
    }

    private string? ChooseTopic(Pending p)
    {
        var now = _time.GetUtcNow();
        var topics = p.Options.Topics;
        List<WorkerInfo> candidates = [];
        lock (_gate)
        {
            foreach (var w in _workers.Values)
                if (!w.Leaving && w.IsLive(now, p.Options.WorkerExpiry) && w.Tasks.Contains(p.Request.TaskName) && (topics is null || topics.Contains(w.Topic)))
                    candidates.Add(w);
        }
        // One worker at random, weighting each topic by its number of live workers.
        return candidates.Count == 0 ? null : candidates[Random.Shared.Next(candidates.Count)].Topic;
    }

    private void StartSweep()
    {
        lock (_gate)
        {
            if (_sweeping) return;
            _sweeping = true;
        }
        _ = Task.Run(SweepAsync);
    }

    private async Task SweepAsync()
    {
        using var timer = new PeriodicTimer(SweepInterval, _time);
        while (true)
        {
            await timer.WaitForNextTickAsync().ConfigureAwait(false);
            lock (_gate)
            {
                if (_pending.IsEmpty)
                {
                    _sweeping = false;
                    return;
                }
            }
            foreach (var p in _pending.Values)
            {
                try { Sweep(p); }
                catch (Exception e) { p.Done.TrySetException(e); }
            }
        }
    }

    private void Sweep(Pending p)
    {
        if (p.Done.Task.IsCompleted) return;
        var now = _time.GetUtcNow();
        RequestState state;
        string? workerId;
        DateTimeOffset runningSince;
        lock (p)
        {
            state = p.State;
            workerId = p.WorkerId;
            runningSince = p.RunningSince;
        }
        var r = p.Request;
        string task = $"Task '{r.TaskName}' (atom '{r.AtomName}', {(r.Action == TaskAction.Execute ? "execute" : "revert")}, request {r.Id})";
        switch (state)
        {
            case RequestState.Waiting:
                TryDispatch(p);
                if (p.State == RequestState.Waiting && now - p.CreatedAt > p.Options.RequestTimeout)
                {
                    var where = p.Options.Topics is { } ts ? $"on topic(s) {string.Join(", ", ts)} " : "";
                    Fail(p, new WorkerTimeoutException($"{task}: request timed out after {Seconds(p.Options.RequestTimeout)}: no live worker {where}advertises task '{r.TaskName}'. Start a worker that registers it, or raise DistributedEngineOptions.RequestTimeout."));
                }
                break;
            case RequestState.Pending:
                // Sent but never accepted: still queued behind busy workers, or taken by a worker that died before its
                // RUNNING got out. Either way it did not run here; a revert may be sent again, an execute fails.
                if (now - p.CreatedAt > p.Options.RequestTimeout)
                    Fail(p, new WorkerLostException($"{task}: request timed out after {Seconds(p.Options.RequestTimeout)}: no worker on topic '{p.Topic}' accepted it (they may be busy or gone). Add workers, or raise DistributedEngineOptions.RequestTimeout."));
                break;
            case RequestState.Running:
                WorkerInfo? w;
                lock (_gate) _workers.TryGetValue(workerId!, out w);
                var expiry = w is null ? UnknownWorkerExpiry : w.Expiry(p.Options.WorkerExpiry);
                var silence = w is null ? now - runningSince : now - w.LastSeen;
                if (silence > expiry)
                {
                    WorkerLog.WorkerLost(Logger, workerId!, w?.Topic ?? p.Topic ?? "?", silence);
                    Fail(p, new WorkerLostException($"{task}: worker '{workerId}' on topic '{w?.Topic ?? p.Topic}' has sent no heartbeat for {Seconds(silence)} (expiry {Seconds(expiry)}) while running it; the worker is presumed lost."));
                }
                else if (p.Options.ExecutionTimeout is { } limit && now - runningSince > limit + SweepInterval * 5)
                {
                    Fail(p, new WorkerTimeoutException($"{task}: ran longer than its {Seconds(limit)} execution timeout on worker '{workerId}'."));
                }
                break;
        }
    }

    private void Fail(Pending p, Exception e)
    {
        if (p.Done.TrySetException(e)) WorkerLog.RequestFailed(Logger, p.Request.Id, p.Request.TaskName, e.Message);
    }

    private static string Seconds(TimeSpan t) => $"{t.TotalSeconds:0.###} s";

    private enum RequestState { Waiting, Pending, Running }

    private sealed class Pending(TaskRequest request, byte[] body, DistributedEngineOptions options, TaskContext context, DateTimeOffset createdAt)
    {
        public TaskRequest Request { get; } = request;
        public byte[] Body { get; } = body;
        public DistributedEngineOptions Options { get; } = options;
        public TaskContext Context { get; } = context;
        public DateTimeOffset CreatedAt { get; } = createdAt;
        public TaskCompletionSource<TaskResponse> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public RequestState State;
        public string? Topic;
        public string? WorkerId;
        public DateTimeOffset RunningSince;
    }

    private sealed class WorkerInfo(string id)
    {
        public string Id { get; } = id;
        public string Topic = "";
        public HashSet<string> Tasks = [];
        public TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(5);
        public DateTimeOffset LastSeen;
        public bool Leaving;

        public TimeSpan Expiry(TimeSpan? configured) => configured ?? HeartbeatInterval * 3;

        public bool IsLive(DateTimeOffset now, TimeSpan? configured) => now - LastSeen <= Expiry(configured);
    }
}
