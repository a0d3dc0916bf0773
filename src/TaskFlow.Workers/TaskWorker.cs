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
/// Tasks are created by the registered factory for each request; nothing named by a message is ever instantiated.
/// A message that is malformed, oversized, of another protocol version or of the wrong shape is logged and dropped;
/// a request for a task the worker does not have is answered with a FAILURE. Neither stops the worker.
/// A request is acknowledged when it starts, so a worker that dies while running it does not get it run again
/// elsewhere: the engine notices the missing heartbeats and fails (then reverts or retries) the task.
/// </remarks>
public sealed class TaskWorker : IAsyncDisposable
{
    private readonly IWorkerTransport _transport;
    private readonly TaskWorkerOptions _options;
    private readonly ILogger _logger;
    private readonly Dictionary<string, Func<FlowTask>> _tasks = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _slots;
    private readonly ConcurrentDictionary<Task, byte> _running = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private IAsyncDisposable? _consumer;
    private IAsyncDisposable? _subscription;
    private Task? _heartbeats;
    private int _state; // 0 new, 1 started, 2 stopped
    private long _completed;

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

    /// <summary>How many requests this worker has finished (replied SUCCESS or FAILURE to).</summary>
    public long CompletedRequests => Interlocked.Read(ref _completed);

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
    }

    private async Task OnDeliveryAsync(WorkerDelivery delivery)
    {
        // The delivery stays unacknowledged while it waits for a slot, so it is redelivered if this worker dies now.
        try { await _slots.WaitAsync(_stopping.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { return; }
        var run = Task.Run(() => ProcessAsync(delivery));
        _running.TryAdd(run, 0);
        _ = run.ContinueWith(t => { _running.TryRemove(t, out _); _slots.Release(); }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task ProcessAsync(WorkerDelivery delivery)
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
            await TryAcknowledgeAsync(delivery, "the rejection", "?").ConfigureAwait(false);
            return;
        }
        if (!await TryAcknowledgeAsync(delivery, "the acknowledgement", request.Id).ConfigureAwait(false)) return;

        Func<FlowTask>? factory;
        lock (_gate) _tasks.TryGetValue(request.TaskName, out factory);
        if (factory is null)
        {
            WorkerLog.UnknownTask(_logger, WorkerId, request.TaskName, request.Id);
            var names = string.Join(", ", TaskNames.Order(StringComparer.Ordinal));
            var failure = Failure.FromException(new NotFoundException(
                $"Worker '{WorkerId}' on topic '{Topic}' has no task named '{request.TaskName}' (atom '{request.AtomName}'); it runs: {names}."));
            await SendAsync(request, new TaskResponse(request.Id, ResponseState.Failure, WorkerId) { Failure = failure }, "FAILURE").ConfigureAwait(false);
            Interlocked.Increment(ref _completed);
            return;
        }

        // RUNNING goes out while the task starts (not before): the progress and final replies queue behind it.
        var progress = new ProgressSender(this, request, SendAsync(request, new TaskResponse(request.Id, ResponseState.Running, WorkerId), "RUNNING"));
        WorkerLog.Running(_logger, WorkerId, request.Action, request.TaskName, request.AtomName, request.Id);
        TaskResponse final;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token))
        {
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
                if (e is OperationCanceledException && cts.IsCancellationRequested && !_stopping.IsCancellationRequested && request.Timeout is { } t)
                    e = new WorkerTimeoutException($"Task '{request.TaskName}' (atom '{request.AtomName}') was cancelled by worker '{WorkerId}' after running longer than its {t.TotalSeconds:0.###} s timeout.");
                final = new TaskResponse(request.Id, ResponseState.Failure, WorkerId) { Failure = Failure.FromException(e) };
            }
        }
        await progress.DrainAsync().ConfigureAwait(false);
        await SendAsync(request, final, final.State == ResponseState.Success ? "SUCCESS" : "FAILURE").ConfigureAwait(false);
        Interlocked.Increment(ref _completed);
    }

    private async Task<bool> TryAcknowledgeAsync(WorkerDelivery delivery, string what, string requestId)
    {
        try
        {
            await delivery.AcknowledgeAsync().ConfigureAwait(false);
            return true;
        }
        catch (Exception e)
        {
            WorkerLog.SendFailed(_logger, e, WorkerId, what, requestId);
            return false;
        }
    }

    private async Task SendAsync(TaskRequest request, TaskResponse response, string what)
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
        }
        catch (Exception e)
        {
            WorkerLog.SendFailed(_logger, e, WorkerId, what, request.Id);
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
        if (message is DiscoveryRequest && Volatile.Read(ref _state) == 1) await SendHeartbeatAsync(leaving: false).ConfigureAwait(false);
        else if (message is not WorkerNotification) WorkerLog.IgnoredNotification(_logger, WorkerId, message.GetType().Name);
    }

    private async Task HeartbeatLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval, _options.TimeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
                await SendHeartbeatAsync(leaving: false).ConfigureAwait(false);
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
    private sealed class ProgressSender(TaskWorker worker, TaskRequest request, Task first)
    {
        private readonly Lock _gate = new();
        private Task _last = first;

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
}
