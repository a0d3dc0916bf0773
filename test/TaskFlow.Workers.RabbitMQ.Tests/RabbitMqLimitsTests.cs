using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using TaskFlow.Chaos.Workers;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Atoms;
using TaskFlow.States;

namespace TaskFlow.Workers.RabbitMQ.Tests;

/// <summary>
/// On a real broker: requests expire (per-message expiration), bodies above the bound are rejected unread and
/// dead-lettered (not redelivered), queues refuse publishes past their byte bound, and finding 1 of the reliability
/// review does not reproduce.
/// </summary>
public sealed class RabbitMqLimitsTests
{
    private sealed class ListLogger : ILogger
    {
        public ConcurrentQueue<string> Lines { get; } = new();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) => Lines.Enqueue(formatter(state, exception));
        public int Count(string text) => Lines.Count(l => l.Contains(text, StringComparison.Ordinal));
    }

    /// <summary>Options with a dead-letter exchange and queue of the test's own, deleted afterwards.</summary>
    private sealed class Isolated(string uri) : IAsyncDisposable
    {
        private readonly string _id = Guid.NewGuid().ToString("N")[..12];
        public ListLogger Log { get; } = new();

        public RabbitMqTransportOptions Options => new()
        {
            Uri = uri,
            QueuePrefix = "taskflow.test.",
            TopicQueueExpiry = TimeSpan.FromMinutes(1),
            DeadLetterExchange = "taskflow.test.dead." + _id,
            DeadLetterQueue = "taskflow.test.dead." + _id,
            Logger = Log,
        };

        public Task<RabbitMqWorkerTransport> ConnectAsync() => RabbitMqWorkerTransport.ConnectAsync(Options);

        public async Task<IChannel> RawChannelAsync()
        {
            _raw ??= await new ConnectionFactory { Uri = new Uri(uri) }.CreateConnectionAsync();
            return await _raw.CreateChannelAsync();
        }

        private IConnection? _raw;

        public async ValueTask DisposeAsync()
        {
            var channel = await RawChannelAsync();
            await channel.QueueDeleteAsync(Options.DeadLetterQueue);
            await channel.ExchangeDeleteAsync(Options.DeadLetterExchange);
            await channel.DisposeAsync();
            await _raw!.DisposeAsync();
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, int seconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Timed out waiting until {what}.");
            await Task.Delay(50);
        }
    }

    private static async Task<TaskWorker> StartWorkerAsync(IWorkerTransport transport, string topic, params FlowTask[] tasks)
    {
        var worker = new TaskWorker(transport, new TaskWorkerOptions { Topic = topic, MaxConcurrency = 2, HeartbeatInterval = TimeSpan.FromMilliseconds(200) });
        foreach (var t in tasks) worker.AddTask(t.Name, () => t);
        await worker.StartAsync();
        return worker;
    }

    /// <summary>An engine connection, and a worker on its own connection serving task "one" on a topic of its own.</summary>
    private sealed record Serving(string Topic, RabbitMqWorkerTransport EngineSide, RabbitMqWorkerTransport WorkerSide, FlowTask Task, TaskWorker Worker) : IAsyncDisposable
    {
        public async Task AssertStillServesAsync()
        {
            var engine = FlowEngine.CreateDistributed(new LinearFlow("f") { Task }, new DistributedEngineOptions
            {
                Transport = EngineSide,
                Topics = [Topic],
                TaskName = DistributedEngineOptions.ByAtomName,
                RequestTimeout = TimeSpan.FromSeconds(20),
            });
            await engine.RunAsync();
            Assert.Equal(1, engine.Storage.Fetch<int>("v"));
        }

        public async ValueTask DisposeAsync()
        {
            await Worker.DisposeAsync();
            await WorkerSide.DisposeAsync();
            await EngineSide.DisposeAsync();
        }
    }

    private static async Task<Serving> ServingAsync(Isolated isolated)
    {
        var topic = RabbitMqTestServer.NewTopic();
        var engineSide = await isolated.ConnectAsync();
        var workerSide = await isolated.ConnectAsync();
        var task = FlowTask.Create("one", () => 1, provides: "v");
        return new Serving(topic, engineSide, workerSide, task, await StartWorkerAsync(workerSide, topic, task));
    }

    [Fact]
    public async Task Request_IsPublishedWithItsTimeToLive_AndTheBrokerDropsItUnreadOnceExpired()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        await using var isolated = new Isolated(uri);
        var topic = RabbitMqTestServer.NewTopic();
        await using var sender = await isolated.ConnectAsync();
        await sender.SendRequestAsync(topic, Encoding.UTF8.GetBytes("expires"), TimeSpan.FromMilliseconds(100));
        await sender.SendRequestAsync(topic, Encoding.UTF8.GetBytes("stays"), TimeSpan.FromMinutes(5));
        await Task.Delay(500);

        await using var consumerSide = await isolated.ConnectAsync();
        var got = new ConcurrentQueue<string>();
        await using var consumer = await consumerSide.ConsumeRequestsAsync(topic, 4, async d => { await d.AcknowledgeAsync(); got.Enqueue(Encoding.UTF8.GetString(d.Body.Span)); });
        await WaitUntilAsync(() => Task.FromResult(got.Contains("stays")), "the live request is delivered");
        await Task.Delay(300);
        Assert.Equal(["stays"], got);
        // Expired requests are not kept as dead letters: only rejected ones are.
        var channel = await isolated.RawChannelAsync();
        Assert.Equal(0u, (await channel.QueueDeclarePassiveAsync(isolated.Options.DeadLetterQueue)).MessageCount);
    }

    [Fact]
    public async Task OversizedAndUndecodableRequests_AreDeadLetteredNotRedelivered_AndTheWorkerKeepsServing()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        await using var isolated = new Isolated(uri);
        await using var setup = await ServingAsync(isolated);
        var (topic, engineSide, worker) = (setup.Topic, setup.EngineSide, setup.Worker);

        // Above the protocol's 4 MiB bound (but within what the queue holds): rejected before the body is copied.
        await engineSide.SendRequestAsync(topic, new byte[WorkerProtocol.DefaultMaxMessageBytes + 1024]);
        await engineSide.SendRequestAsync(topic, new byte[] { 0xff, 0xfe, 0x00 });
        await setup.AssertStillServesAsync();

        var channel = await isolated.RawChannelAsync();
        await WaitUntilAsync(async () => (await channel.QueueDeclarePassiveAsync(isolated.Options.DeadLetterQueue)).MessageCount == 2, "both are dead-lettered");
        await Task.Delay(500); // a redelivery, were there one, would show up as a second rejection
        Assert.Equal(1, isolated.Log.Count($"Rejected a request of {WorkerProtocol.DefaultMaxMessageBytes + 1024} bytes"));
        Assert.Equal(0u, (await channel.QueueDeclarePassiveAsync("taskflow.test." + topic)).MessageCount);
        var sizes = new List<int>();
        for (int i = 0; i < 2; i++)
        {
            var dead = await channel.BasicGetAsync(isolated.Options.DeadLetterQueue, autoAck: true);
            Assert.NotNull(dead);
            Assert.Equal("rejected", Encoding.UTF8.GetString((byte[])dead.BasicProperties.Headers!["x-first-death-reason"]!));
            sizes.Add(dead.Body.Length);
        }
        Assert.Equal([3, WorkerProtocol.DefaultMaxMessageBytes + 1024], sizes.Order());
        Assert.Equal(1, worker.CompletedRequests);
    }

    [Fact]
    public async Task MessageLargerThanTheQueueBound_IsRefusedByTheBroker_SoItCanNeverReachAWorker()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        await using var isolated = new Isolated(uri);
        await using var setup = await ServingAsync(isolated);
        var (topic, engineSide, worker) = (setup.Topic, setup.EngineSide, setup.Worker);

        // Larger than the client's inbound limit would close the worker's connection and come back after each
        // reconnect; the queue's byte bound (equal to that limit) refuses it at the door instead.
        var tooBig = new byte[isolated.Options.MaxQueueBytes + 1];
        await Assert.ThrowsAnyAsync<Exception>(() => engineSide.SendRequestAsync(topic, tooBig));
        await setup.AssertStillServesAsync();
    }

    [Fact]
    public void Options_QueueBoundBelowTheMessageBound_AreRefused()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new RabbitMqTransportOptions { MaxMessageBytes = 2048, MaxQueueBytes = 1024 }.Validate());
        Assert.Contains("MaxQueueBytes must be at least MaxMessageBytes", ex.Message);
    }

    /// <summary>Finding 1 of the reliability review on real RabbitMQ (see the in-memory twin in TaskFlow.Workers.Tests).</summary>
    [Fact]
    public async Task Finding1_TimedOutQueuedExecute_NeverRunsAfterItsFlowReverted()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        await using var isolated = new Isolated(uri);
        var outcome = await Finding1Reproduction.RunAsync(async () => await isolated.ConnectAsync());
        Assert.False(outcome.Reproduced, outcome.Report);
        Assert.Equal(FlowState.Reverted, outcome.FlowState);
    }
}
