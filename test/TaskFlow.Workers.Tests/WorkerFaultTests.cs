using System.Text;
using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Workers.Tests;

/// <summary>Timeouts, lost workers, late and duplicate responses, and bad messages, on the in-memory transport.</summary>
public sealed class WorkerFaultTests
{
    private static Task WaitUntilAsync(Func<bool> condition, string what, int seconds = 10) => Eventually.WaitUntilAsync(condition, what, seconds);

    [Fact]
    public async Task RunAsync_NoWorkerAdvertisesTheTask_FailsWithRequestTimeoutNamingTheTask()
    {
        await using var h = new DistributedHarness();
        var flow = new LinearFlow("f") { FlowTask.Create("lonely", () => 1) };
        var engine = FlowEngine.CreateDistributed(flow, h.Options(requestTimeout: TimeSpan.FromMilliseconds(300)));
        // The execute times out; so does the revert TaskFlow then asks for (no worker can run it either): the flow
        // ends FAILURE, raising the revert's failure, with the execute's failure stored as the task's result.
        var ex = await Assert.ThrowsAsync<WorkerTimeoutException>(() => engine.RunAsync());
        Assert.Contains("Task 'lonely' (atom 'lonely', revert", ex.Message);
        Assert.Contains("request timed out after 0.3 s: no live worker on topic(s) " + h.Topic + " advertises task 'lonely'", ex.Message);
        var execute = Assert.IsType<Failure>(engine.Storage.GetResult("lonely"));
        Assert.True(execute.Check<WorkerTimeoutException>());
        Assert.Contains("(atom 'lonely', execute", execute.Message);
        Assert.Equal(FlowState.Failure, engine.State);
        Assert.Equal(AtomState.RevertFailure, engine.Storage.GetAtomState("lonely"));
    }

    [Fact]
    public async Task RunAsync_WorkerDiesMidExecution_TaskFailsAndTheFlowRevertsOnAnotherWorker()
    {
        await using var h = new DistributedHarness();
        var log = new List<string>();
        var started = new TaskCompletionSource();
        var release = new TaskCompletionSource();
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("a", () => { lock (log) log.Add("a.execute"); return 1; }, () => { lock (log) log.Add("a.revert"); }),
            FlowTask.Create("b", async () => { lock (log) log.Add("b.execute"); started.TrySetResult(); await release.Task; return 2; }, () => { lock (log) log.Add("b.revert"); }),
        };
        var tasks = DistributedHarness.TasksOf(flow).ToList();
        var (first, firstConnection) = await h.StartWorkerAsync(tasks, heartbeat: TimeSpan.FromMilliseconds(100));
        var engine = FlowEngine.CreateDistributed(flow, h.Options(expiry: TimeSpan.FromMilliseconds(500)));
        var run = engine.RunAsync();
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await firstConnection.DisposeAsync(); // the worker process dies: no more heartbeats, nothing more sent
        await h.StartWorkerAsync(tasks, heartbeat: TimeSpan.FromMilliseconds(100));

