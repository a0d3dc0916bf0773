using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TaskFlow.Atoms;
using TaskFlow.Failures;

namespace TaskFlow.Workers;

/// <summary>
/// Runs tasks for remote engines (TaskFlow's worker server). Register the tasks it runs by name with
/// <see cref="AddTask(string, Func{FlowTask})"/> or <see cref="AddTask{TTask}"/>, then <see cref="StartAsync"/>: the
/// worker takes requests from its topic, runs up to <see cref="TaskWorkerOptions.MaxConcurrency"/> at once, replies
/// RUNNING, progress and the result or failure, and announces itself with heartbeats so engines know it is alive.
/// </summary>
/// <remarks>
/// <para>Tasks are created by the registered factory for each request; nothing named by a message is ever instantiated.
/// A message that is malformed, oversized, of another protocol version or of the wrong shape, or a request whose
/// reply address is outside the protocol's (<c>taskflow.reply.</c>), is logged and rejected (dead-lettered where the
/// transport can); a request for a task the worker does not have is answered with a FAILURE. Neither stops the worker.</para>
/// <para>A request waits unacknowledged for a free slot, so it is delivered again elsewhere if this worker dies then.
/// When it gets a slot, the worker refuses it unrun if its deadline has passed or its engine withdrew it (a FAILURE
/// marked refused); otherwise it acknowledges it, publishes RUNNING and waits for the transport to confirm that, and only
/// then calls the task. So once acknowledged a request runs at most once, and an engine that heard no RUNNING before the
/// deadline (plus its clock-skew margin) knows the task never started.</para>
/// </remarks>
public sealed class TaskWorker : IAsyncDisposable
{
    // How long past a withdrawn request's deadline the worker still remembers the withdrawal (clocks may differ).
    private static readonly TimeSpan WithdrawalMemory = TimeSpan.FromMinutes(10);
    private const int MaxWithdrawals = 100_000;
    // A final reply that cannot be sent (the broker is reconnecting) is tried again for this long.
    private static readonly TimeSpan FinalReplyPersistence = TimeSpan.FromSeconds(30);

    private readonly IWorkerTransport _transport;
    private readonly TaskWorkerOptions _options;
    private readonly ILogger _logger;
    private readonly Dictionary<string, Func<FlowTask>> _tasks = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _slots;
    private readonly ConcurrentDictionary<Task, byte> _running = new();
    private readonly ConcurrentDictionary<string, Held> _held = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Started> _started = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _withdrawn = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _intake = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private IAsyncDisposable? _consumer;
    private IAsyncDisposable? _subscription;
    private Task? _heartbeats;
    private int _state; // 0 new, 1 started, 2 stopped
    private long _completed;
    private long _refused;

    /// <summary>Creates a worker that talks through <paramref name="transport"/> (which it does not dispose).</summary>
    public TaskWorker(IWorkerTransport transport, TaskWorkerOptions? options = null, ILogger<TaskWorker>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        _transport = transport;
        _options = options ?? new TaskWorkerOptions();
        _options.Validate();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _slots = new SemaphoreSlim(_options.MaxConcurrency, _options.MaxConcurrency);
    }

    /// <summary>The worker's id.</summary>
    public string WorkerId => _options.WorkerId;

    /// <summary>The topic it consumes.</summary>
    public string Topic => _options.Topic;

    /// <summary>The names of the tasks it runs.</summary>
    public IReadOnlyCollection<string> TaskNames
    {
        get { lock (_gate) return [.. _tasks.Keys]; }
    }

    /// <summary>How many requests this worker has finished: ran (replied SUCCESS or FAILURE), or answered for a task it does not have.</summary>
    public long CompletedRequests => Interlocked.Read(ref _completed);

    /// <summary>How many requests this worker refused without running them: expired, withdrawn by their engine, or not announced.</summary>
    public long RefusedRequests => Interlocked.Read(ref _refused);

