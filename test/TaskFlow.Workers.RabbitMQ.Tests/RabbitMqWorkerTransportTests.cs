using System.Text;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Workers.RabbitMQ.Tests;

public sealed class RabbitMqWorkerTransportTests
{
    private static async Task<TaskWorker> StartWorkerAsync(IWorkerTransport transport, string topic, params FlowTask[] tasks)
    {
        var worker = new TaskWorker(transport, new TaskWorkerOptions { Topic = topic, MaxConcurrency = 4, HeartbeatInterval = TimeSpan.FromMilliseconds(200) });
        foreach (var t in tasks) worker.AddTask(t.Name, () => t);
        await worker.StartAsync();
        return worker;
    }

    private static DistributedEngineOptions Options(IWorkerTransport transport, string topic, EngineOptions? engine = null) => new()
    {
        Transport = transport,
        Topics = [topic],
        TaskName = DistributedEngineOptions.ByAtomName,
        RequestTimeout = TimeSpan.FromSeconds(20),
        WorkerExpiry = TimeSpan.FromSeconds(1),
        Engine = engine ?? new EngineOptions(),
    };

    [Fact]
    public async Task Flow_RunsOnTwoWorkers_ResultsArgumentsAndProgressCrossTheBroker()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        var topic = RabbitMqTestServer.NewTopic();
        await using var engineSide = await RabbitMqTestServer.ConnectAsync(uri);
        await using var w1 = await RabbitMqTestServer.ConnectAsync(uri);
        await using var w2 = await RabbitMqTestServer.ConnectAsync(uri);
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("add", (int x, int y) => x + y, provides: "sum"),
            new UnorderedFlow("fan")
            {
                FlowTask.Create("double", (int sum) => sum * 2, provides: "doubled"),
                FlowTask.Create("label", (int sum, TaskContext context) => { context.ReportProgress(0.5, "half"); return $"sum={sum}"; }, provides: "label"),
            },
        };
        var tasks = flow.Items.OfType<FlowTask>().Concat(((Flow)flow.Items[1]).Items.OfType<FlowTask>()).ToArray();
        await using var worker1 = await StartWorkerAsync(w1, topic, tasks);
        await using var worker2 = await StartWorkerAsync(w2, topic, tasks);
        var engine = FlowEngine.CreateDistributed(flow, Options(engineSide, topic, new EngineOptions { Store = { ["x"] = 2, ["y"] = 3 } }));
        var progress = new List<(double, object?)>();
        using var _ = engine.Notifications.Subscribe<TaskProgressChanged>(e => { lock (progress) progress.Add((e.Progress, e.Details)); });
        await engine.RunAsync();
        Assert.Equal(5, engine.Storage.Fetch<int>("sum"));
        Assert.Equal(10, engine.Storage.Fetch<int>("doubled"));
        Assert.Equal("sum=5", engine.Storage.Fetch<string>("label"));
        Assert.Equal([(0.5, "half")], progress);
        Assert.Equal(3, worker1.CompletedRequests + worker2.CompletedRequests);
    }

    [Fact]
    public async Task WorkerConnectionDiesMidExecution_UnderTimesRetry_TheTaskIsRetriedOnTheOtherWorker()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        var topic = RabbitMqTestServer.NewTopic();
        await using var engineSide = await RabbitMqTestServer.ConnectAsync(uri);
        var doomed = await RabbitMqTestServer.ConnectAsync(uri);
        await using var healthy = await RabbitMqTestServer.ConnectAsync(uri);
        int attempts = 0, reverts = 0;
        var started = new TaskCompletionSource();
        var never = new TaskCompletionSource<int>();
        var task = FlowTask.Create("b", async () =>
        {
            if (Interlocked.Increment(ref attempts) == 1) { started.TrySetResult(); return await never.Task; }
            return 7;
        }, () => Interlocked.Increment(ref reverts), provides: "value");
        var flow = new LinearFlow("f", new TimesRetry(3) { Name = "r" }) { task };
        var doomedWorker = await StartWorkerAsync(doomed, topic, task);
        var engine = FlowEngine.CreateDistributed(flow, Options(engineSide, topic));
        var run = engine.RunAsync();
        await started.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await doomed.DisposeAsync(); // the connection drops, as when the process is killed
        await using var healthyWorker = await StartWorkerAsync(healthy, topic, task);

        await run.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(7, engine.Storage.Fetch<int>("value"));
        Assert.Equal(2, attempts);
        Assert.Equal(1, reverts);
        Assert.True(engine.Storage.GetRetryHistory("r")[0].Failures["b"].Check<WorkerTimeoutException>());
        never.SetResult(0);
        await doomedWorker.DisposeAsync();
    }

    [Fact]
    public async Task RequestSentBeforeAnyWorkerConsumes_WaitsInTheDurableTopicQueue()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        var topic = RabbitMqTestServer.NewTopic();
        await using var a = await RabbitMqTestServer.ConnectAsync(uri);
        await using var b = await RabbitMqTestServer.ConnectAsync(uri);
        var got = new TaskCompletionSource<string>();
        await a.SendRequestAsync(topic, Encoding.UTF8.GetBytes("first"));
        // Declaring the same topology again from another connection is harmless (idempotent declares).
        await using var consumer = await b.ConsumeRequestsAsync(topic, 1, async d =>
        {
            await d.AcknowledgeAsync();
            got.TrySetResult(Encoding.UTF8.GetString(d.Body.Span));
        });
        Assert.Equal("first", await got.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task UnacknowledgedRequest_IsRedeliveredWhenItsConsumerCloses()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        var topic = RabbitMqTestServer.NewTopic();
        await using var sender = await RabbitMqTestServer.ConnectAsync(uri);
        await using var first = await RabbitMqTestServer.ConnectAsync(uri);
        var delivered = new TaskCompletionSource();
        var firstConsumer = await first.ConsumeRequestsAsync(topic, 1, d => { delivered.TrySetResult(); return Task.CompletedTask; });
        await sender.SendRequestAsync(topic, Encoding.UTF8.GetBytes("job"));
        await delivered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await firstConsumer.DisposeAsync(); // never acknowledged

        await using var second = await RabbitMqTestServer.ConnectAsync(uri);
        var again = new TaskCompletionSource<(string, bool)>();
        await using var secondConsumer = await second.ConsumeRequestsAsync(topic, 1, async d =>
        {
            await d.AcknowledgeAsync();
            again.TrySetResult((Encoding.UTF8.GetString(d.Body.Span), d.Redelivered));
        });
        Assert.Equal(("job", true), await again.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Worker_MalformedMessageOnItsQueue_IsDroppedAndItKeepsServing()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        var topic = RabbitMqTestServer.NewTopic();
        await using var engineSide = await RabbitMqTestServer.ConnectAsync(uri);
        await using var workerSide = await RabbitMqTestServer.ConnectAsync(uri);
        var task = FlowTask.Create("one", () => 1, provides: "v");
        await using var worker = await StartWorkerAsync(workerSide, topic, task);
        await engineSide.SendRequestAsync(topic, Encoding.UTF8.GetBytes("{\"version\":1,\"type\":\"request\",\"id\":[]}"));
        await engineSide.SendRequestAsync(topic, new byte[] { 0xff, 0xfe, 0x00 });
        var engine = FlowEngine.CreateDistributed(new LinearFlow("f") { task }, Options(engineSide, topic));
        await engine.RunAsync();
        Assert.Equal(1, engine.Storage.Fetch<int>("v"));
    }

    [Fact]
    public void Options_NeverShowCredentials_AndReadTheUri()
    {
        var options = new RabbitMqTransportOptions { Uri = "amqps://alice:s3cr%21t@broker.example:5999/prod%2Fa" };
        Assert.Equal("amqps://broker.example:5999/prod%2Fa", options.ToString());
        Assert.DoesNotContain("s3cr", options.ToString());
        Assert.DoesNotContain("alice", options.ToString());
        Assert.Equal(("broker.example", 5999, "prod/a", true), options.Endpoint());
        Assert.Equal(("alice", "s3cr!t"), options.Credentials());
        var overridden = new RabbitMqTransportOptions { Uri = "amqp://h", UserName = "bob", Password = "pw", Port = 1234 };
        Assert.Equal(("h", 1234, "/", false), overridden.Endpoint());
        Assert.Equal(("bob", "pw"), overridden.Credentials());
        Assert.Throws<ArgumentException>(() => new RabbitMqTransportOptions { Uri = "http://h" }.Endpoint());
    }

    [Fact]
    public async Task ConnectAsync_WrongPassword_FailsWithoutRevealingIt()
    {
        if (RabbitMqTestServer.Uri is not { } uri) return;
        var builder = new UriBuilder(uri) { Password = "definitely-wrong-pw-4711" };
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = builder.Uri.ToString() }));
        for (Exception? e = ex; e is not null; e = e.InnerException)
            Assert.DoesNotContain("definitely-wrong-pw-4711", e.ToString());
    }
}
