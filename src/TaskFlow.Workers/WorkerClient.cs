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
/// <remarks>
/// A request's outcome is only ever concluded from what is known. A sent request that no worker has reported RUNNING
/// is "not started yet", never "did not run": it carries a deadline (sent + <see cref="DistributedEngineOptions.RequestTimeout"/>),
/// after which no worker starts it; at the deadline the client withdraws it (a cancel on the notification channel) and
/// it fails as not run only once a worker refuses it, or the deadline plus
/// <see cref="DistributedEngineOptions.ClockSkewMargin"/> has passed. A RUNNING request fails only with its final
/// response or when its worker is presumed lost; one that overruns its execution timeout is asked to cancel, and
/// waited for.
/// </remarks>
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
        var createdAt = _time.GetUtcNow();
        request = request with { ReplyTo = replyTo, Deadline = createdAt + options.RequestTimeout };
        var pending = new Pending(request, WorkerProtocol.Serialize(request), options, context, createdAt);
        if (!_pending.TryAdd(request.Id, pending)) throw new InvalidOperationException($"Request id '{request.Id}' is already in use.");
        using var registration = context.CancellationToken.Register(static state =>
        {
            var (client, p) = ((WorkerClient, Pending))state!;
            if (!p.Done.TrySetCanceled(p.Context.CancellationToken)) return;
            // The run stops waiting; a request not started yet is withdrawn, so that it does not run behind the
            // resumed run's back (a started one goes on, as the docs say: remote tasks are not interrupted).
            if (p.State == RequestState.Pending) client.Withdraw(p);
        }, (this, pending));
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
            case ResponseState.Failure when response.Refused is { } reason:
                // The worker says it did not run the request and never will. Believed only from the worker that took
                // it (or before any did): another worker may have taken over a redelivered copy.
                bool fromOwner;
                lock (p) fromOwner = p.State == RequestState.Pending || p.WorkerId == response.WorkerId;
                if (!fromOwner)
                {
                    WorkerLog.LateResponse(Logger, "refused FAILURE", response.Id, response.WorkerId);
                    break;
                }
                Fail(p, new WorkerLostException($"{Describe(p.Request)}: refused unrun by worker '{response.WorkerId}' ({reason}): {response.Failure!.Message}"));
                break;
            case ResponseState.Success:
            case ResponseState.Failure:
                p.Done.TrySetResult(response);
                break;
        }
        return Task.CompletedTask;
    }

    /// <summary>Withdraws a request: every worker hears it; one holding it unstarted refuses it (and says so).</summary>
    private void Withdraw(Pending p)
    {
        lock (p)
        {
            if (p.WithdrawalSent) return;
            p.WithdrawalSent = true;
        }
        _ = WithdrawAsync(p.Request);
    }

    private async Task WithdrawAsync(TaskRequest request)
    {
        try
        {
            var body = WorkerProtocol.Serialize(new CancelRequest(request.Id) { Deadline = request.Deadline });
            await _transport.PublishNotificationAsync(body).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            WorkerLog.WithdrawalFailed(Logger, e, request.Id);
        }
    }

    private void TryDispatch(Pending p)
    {
        string? topic;
        lock (p)
        {
            if (p.State != RequestState.Waiting || p.Done.Task.IsCompleted) return;
            if (_time.GetUtcNow() >= p.Request.Deadline) return; // too late to send: the sweep fails it, never sent
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
            // The transport drops the request once its deadline has passed (RabbitMQ: the message's expiration).
            var timeToLive = p.Request.Deadline!.Value - _time.GetUtcNow();
            await _transport.SendRequestAsync(topic, p.Body, timeToLive > TimeSpan.Zero ? timeToLive : TimeSpan.FromMilliseconds(1)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // A send that failed may still have been queued (a lost confirmation): the request stays PENDING and is
            // concluded like any unanswered one, by a refusal or once its deadline plus the margin has passed.
            WorkerLog.SendUncertain(Logger, e, p.Request.Id, topic);
            lock (p) p.SendError = e.Message;
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
        var deadline = r.Deadline!.Value;
        switch (state)
        {
            case RequestState.Waiting:
                TryDispatch(p);
                if (p.State == RequestState.Waiting && now >= deadline)
                {
                    var where = p.Options.Topics is { } ts ? $"on topic(s) {string.Join(", ", ts)} " : "";
                    Fail(p, new WorkerTimeoutException($"{Describe(r)}: request timed out after {Seconds(p.Options.RequestTimeout)}: no live worker {where}advertises task '{r.TaskName}'. Start a worker that registers it, or raise DistributedEngineOptions.RequestTimeout."));
                }
                break;
            case RequestState.Pending:
                // Sent, and no worker has said RUNNING: still queued behind busy workers, held by a worker waiting for a
                // slot, or taken by a worker that died before announcing it. Unknown until it can no longer start:
                // withdrawn at its deadline, concluded on a refusal or once the deadline plus the clock-skew margin passed.
                if (now >= deadline) Withdraw(p);
                if (now >= deadline + p.Options.ClockSkewMargin)
                {
                    string? sendError;
                    lock (p) sendError = p.SendError;
                    var cause = sendError is null ? "" : $" (sending it reported: {sendError})";
                    Fail(p, new WorkerLostException($"{Describe(r)}: request timed out after {Seconds(p.Options.RequestTimeout)}: no worker on topic '{p.Topic}' started it before its deadline{cause}, and with the {Seconds(p.Options.ClockSkewMargin)} clock-skew margin past, none can start it any more (the workers may be busy or gone). Add workers, or raise DistributedEngineOptions.RequestTimeout."));
                }
                break;
            case RequestState.Running:
                WorkerInfo? w;
                lock (_gate) _workers.TryGetValue(workerId!, out w);
                var expiry = w is null ? UnknownWorkerExpiry : w.Expiry(p.Options.WorkerExpiry);
                var silence = w is null ? now - runningSince : now - w.LastSeen;
                if (silence > expiry)
                {
                    WorkerLog.WorkerLost(Logger, workerId!, w?.Topic ?? p.Topic ?? "?", silence);
                    Fail(p, new WorkerLostException($"{Describe(r)}: worker '{workerId}' on topic '{w?.Topic ?? p.Topic}' has sent no heartbeat for {Seconds(silence)} (expiry {Seconds(expiry)}) while running it; the worker is presumed lost."));
                }
                else if (p.Options.ExecutionTimeout is { } limit && now - runningSince > limit + SweepInterval * 5 && !p.WithdrawalSent)
                {
                    // The worker cancels the task's token at its timeout itself; this asks again, and waits: while the
                    // worker is alive the task may still be running, and its revert must not start before it ends.
                    Withdraw(p);
                    WorkerLog.RequestUnsettled(Logger, r.Id, r.TaskName, $"{Describe(r)} ran longer than its {Seconds(limit)} execution timeout on worker '{workerId}'; the worker was asked to cancel it, and the engine waits for it to end (or for the worker to be presumed lost) before going on.");
                }
                break;
        }
    }

    private static string Describe(TaskRequest r) =>
        $"Task '{r.TaskName}' (atom '{r.AtomName}', {(r.Action == TaskAction.Execute ? "execute" : "revert")}, request {r.Id})";

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
        public bool WithdrawalSent;
        public string? SendError;
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
