using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Hosting;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Hosting.Tests;

public sealed class LoggingListenerTests
{
    private sealed record Entry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

    private sealed class CapturingProvider : ILoggerProvider
    {
        public List<Entry> Entries { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose() { }

        private sealed class Logger(CapturingProvider provider, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (provider.Entries) provider.Entries.Add(new Entry(category, logLevel, eventId, formatter(state, exception), exception));
            }
        }
    }

    private static (LoggingListener Listener, CapturingProvider Logs, ServiceProvider Services) Create()
    {
        var logs = new CapturingProvider();
        var services = new ServiceCollection();
        services.AddLogging(b => b.ClearProviders().AddProvider(logs).SetMinimumLevel(LogLevel.Trace));
        services.AddTaskFlow();
        var provider = services.BuildServiceProvider();
        return (provider.GetRequiredService<LoggingListener>(), logs, provider);
    }

    [Fact]
    public async Task FailingRun_LogsStateChangesFailuresAndRevertFailuresWithStableEventIds()
    {
        var (listener, logs, services) = Create();
        using var _ = services;
        var flow = new LinearFlow("vol")
        {
            FlowTask.Create("db", () => 1, new Action(() => throw new IOException("cannot undo"))),
            FlowTask.Create("backend", (TaskContext c) => { c.ReportProgress(0.5); throw new InvalidOperationException("no space"); }),
        };
        var engine = FlowEngine.CreateSerial(flow);
        using (listener.Attach(engine))
            await Assert.ThrowsAsync<IOException>(() => engine.RunAsync());

        var entries = logs.Entries.Where(e => e.Category == typeof(LoggingListener).FullName).ToList();
        Assert.All(entries, e => Assert.Equal(e.EventId.Id switch
        {
            1000 => "FlowStateChanged", 1001 => "AtomStateChanged", 1002 => "AtomFailed", 1003 => "AtomRevertFailed", 1005 => "TaskProgress",
            _ => throw new Xunit.Sdk.XunitException($"unexpected event id {e.EventId}"),
        }, e.EventId.Name));

        Assert.Equal(["Flow vol is RUNNING (was PENDING)", "Flow vol is FAILURE (was RUNNING)"],
            entries.Where(e => e.EventId.Id == 1000).Select(e => e.Message));
        Assert.All(entries.Where(e => e.EventId.Id == 1000), e => Assert.Equal(LogLevel.Information, e.Level));

        var failed = Assert.Single(entries, e => e.EventId.Id == 1002);
        Assert.Equal(LogLevel.Warning, failed.Level);
        Assert.Equal("task backend of flow vol failed: System.InvalidOperationException: no space", failed.Message);
        Assert.IsType<InvalidOperationException>(failed.Exception);

        var revertFailed = Assert.Single(entries, e => e.EventId.Id == 1003);
        Assert.Equal(LogLevel.Error, revertFailed.Level);
        Assert.Equal("task db of flow vol could not be reverted: System.IO.IOException: cannot undo", revertFailed.Message);

        Assert.Contains(entries, e => e.EventId.Id == 1001 && e.Level == LogLevel.Debug && e.Message == "task db of flow vol is SUCCESS (was RUNNING)");
        Assert.Contains(entries, e => e.EventId.Id == 1005 && e.Level == LogLevel.Trace && e.Message.StartsWith("Task backend of flow vol progress 50", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RetriedRunWithThrowingSubscriber_LogsRetryAndSubscriberFailure()
    {
        var (listener, logs, services) = Create();
        using var _ = services;
        int calls = 0;
        var flow = new LinearFlow("r-flow", new TimesRetry(2) { Name = "r" }) { FlowTask.Create("t", () => ++calls < 2 ? throw new TimeoutException() : calls) };
        var engine = FlowEngine.CreateSerial(flow);
        using var attached = listener.Attach(engine);
        using var bad = engine.Notifications.SubscribeFlowState(FlowState.Success, _ => throw new FormatException("bad subscriber"));
        await engine.RunAsync();

        var retry = Assert.Single(logs.Entries, e => e.EventId.Id == 1004);
        Assert.Equal(("SubflowRetrying", LogLevel.Information, "Retry r of flow r-flow runs its subflow again"), (retry.EventId.Name, retry.Level, retry.Message));
        var subscriber = Assert.Single(logs.Entries, e => e.EventId.Id == 1006);
        Assert.Equal(LogLevel.Error, subscriber.Level);
        Assert.Equal("A subscriber of flow r-flow threw while handling FlowStateChanged; the engine ignored it", subscriber.Message);
        Assert.IsType<FormatException>(subscriber.Exception);
    }
}