        var ex = await Assert.ThrowsAsync<WorkerTimeoutException>(() => run);
        Assert.Contains($"worker '{first.WorkerId}'", ex.Message);
        Assert.Contains("presumed lost", ex.Message);
        Assert.Contains("Task 'b'", ex.Message);
        Assert.Equal(["a.execute", "b.execute", "b.revert", "a.revert"], log);
        Assert.Equal(FlowState.Reverted, engine.State);
        release.SetResult();
    }

    [Fact]
    public async Task RunAsync_WorkerDiesMidExecutionUnderTimesRetry_IsRetriedOnAnotherWorkerAndSucceeds()
    {
        await using var h = new DistributedHarness();
        int attempts = 0, reverts = 0;
        var started = new TaskCompletionSource();
        var never = new TaskCompletionSource<int>();
        var flow = new LinearFlow("f", new TimesRetry(3) { Name = "r" })
        {
            FlowTask.Create("b", async () =>
            {
                if (Interlocked.Increment(ref attempts) == 1) { started.TrySetResult(); return await never.Task; }
                return 42;
            }, () => Interlocked.Increment(ref reverts), provides: "value"),
        };
        var tasks = DistributedHarness.TasksOf(flow).ToList();
        var (_, firstConnection) = await h.StartWorkerAsync(tasks, heartbeat: TimeSpan.FromMilliseconds(100));
        var engine = FlowEngine.CreateDistributed(flow, h.Options(expiry: TimeSpan.FromMilliseconds(500)));
        var run = engine.RunAsync();
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await firstConnection.DisposeAsync();
        await h.StartWorkerAsync(tasks, heartbeat: TimeSpan.FromMilliseconds(100));

        await run.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(42, engine.Storage.Fetch<int>("value"));
        Assert.Equal(2, attempts);
        Assert.Equal(1, reverts); // the lost attempt is reverted before the retry
        var history = engine.Storage.GetRetryHistory("r");
        Assert.Equal(2, history.Count);
        Assert.True(history[0].Failures["b"].Check<WorkerTimeoutException>());
        never.SetResult(0);
    }

    [Fact]
    public async Task RunAsync_WorkerDiesMidRevert_TheRevertIsSentAgainToAnotherWorker()
    {
        await using var h = new DistributedHarness();
        var a = new FirstRevertHangs { Name = "a" };
        var flow = new LinearFlow("f")
        {
            a,
            FlowTask.Create("b", new Func<int>(() => throw new InvalidOperationException("b failed"))),
        };
        var tasks = DistributedHarness.TasksOf(flow).ToList();
        var (_, firstConnection) = await h.StartWorkerAsync(tasks, heartbeat: TimeSpan.FromMilliseconds(100));
        var engine = FlowEngine.CreateDistributed(flow, h.Options(expiry: TimeSpan.FromMilliseconds(500)));
        var run = engine.RunAsync();
        await a.RevertStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await firstConnection.DisposeAsync();
        await h.StartWorkerAsync(tasks, heartbeat: TimeSpan.FromMilliseconds(100));

        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => run.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal("b failed", Assert.Single(ex.Failures).Message);
        Assert.Equal(FlowState.Reverted, engine.State);
        Assert.Equal(2, a.Reverts);
        Assert.True(h.EngineLog.Contains("Revert of atom a is sent again (attempt 2)"));
        a.Never.SetResult();
    }

    private sealed class FirstRevertHangs : FlowTask
    {
        private int _reverts;
        public TaskCompletionSource RevertStarted { get; } = new();
        public TaskCompletionSource Never { get; } = new();
        public int Reverts => Volatile.Read(ref _reverts);

        public int Execute() => 1;

        public async Task Revert()
        {
            if (Interlocked.Increment(ref _reverts) == 1) { RevertStarted.TrySetResult(); await Never.Task; }
        }
    }

    [Fact]
    public async Task RunAsync_WorkerComesBackAfterBeingPresumedLost_ItsLateResponseIsIgnored()
    {
        await using var h = new DistributedHarness();
        var started = new TaskCompletionSource();
        var release = new TaskCompletionSource();
        int reverts = 0;
        var stalled = FlowTask.Create("b", async () => { started.TrySetResult(); await release.Task; return "late"; }, () => Interlocked.Increment(ref reverts), provides: "value");
        var flow = new LinearFlow("f") { stalled };
        // The stalled worker has a topic of its own, so the revert goes to the healthy worker rather than into the partition.
        var stalledTopic = h.Topic + ".stalled";
        var (_, stalledConnection) = await h.StartWorkerAsync([stalled], heartbeat: TimeSpan.FromMilliseconds(100), topic: stalledTopic);
        var engine = FlowEngine.CreateDistributed(flow, h.Options(expiry: TimeSpan.FromMilliseconds(400), topics: [stalledTopic, h.Topic]));
        var run = engine.RunAsync();
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        stalledConnection.PauseOutgoing(); // a partition: the worker lives on but nothing it sends arrives
        await h.StartWorkerAsync([stalled], heartbeat: TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAsync<WorkerTimeoutException>(() => run);
        Assert.Equal(FlowState.Reverted, engine.State);
        var failure = Assert.IsType<Failure>(engine.Storage.GetResult("b"));

        release.SetResult();
        await Task.Delay(200);            // the worker finishes and "sends" SUCCESS into the partition
        stalledConnection.ResumeOutgoing(); // the partition heals: RUNNING... SUCCESS arrive late
        await WaitUntilAsync(() => h.EngineLog.Contains("Ignored a SUCCESS response"), "the late SUCCESS is logged as ignored");
        Assert.Equal(FlowState.Reverted, engine.State);
        Assert.Same(failure, engine.Storage.GetResult("b"));
        Assert.Equal(AtomState.Reverted, engine.Storage.GetAtomState("b"));
        Assert.Equal(1, reverts);
    }

    [Fact]
    public async Task RunAsync_TaskOverrunsItsExecutionTimeout_IsCancelledByTheWorkerAndFails()
    {
        await using var h = new DistributedHarness();
        var flow = new LinearFlow("f") { FlowTask.Create("slow", async (CancellationToken ct) => { await Task.Delay(Timeout.Infinite, ct); return 1; }) };
        await h.StartWorkerAsync(DistributedHarness.TasksOf(flow));
        var engine = FlowEngine.CreateDistributed(flow, h.Options(executionTimeout: TimeSpan.FromMilliseconds(300)));
        var ex = await Assert.ThrowsAsync<WrappedFailureException>(() => engine.RunAsync());
        Assert.True(ex.Check<WorkerTimeoutException>());
        Assert.Contains("longer than its 0.3 s timeout", ex.Failures[0].Message);
    }

    [Fact]
    public async Task RunAsync_TaskIgnoresItsExecutionTimeout_TheEngineAsksToCancelAndWaitsForItToEnd()
    {
        await using var h = new DistributedHarness();
        var release = new TaskCompletionSource();
        var cancelled = new TaskCompletionSource();
        int reverts = 0;
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("stubborn", async (CancellationToken ct) =>
            {
                ct.Register(() => cancelled.TrySetResult());
                await release.Task; // ignores its token
                return 1;
            }, () => Interlocked.Increment(ref reverts), provides: "v"),
        };
        await h.StartWorkerAsync(DistributedHarness.TasksOf(flow));
        var engine = FlowEngine.CreateDistributed(flow, h.Options(executionTimeout: TimeSpan.FromMilliseconds(200)));
        var run = engine.RunAsync();
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await WaitUntilAsync(() => h.EngineLog.Contains("ran longer than its 0.2 s execution timeout"), "the engine notices the overrun");
        Assert.True(h.EngineLog.Contains("the worker was asked to cancel it, and the engine waits for it to end"));
        // The execute may still be running on a live worker: nothing fails, nothing is reverted.
        await Task.Delay(500);
        Assert.False(run.IsCompleted);
        Assert.Equal(0, reverts);
        release.SetResult();
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, engine.Storage.Fetch<int>("v")); // it did finish: its result is what happened
        Assert.Equal(0, reverts);
    }

    /// <summary>A hand-written worker that answers with garbage, a wrong version, progress and two results.</summary>
    [Fact]
    public async Task Engine_BadAndDuplicateResponses_AreRejectedOrIgnored_FirstResultWins()
    {
        await using var h = new DistributedHarness();
        var fake = h.Connect();
        await using var consumer = await fake.ConsumeRequestsAsync(h.Topic, 1, async delivery =>
        {
            var request = Assert.IsType<TaskRequest>(WorkerProtocol.Parse(delivery.Body.Span));
            await delivery.AcknowledgeAsync();
            async Task Send(byte[] body) => await fake.SendReplyAsync(request.ReplyTo, body);
            await Send(Encoding.UTF8.GetBytes("{{{ not json"));
            await Send(Encoding.UTF8.GetBytes($$"""{"version":99,"type":"response","id":"{{request.Id}}","state":"SUCCESS","worker":"fake","result":666}"""));
            await Send(WorkerProtocol.Serialize(new WorkerNotification("fake", h.Topic, ["t"], TimeSpan.FromSeconds(1))));
            await Send(WorkerProtocol.Serialize(new TaskResponse(request.Id, ResponseState.Running, "fake")));
            await Send(WorkerProtocol.Serialize(new TaskResponse(request.Id, ResponseState.Progress, "fake") { Progress = 0.5 }));
            await Send(WorkerProtocol.Serialize(new TaskResponse(request.Id, ResponseState.Success, "fake") { Result = JsonSerializer.SerializeToElement(1) }));
            await Send(WorkerProtocol.Serialize(new TaskResponse(request.Id, ResponseState.Success, "fake") { Result = JsonSerializer.SerializeToElement(2) }));
        });
        // It announces itself (and a malformed heartbeat) when an engine asks who is there.
        await using var discovery = await fake.SubscribeNotificationsAsync(async body =>
        {
            if (WorkerProtocol.Parse(body.Span) is not DiscoveryRequest) return;
            await fake.PublishNotificationAsync(WorkerProtocol.Serialize(new WorkerNotification("fake", h.Topic, ["t"], TimeSpan.FromSeconds(5))));
            await fake.PublishNotificationAsync(Encoding.UTF8.GetBytes("""{"version":1,"type":"notify","worker":"evil","topic":"x","tasks":"all"}"""));
        });

        var flow = new LinearFlow("f") { FlowTask.Create("t", () => 0, provides: "value") };
        var engine = FlowEngine.CreateDistributed(flow, h.Options());
        var progress = new List<double>();
        using var _ = engine.Notifications.Subscribe<TaskProgressChanged>(e => { lock (progress) progress.Add(e.Progress); });
        await engine.RunAsync();
        Assert.Equal(1, engine.Storage.Fetch<int>("value"));
        Assert.Equal([0.5], progress);
        await WaitUntilAsync(() => h.EngineLog.Contains("Ignored a SUCCESS response"), "the duplicate SUCCESS is logged as ignored");
        Assert.True(h.EngineLog.Contains("not valid JSON"));
        Assert.True(h.EngineLog.Contains("protocol version 99"));
        Assert.True(h.EngineLog.Contains("Expected a response on the reply address, got a WorkerNotification"));
        Assert.True(h.EngineLog.Contains("has no \"tasks\" array"));
    }

    [Fact]
    public async Task Worker_BadRequestsAndUnknownTasks_AreLoggedOrAnsweredAndItKeepsServing()
    {
        await using var h = new DistributedHarness();
        var workerLog = new ListLogger();
        var (worker, _) = await h.StartWorkerAsync([FlowTask.Create("double", (int x) => x * 2)], log: workerLog);
        var client = h.Connect();
        var replies = new List<TaskResponse>();
        await using var endpoint = await client.OpenReplyEndpointAsync(body =>
        {
            lock (replies) replies.Add(Assert.IsType<TaskResponse>(WorkerProtocol.Parse(body.Span)));
            return Task.CompletedTask;
        });
        TaskRequest Request(string id, string task, string atom = "atom") =>
            new(id, task, atom, TaskAction.Execute, new Dictionary<string, JsonElement> { ["x"] = JsonSerializer.SerializeToElement(21) }, endpoint.Address);

        await client.SendRequestAsync(h.Topic, Encoding.UTF8.GetBytes("garbage"));
        await client.SendRequestAsync(h.Topic, Encoding.UTF8.GetBytes("""{"version":7,"type":"request"}"""));
        await client.SendRequestAsync(h.Topic, new byte[WorkerProtocol.DefaultMaxMessageBytes + 1]);
        await client.SendRequestAsync(h.Topic, WorkerProtocol.Serialize(new TaskResponse("x", ResponseState.Running, "w")));
        await client.SendRequestAsync(h.Topic, WorkerProtocol.Serialize(Request("unknown", "System.IO.File")));
        await client.SendRequestAsync(h.Topic, WorkerProtocol.Serialize(Request("good", "double")));
        await WaitUntilAsync(() => { lock (replies) return replies.Any(r => r.Id == "good" && r.State == ResponseState.Success); }, "the good request succeeds");

        TaskResponse[] got;
        lock (replies) got = [.. replies];
        Assert.Equal(42, got.Single(r => r.Id == "good" && r.State == ResponseState.Success).Result!.Value.GetInt32());
        var unknown = got.Single(r => r.Id == "unknown");
        Assert.Equal(ResponseState.Failure, unknown.State);
        Assert.True(unknown.Failure!.Check<NotFoundException>());
        Assert.Contains("has no task named 'System.IO.File'", unknown.Failure.Message);
        Assert.DoesNotContain("double", unknown.Failure.Message); // what the worker hosts is not told to the sender
        Assert.True(workerLog.Contains("not valid JSON"));
        Assert.True(workerLog.Contains("protocol version 7"));
        Assert.True(workerLog.Contains("exceeds the"));
        Assert.True(workerLog.Contains("Expected a request on topic"));
        Assert.Equal(0, h.Broker.CountWaiting(h.Topic)); // every message was settled, none is stuck
        Assert.Equal(4, h.Broker.CountRejected);          // the four unreadable ones rejected (RabbitMQ dead-letters them)
        Assert.Equal(2, worker.CompletedRequests);
    }

    [Fact]
    public async Task Worker_StopWithRunningTask_WaitsForItThenLeaves()
    {
        await using var h = new DistributedHarness();
        var release = new TaskCompletionSource();
        var started = new TaskCompletionSource();
        var flow = new LinearFlow("f") { FlowTask.Create("t", async () => { started.TrySetResult(); await release.Task; return 5; }, provides: "v") };
        var (worker, _) = await h.StartWorkerAsync(DistributedHarness.TasksOf(flow));
        var engine = FlowEngine.CreateDistributed(flow, h.Options());
        var run = engine.RunAsync();
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var stop = worker.StopAsync();
        await Task.Delay(100);
        Assert.False(stop.IsCompleted);
        release.SetResult();
        await stop.WaitAsync(TimeSpan.FromSeconds(10));
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(5, engine.Storage.Fetch<int>("v"));
    }
}