    /// <summary>
    /// Registers a task under <paramref name="name"/>: each request for that name runs a task from
    /// <paramref name="factory"/> (return a shared instance to reuse one). Engines send a task's name as chosen by
    /// <see cref="DistributedEngineOptions.TaskName"/> (by default the task's type full name).
    /// </summary>
    /// <exception cref="InvalidOperationException">The worker has started, or the name is taken.</exception>
    public TaskWorker AddTask(string name, Func<FlowTask> factory)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(factory);
        lock (_gate)
        {
            if (_state != 0) throw new InvalidOperationException($"Worker '{WorkerId}' has started; add task '{name}' before StartAsync.");
            if (!_tasks.TryAdd(name, factory)) throw new InvalidOperationException($"Worker '{WorkerId}' already has a task named '{name}'.");
        }
        return this;
    }

    /// <summary>Registers <typeparamref name="TTask"/> under its type's full name (the engines' default task name), created fresh per request.</summary>
    public TaskWorker AddTask<TTask>() where TTask : FlowTask, new() =>
        AddTask(typeof(TTask).FullName ?? typeof(TTask).Name, static () => new TTask());

    /// <summary>Starts taking requests and sending heartbeats.</summary>
    /// <exception cref="InvalidOperationException">The worker has no tasks, or was already started.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_state != 0) throw new InvalidOperationException($"Worker '{WorkerId}' was already started.");
            if (_tasks.Count == 0) throw new InvalidOperationException($"Worker '{WorkerId}' has no tasks; add some with AddTask before StartAsync.");
            _state = 1;
        }
        _subscription = await _transport.SubscribeNotificationsAsync(OnNotificationAsync, cancellationToken).ConfigureAwait(false);
        _consumer = await _transport.ConsumeRequestsAsync(_options.Topic, _options.MaxConcurrency, OnDeliveryAsync, cancellationToken).ConfigureAwait(false);
        await SendHeartbeatAsync(leaving: false).ConfigureAwait(false);
        _heartbeats = HeartbeatLoopAsync(_stopping.Token);
        WorkerLog.Started(_logger, WorkerId, Topic, _tasks.Count, _options.MaxConcurrency);
    }

    /// <summary>
    /// Stops taking requests, waits for the running ones to finish (or until <paramref name="cancellationToken"/> is
    /// cancelled, which cancels them), and tells engines it is leaving.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_state != 1) { _state = 2; return; }
            _state = 2;
        }
        // Requests still waiting for a slot are let go unsettled, so that closing the consumer returns them to the topic.
        await _intake.CancelAsync().ConfigureAwait(false);
        if (_consumer is not null) await _consumer.DisposeAsync().ConfigureAwait(false);
        using (cancellationToken.Register(static s => ((CancellationTokenSource)s!).Cancel(), _stopping))
        {
            try { await Task.WhenAll(_running.Keys).WaitAsync(cancellationToken).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_heartbeats is not null) await _heartbeats.ConfigureAwait(false);
        await SendHeartbeatAsync(leaving: true).ConfigureAwait(false);
        if (_subscription is not null) await _subscription.DisposeAsync().ConfigureAwait(false);
        WorkerLog.Stopped(_logger, WorkerId);
    }

    /// <summary>Stops the worker (see <see cref="StopAsync"/>).</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
        _intake.Dispose();
    }

    private Task OnDeliveryAsync(WorkerDelivery delivery)
    {
        TaskRequest request;
        try
        {
            var message = WorkerProtocol.Parse(delivery.Body.Span, _options.MaxMessageBytes);
            request = message as TaskRequest ?? throw new WorkerProtocolException($"Expected a request on topic '{Topic}', got a {message.GetType().Name}.");
        }
        catch (WorkerProtocolException e)
        {
            WorkerLog.RejectedRequest(_logger, WorkerId, Topic, e.Message);
            return TrySettleAsync(delivery, reject: true, "the rejection", "?");
        }
        if (!WorkerProtocol.IsReplyAddress(request.ReplyTo))
        {
            // Replying would publish into a queue the sender chose: refuse, and never run it.
            WorkerLog.RejectedRequest(_logger, WorkerId, Topic,
                $"Request '{request.Id}' names reply address '{Truncate(request.ReplyTo)}', which is not under the protocol's '{WorkerProtocol.ReplyAddressPrefix}'; it is refused unrun and not answered.");
            return TrySettleAsync(delivery, reject: true, "the rejection", request.Id);
        }
        if (_intake.IsCancellationRequested) return Task.CompletedTask; // stopping: closing the consumer requeues it
        var held = new Held(request, delivery);
        if (!_held.TryAdd(request.Id, held))
        {
            WorkerLog.RejectedRequest(_logger, WorkerId, Topic, $"Request '{request.Id}' was delivered again while this worker holds it; the copy is refused.");
            return TrySettleAsync(delivery, reject: true, "the rejection", request.Id);
        }
        // Not awaited, and off the transport's thread (a task may block it): the transport goes on delivering (up to the
        // prefetch) while this one waits for a slot, so every request waiting here can be refused the moment it expires
        // or is withdrawn.
        var run = Task.Run(() => StartWhenFreeAsync(held));
        _running.TryAdd(run, 0);
        _ = run.ContinueWith(t => _running.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return Task.CompletedTask;
    }

    private async Task StartWhenFreeAsync(Held held)
    {
        var request = held.Request;
        string? refusal = RefusalOf(request);
        bool slot = false;
        try
        {
            if (refusal is null)
            {
                using var expiry = request.Deadline is { } deadline
                    ? new CancellationTokenSource(Max(deadline - _options.TimeProvider.GetUtcNow(), TimeSpan.Zero), _options.TimeProvider)
                    : new CancellationTokenSource();
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(_intake.Token, held.Withdrawal.Token, expiry.Token);
                try
                {
                    await _slots.WaitAsync(wait.Token).ConfigureAwait(false);
                    slot = true;
                }
                catch (OperationCanceledException)
                {
                    if (_intake.IsCancellationRequested) return; // unsettled: it goes back to the topic
                    refusal = held.Withdrawal.IsCancellationRequested ? Refusals.Withdrawn : Refusals.Expired;
                }
            }
        }
        finally
        {
            _held.TryRemove(KeyValuePair.Create(request.Id, held));
            held.Withdrawal.Dispose();
        }
        try
        {
            // Checked again with the slot in hand: the deadline may have passed, or a withdrawal arrived, meanwhile.
            refusal ??= RefusalOf(request);
            if (refusal is not null)
            {
                if (await TrySettleAsync(held.Delivery, reject: false, "the acknowledgement", request.Id).ConfigureAwait(false))
                    await RefuseAsync(request, refusal).ConfigureAwait(false);
                return;
            }
            if (_intake.IsCancellationRequested) return;
            await ProcessAsync(request, held.Delivery).ConfigureAwait(false);
        }
        finally
        {
            if (slot) _slots.Release();
        }
    }

    // Why a request must not start now, or null when it may.
    private string? RefusalOf(TaskRequest request)
    {
        if (_withdrawn.ContainsKey(request.Id)) return Refusals.Withdrawn;
        if (request.Deadline is { } deadline && _options.TimeProvider.GetUtcNow() >= deadline) return Refusals.Expired;
        return null;
    }

    private async Task RefuseAsync(TaskRequest request, string reason)
    {
        var why = reason switch
        {
            Refusals.Expired => $"its deadline {request.Deadline:O} had passed by this worker's clock",
            Refusals.Withdrawn => "its engine withdrew it",
            _ => "its RUNNING could not be sent",
        };
        var action = request.Action == TaskAction.Execute ? "execute" : "revert";
        var failure = Failure.FromException(new WorkerTimeoutException(
            $"Worker '{WorkerId}' refused request {request.Id} ({action} of task '{request.TaskName}', atom '{request.AtomName}') without running it: {why}."));
        WorkerLog.Refused(_logger, WorkerId, request.Id, request.TaskName, reason);
        Interlocked.Increment(ref _refused);
        await SendAsync(request, new TaskResponse(request.Id, ResponseState.Failure, WorkerId) { Failure = failure, Refused = reason }, "the refusal").ConfigureAwait(false);
    }

    private async Task ProcessAsync(TaskRequest request, WorkerDelivery delivery)
    {
        if (!await TrySettleAsync(delivery, reject: false, "the acknowledgement", request.Id).ConfigureAwait(false)) return;

        Func<FlowTask>? factory;
        lock (_gate) _tasks.TryGetValue(request.TaskName, out factory);
        if (factory is null)
        {
            // The engine is told only that the task is missing: what this worker hosts is logged here, not sent away.
            WorkerLog.UnknownTask(_logger, WorkerId, request.TaskName, request.Id);
            var failure = Failure.FromException(new NotFoundException(
                $"Worker '{WorkerId}' on topic '{Topic}' has no task named '{request.TaskName}' (atom '{request.AtomName}')."));
            await SendAsync(request, new TaskResponse(request.Id, ResponseState.Failure, WorkerId) { Failure = failure }, "FAILURE").ConfigureAwait(false);
            Interlocked.Increment(ref _completed);
            return;
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        var started = new Started(cts);
        _started[request.Id] = started;
        try
        {
            // RUNNING is confirmed before any of the task's code runs: an engine that has not heard it may rely on the
            // task not having started. A worker that cannot announce the start does not start.
            if (!await SendAsync(request, new TaskResponse(request.Id, ResponseState.Running, WorkerId), "RUNNING").ConfigureAwait(false))
            {
                await RefuseAsync(request, Refusals.NotAnnounced).ConfigureAwait(false);
                return;
            }
            // Announced too late (the confirmation took past the deadline, or the request was withdrawn meanwhile): the
            // engine may already have given up on it, so it is refused; an engine still waiting takes the refusal.
            if (RefusalOf(request) is { } late)
            {
                await RefuseAsync(request, late).ConfigureAwait(false);
                return;
            }
            await RunAsync(request, factory, cts, started).ConfigureAwait(false);
        }
        finally
        {
            _started.TryRemove(KeyValuePair.Create(request.Id, started));
        }
    }

    private async Task RunAsync(TaskRequest request, Func<FlowTask> factory, CancellationTokenSource cts, Started started)
    {
        var progress = new ProgressSender(this, request);
        WorkerLog.Running(_logger, WorkerId, request.Action, request.TaskName, request.AtomName, request.Id);
        TaskResponse final;
        if (request.Timeout is { } timeout) cts.CancelAfter(timeout);
        try
        {
            var task = factory();
            var arguments = TaskArguments.Create(request.AtomName, request.Arguments.Select(a => KeyValuePair.Create(a.Key, WorkerProtocol.ToValue(a.Value))));
            var context = TaskContext.Create(request.AtomName, cts.Token, progress.Report);
            object? result = request.Action == TaskAction.Execute
                ? await task.ExecuteAsync(arguments, context).ConfigureAwait(false)
                : await task.RevertAsync(arguments,
                    request.ResultFailure is { } rf ? TaskOutcome.FromFailure(rf) : TaskOutcome.FromValue(WorkerProtocol.ToValue(request.Result)),
                    request.FlowFailures, context).ConfigureAwait(false);
            final = new TaskResponse(request.Id, ResponseState.Success, WorkerId) { Result = WorkerProtocol.ToJson(result, $"The result of task '{request.TaskName}'") };
        }
        catch (Exception e)
        {
            if (e is OperationCanceledException && cts.IsCancellationRequested && !_stopping.IsCancellationRequested)
            {
                if (started.CancelledByEngine)
                    e = new WorkerTimeoutException($"Task '{request.TaskName}' (atom '{request.AtomName}') was cancelled by worker '{WorkerId}' at its engine's request.");
                else if (request.Timeout is { } t)
                    e = new WorkerTimeoutException($"Task '{request.TaskName}' (atom '{request.AtomName}') was cancelled by worker '{WorkerId}' after running longer than its {t.TotalSeconds:0.###} s timeout.");
            }
            final = new TaskResponse(request.Id, ResponseState.Failure, WorkerId) { Failure = Failure.FromException(e) };
        }
        await progress.DrainAsync().ConfigureAwait(false);
        await SendFinalAsync(request, final).ConfigureAwait(false);
        Interlocked.Increment(ref _completed);
    }

    // The final reply is what tells the engine the task has ended: a failed send (a broker reconnecting) is retried.
    private async Task SendFinalAsync(TaskRequest request, TaskResponse final)
    {
        var what = final.State == ResponseState.Success ? "SUCCESS" : "FAILURE";
        var giveUp = _options.TimeProvider.GetUtcNow() + FinalReplyPersistence;
        var pause = TimeSpan.FromMilliseconds(100);
        while (await TrySendAsync(request, final, what).ConfigureAwait(false) is { } error)
        {
            // A closed transport will not come back, and a stopping worker does not linger.
            if (error is ObjectDisposedException || Volatile.Read(ref _state) != 1 || _options.TimeProvider.GetUtcNow() + pause > giveUp) return;
            try { await Task.Delay(pause, _options.TimeProvider, _stopping.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            pause = Min(pause * 2, TimeSpan.FromSeconds(5));
        }
    }

    private async Task<bool> TrySettleAsync(WorkerDelivery delivery, bool reject, string what, string requestId)
    {
        try
        {
            if (reject) await delivery.RejectAsync().ConfigureAwait(false);
            else await delivery.AcknowledgeAsync().ConfigureAwait(false);
            return true;
        }
        catch (Exception e)
        {
            WorkerLog.SendFailed(_logger, e, WorkerId, what, requestId);
            return false;
        }
    }

    private void OnWithdrawal(CancelRequest cancel)
    {
        var now = _options.TimeProvider.GetUtcNow();
        var deadline = cancel.Deadline is { } d && d > now ? d : now;
        if (_withdrawn.Count >= MaxWithdrawals) ForgetWithdrawals(now, all: true);
        _withdrawn[cancel.Id] = deadline + WithdrawalMemory;
        if (_held.TryGetValue(cancel.Id, out var held)) held.Withdraw();
        if (_started.TryGetValue(cancel.Id, out var started)) started.CancelAtEnginesRequest();
    }

    private void ForgetWithdrawals(DateTimeOffset now, bool all = false)
    {
        foreach (var (id, until) in _withdrawn)
            if (all || until <= now) _withdrawn.TryRemove(KeyValuePair.Create(id, until));
    }

    private async Task<bool> SendAsync(TaskRequest request, TaskResponse response, string what) =>
        await TrySendAsync(request, response, what).ConfigureAwait(false) is null;

    // Null when sent, else what went wrong (logged).
    private async Task<Exception?> TrySendAsync(TaskRequest request, TaskResponse response, string what)
    {
        try
        {
            byte[] body;
            try { body = WorkerProtocol.Serialize(response); }
            catch (ArgumentException) when (response.State == ResponseState.Failure)
            {
                // A failure that cannot be written (a cause chain too deep) still has to reach the engine.
                body = WorkerProtocol.Serialize(response with { Failure = new Failure(response.Failure!.ExceptionTypeNames, response.Failure.Message) });
            }
            await _transport.SendReplyAsync(request.ReplyTo, body).ConfigureAwait(false);
            return null;
        }
        catch (Exception e)
        {
            WorkerLog.SendFailed(_logger, e, WorkerId, what, request.Id);
            return e;
        }
    }

    private async Task OnNotificationAsync(ReadOnlyMemory<byte> body)
    {
        WorkerMessage message;
        try { message = WorkerProtocol.Parse(body.Span, _options.MaxMessageBytes); }
        catch (WorkerProtocolException e)
        {
            WorkerLog.RejectedRequest(_logger, WorkerId, "(notifications)", e.Message);
            return;
        }
        if (message is CancelRequest cancel) OnWithdrawal(cancel);
        else if (message is DiscoveryRequest && Volatile.Read(ref _state) == 1) await SendHeartbeatAsync(leaving: false).ConfigureAwait(false);
        else if (message is not WorkerNotification) WorkerLog.IgnoredNotification(_logger, WorkerId, message.GetType().Name);
    }

    private async Task HeartbeatLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval, _options.TimeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                await SendHeartbeatAsync(leaving: false).ConfigureAwait(false);
                ForgetWithdrawals(_options.TimeProvider.GetUtcNow());
            }
        }
        catch (OperationCanceledException) { }
    }

    private async Task SendHeartbeatAsync(bool leaving)
    {
        try
        {
            var body = WorkerProtocol.Serialize(new WorkerNotification(WorkerId, Topic, [.. TaskNames], _options.HeartbeatInterval) { Leaving = leaving });
            await _transport.PublishNotificationAsync(body).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            WorkerLog.HeartbeatFailed(_logger, e, WorkerId);
        }
    }

    /// <summary>Sends a request's progress reports in order, without making the task wait for the transport.</summary>
    private sealed class ProgressSender(TaskWorker worker, TaskRequest request)
    {
        private readonly Lock _gate = new();
        private Task _last = Task.CompletedTask;

        public void Report(double progress, object? details)
        {
            JsonElement? json;
            try { json = details is null ? null : WorkerProtocol.ToJson(details, $"The progress details of task '{request.TaskName}'"); }
            catch (ArgumentException) { json = null; }
            var response = new TaskResponse(request.Id, ResponseState.Progress, worker.WorkerId) { Progress = progress, Details = json };
            lock (_gate) _last = _last.ContinueWith(_ => worker.SendAsync(request, response, "PROGRESS"), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
        }

        public Task DrainAsync()
        {
            lock (_gate) return _last;
        }
    }

    /// <summary>A delivered request waiting for a slot, unacknowledged.</summary>
    private sealed class Held(TaskRequest request, WorkerDelivery delivery)
    {
        public TaskRequest Request { get; } = request;
        public WorkerDelivery Delivery { get; } = delivery;
        public CancellationTokenSource Withdrawal { get; } = new();

        public void Withdraw()
        {
            try { Withdrawal.Cancel(); }
            catch (ObjectDisposedException) { }
        }
    }

    /// <summary>An acknowledged request: its task's cancellation, which a withdrawal from its engine triggers.</summary>
    private sealed class Started(CancellationTokenSource cancellation)
    {
        private int _cancelled;

        public bool CancelledByEngine => Volatile.Read(ref _cancelled) == 1;

        public void CancelAtEnginesRequest()
        {
            Interlocked.Exchange(ref _cancelled, 1);
            try { cancellation.Cancel(); }
            catch (ObjectDisposedException) { }
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";
}
