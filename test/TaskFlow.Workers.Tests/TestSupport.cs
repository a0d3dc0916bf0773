using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;

namespace TaskFlow.Workers.Tests;

/// <summary>Polls a condition until it holds, failing with what was awaited after a generous limit.</summary>
public static class Eventually
{
    public static async Task WaitUntilAsync(Func<bool> condition, string what, int seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Timed out waiting until {what}.");
            await Task.Delay(20);
        }
    }
}

/// <summary>Collects log entries so tests can check that a rejection was logged with its reason.</summary>
public sealed class ListLogger : ILogger<TaskWorker>
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, formatter(state, exception)));

    public bool Contains(string text) => Entries.Any(e => e.Message.Contains(text, StringComparison.Ordinal));
}

/// <summary>An engine and the in-process workers that host a flow's own task instances by atom name.</summary>
public sealed class DistributedHarness : IAsyncDisposable
{
    private readonly List<TaskWorker> _workers = [];
    private readonly List<InMemoryWorkerTransport> _connections = [];

    public InMemoryWorkerBroker Broker { get; } = new();
    public InMemoryWorkerTransport EngineTransport { get; }
    public string Topic { get; } = "test." + Guid.NewGuid().ToString("N");
    public ListLogger EngineLog { get; } = new();

    public DistributedHarness() => EngineTransport = Connect();

    public InMemoryWorkerTransport Connect()
    {
        var t = new InMemoryWorkerTransport(Broker);
        _connections.Add(t);
        return t;
    }

    public static IEnumerable<FlowTask> TasksOf(Flow flow)
    {
        foreach (var node in flow.Items)
        {
            if (node is FlowTask t) yield return t;
            else if (node is Flow f) foreach (var inner in TasksOf(f)) yield return inner;
        }
    }

    /// <summary>Starts a worker on its own connection hosting <paramref name="tasks"/> by atom name.</summary>
    public async Task<(TaskWorker Worker, InMemoryWorkerTransport Connection)> StartWorkerAsync(IEnumerable<FlowTask> tasks, TimeSpan? heartbeat = null, int concurrency = 8, ListLogger? log = null, string? topic = null)
    {
        var connection = Connect();
        var worker = new TaskWorker(connection, new TaskWorkerOptions
        {
            Topic = topic ?? Topic,
            MaxConcurrency = concurrency,
            HeartbeatInterval = heartbeat ?? TimeSpan.FromMilliseconds(200),
        }, log);
        foreach (var t in tasks) worker.AddTask(t.Name, () => t);
        await worker.StartAsync();
        _workers.Add(worker);
        return (worker, connection);
    }

    public DistributedEngineOptions Options(EngineOptions? engine = null, TimeSpan? requestTimeout = null, TimeSpan? expiry = null, TimeSpan? executionTimeout = null, IReadOnlyList<string>? topics = null, TimeSpan? margin = null, int revertResends = 3) => new()
    {
        Transport = EngineTransport,
        Topics = topics ?? [Topic],
        TaskName = DistributedEngineOptions.ByAtomName,
        RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(10),
        // One process, one clock: the margin only covers how late a RUNNING may arrive.
        ClockSkewMargin = margin ?? TimeSpan.FromSeconds(1),
        RevertResends = revertResends,
        WorkerExpiry = expiry,
        ExecutionTimeout = executionTimeout,
        Engine = engine ?? new EngineOptions(),
        Logger = EngineLog,
    };

    /// <summary>A distributed (or, for <paramref name="serial"/>, a serial engine with the distributed executor) plus a worker for the flow.</summary>
    public async Task<FlowEngine> CreateAsync(Flow flow, bool serial = false, EngineOptions? engine = null)
    {
        var tasks = TasksOf(flow).ToList();
        if (tasks.Count > 0) await StartWorkerAsync(tasks);
        var options = Options(engine);
        return serial
            ? FlowEngine.CreateSerial(flow, new EngineOptions { Store = options.Engine.Store, Executor = new DistributedTaskExecutor(options) })
            : FlowEngine.CreateDistributed(flow, options);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var w in _workers)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try { await w.StopAsync(cts.Token); } catch (ObjectDisposedException) { }
        }
        foreach (var c in _connections) await c.DisposeAsync();
    }
}
