using System.Text;
using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Chaos.Workers;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.States;

namespace TaskFlow.Workers.Tests;

/// <summary>
/// Deadlines, refusals, withdrawals and the clock-skew margin: a request that may still start is never reported as
/// "did not run", and one that can no longer start is refused without running any of its task's code.
/// </summary>
public sealed class WorkerDeadlineTests
{
    private static Task WaitUntilAsync(Func<bool> condition, string what, int seconds = 10) => Eventually.WaitUntilAsync(condition, what, seconds);

    /// <summary>A hand-driven engine side: sends raw requests and collects every response on its reply address.</summary>
    private sealed class RawClient : IAsyncDisposable
    {
        private readonly List<TaskResponse> _responses = [];
        private IReplyEndpoint _endpoint = null!;

        public InMemoryWorkerTransport Connection { get; private init; } = null!;
        public string Address => _endpoint.Address;

        public static async Task<RawClient> OpenAsync(DistributedHarness h)
        {
            var client = new RawClient { Connection = h.Connect() };
            client._endpoint = await client.Connection.OpenReplyEndpointAsync(body =>
            {
                lock (client._responses) client._responses.Add(Assert.IsType<TaskResponse>(WorkerProtocol.Parse(body.Span)));
                return Task.CompletedTask;
            });
            return client;
        }

        public TaskResponse[] Responses(string id)
        {
            lock (_responses) return [.. _responses.Where(r => r.Id == id)];
        }

        public TaskRequest Request(string id, string task, DateTimeOffset? deadline) =>
            new(id, task, task, TaskAction.Execute, new Dictionary<string, JsonElement>(), Address) { Deadline = deadline };

        public Task SendAsync(string topic, TaskRequest request) => Connection.SendRequestAsync(topic, WorkerProtocol.Serialize(request));

        public Task WithdrawAsync(string id, DateTimeOffset? deadline) =>
            Connection.PublishNotificationAsync(WorkerProtocol.Serialize(new CancelRequest(id) { Deadline = deadline }));

        public ValueTask DisposeAsync() => _endpoint.DisposeAsync();
    }

    /// <summary>A clock running <paramref name="offset"/> ahead of (or, negative, behind) the system's.</summary>
    private sealed class SkewedClock(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + offset;
    }

    private static FlowTask Counting(string name, Func<int> run) => FlowTask.Create(name, run);

    /// <summary>A worker with one slot, hosting "busy" (runs until released) and "quick" (counts its runs).</summary>
    private sealed class OneSlotWorker
    {
        private int _quickRuns;
        public TaskCompletionSource Release { get; } = new();
        public TaskCompletionSource BusyStarted { get; } = new();
        public int QuickRuns => Volatile.Read(ref _quickRuns);

        public static async Task<OneSlotWorker> StartAsync(DistributedHarness h)
        {
            var w = new OneSlotWorker();
            await h.StartWorkerAsync(
                [FlowTask.Create("busy", async () => { w.BusyStarted.TrySetResult(); await w.Release.Task; return 0; }), Counting("quick", () => Interlocked.Increment(ref w._quickRuns))],
                concurrency: 1);
            return w;
        }
    }

    [Fact]
    public async Task Worker_RequestPastItsDeadline_IsRefusedWithoutRunning()
    {
        await using var h = new DistributedHarness();
        int runs = 0;
        var (worker, _) = await h.StartWorkerAsync([Counting("t", () => Interlocked.Increment(ref runs))]);
        await using var client = await RawClient.OpenAsync(h);
        await client.SendAsync(h.Topic, client.Request("late", "t", DateTimeOffset.UtcNow.AddSeconds(-1)));
        await client.SendAsync(h.Topic, client.Request("fine", "t", DateTimeOffset.UtcNow.AddSeconds(30)));
        await WaitUntilAsync(() => client.Responses("late").Length > 0 && client.Responses("fine").Any(r => r.State == ResponseState.Success), "both are answered");

        var refusal = Assert.Single(client.Responses("late"));
        Assert.Equal((ResponseState.Failure, Refusals.Expired), (refusal.State, refusal.Refused));
        Assert.True(refusal.Failure!.Check<WorkerTimeoutException>());
        Assert.Contains("refused request late", refusal.Failure.Message);
        Assert.Contains("deadline", refusal.Failure.Message);
        Assert.Equal(1, runs);
        Assert.Equal((1, 1), (worker.RefusedRequests, worker.CompletedRequests));
    }

    [Fact]
    public async Task Worker_RequestWaitingForASlot_IsRefusedAtItsDeadline_WhileTheSlotIsStillBusy()
    {
        await using var h = new DistributedHarness();
        var w = await OneSlotWorker.StartAsync(h);
        await using var client = await RawClient.OpenAsync(h);
        await client.SendAsync(h.Topic, client.Request("busy", "busy", DateTimeOffset.UtcNow.AddSeconds(30)));
        await w.BusyStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await client.SendAsync(h.Topic, client.Request("queued", "quick", DateTimeOffset.UtcNow.AddMilliseconds(300)));

        // The worker holds the second request (its one slot is busy) and refuses it when its deadline passes.
        await WaitUntilAsync(() => client.Responses("queued").Length > 0, "the queued request is refused");
        Assert.Equal(Refusals.Expired, Assert.Single(client.Responses("queued")).Refused);
        Assert.False(w.Release.Task.IsCompleted);
        w.Release.SetResult();
        await WaitUntilAsync(() => client.Responses("busy").Any(r => r.State == ResponseState.Success), "the busy one ends");
        await Task.Delay(100);
        Assert.Equal(0, w.QuickRuns);
    }

    [Fact]
    public async Task Worker_WithdrawnRequest_HeldForASlot_IsRefusedAtOnce_AndAlsoWhenDeliveredLater()
    {
        await using var h = new DistributedHarness();
        var w = await OneSlotWorker.StartAsync(h);
        await using var client = await RawClient.OpenAsync(h);
        var far = DateTimeOffset.UtcNow.AddMinutes(5);
        await client.SendAsync(h.Topic, client.Request("busy", "busy", far));
        await w.BusyStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await client.SendAsync(h.Topic, client.Request("held", "quick", far));
        await WaitUntilAsync(() => h.Broker.CountWaiting(h.Topic) == 0, "the worker holds the request");

        // The engine withdraws it: the worker holding it says it will never run it (the acknowledgement).
        await client.WithdrawAsync("held", far);
        await WaitUntilAsync(() => client.Responses("held").Length > 0, "the withdrawal is acknowledged");
        Assert.Equal(Refusals.Withdrawn, Assert.Single(client.Responses("held")).Refused);

        // Withdrawn before it arrives: refused when it does.
        await client.WithdrawAsync("later", far);
        await Task.Delay(100);
        await client.SendAsync(h.Topic, client.Request("later", "quick", far));
        w.Release.SetResult();
        await WaitUntilAsync(() => client.Responses("later").Length > 0, "the later one is refused");
        Assert.Equal(Refusals.Withdrawn, Assert.Single(client.Responses("later")).Refused);
        Assert.Equal(0, w.QuickRuns);
    }

    [Fact]
    public async Task Engine_SentRequestNeverStarted_IsNotFailedBeforeTheDeadlinePlusTheClockSkewMargin()
    {
        await using var h = new DistributedHarness();
        // A worker that takes requests and never answers (stalled, or its clock far behind): nothing is known.
        var fake = h.Connect();
        var withdrawn = new TaskCompletionSource<string>();
        await using var consumer = await fake.ConsumeRequestsAsync(h.Topic, 8, async d => await d.AcknowledgeAsync());
        await using var notifications = await fake.SubscribeNotificationsAsync(async body =>
        {
            switch (WorkerProtocol.Parse(body.Span))
            {
                case DiscoveryRequest:
                    await fake.PublishNotificationAsync(WorkerProtocol.Serialize(new WorkerNotification("silent", h.Topic, ["t"], TimeSpan.FromSeconds(1))));
                    break;
                case CancelRequest c:
                    withdrawn.TrySetResult(c.Id);
                    break;
            }
        });
        var flow = new LinearFlow("f") { FlowTask.Create("t", () => 1) };
        var engine = FlowEngine.CreateDistributed(flow, h.Options(requestTimeout: TimeSpan.FromMilliseconds(300), margin: TimeSpan.FromSeconds(1.5), revertResends: 0));
        var started = DateTime.UtcNow;
        var run = engine.RunAsync();

        await withdrawn.Task.WaitAsync(TimeSpan.FromSeconds(10)); // withdrawn at the deadline
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(300));
        await Task.Delay(500);
        Assert.False(run.IsCompleted); // 0.8 s in: past the deadline, not past the margin
        await Assert.ThrowsAnyAsync<Exception>(() => run.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromMilliseconds(1800));
        var execute = Assert.IsType<Failure>(engine.Storage.GetResult("t"));
        Assert.True(execute.Check<WorkerTimeoutException>());
        Assert.Contains("no worker on topic", execute.Message);
        Assert.Contains("1.5 s clock-skew margin", execute.Message);
    }

    [Fact]
    public async Task Engine_WorkerWithASlowClockHoldingTheRequest_RefusesItOnWithdrawal_BeforeTheMarginRunsOut()
    {
        await using var h = new DistributedHarness();
        var release = new TaskCompletionSource();
        var busyStarted = new TaskCompletionSource();
        int runs = 0;
        var busy = FlowTask.Create("busy", async () => { busyStarted.TrySetResult(); await release.Task; return 0; });
        var charge = FlowTask.Create("charge", () => Interlocked.Increment(ref runs), () => { _ = runs; }); // both capture the same closure
        var connection = h.Connect();
        // Its clock is a minute behind: by its clock the deadline is far away, only the withdrawal stops it.
        var worker = new TaskWorker(connection, new TaskWorkerOptions { Topic = h.Topic, MaxConcurrency = 1, HeartbeatInterval = TimeSpan.FromSeconds(1), TimeProvider = new SkewedClock(TimeSpan.FromMinutes(-1)) });
        worker.AddTask("busy", () => busy).AddTask("charge", () => charge);
        await worker.StartAsync();
        try
        {
            var busyRun = FlowEngine.CreateDistributed(new LinearFlow("b") { busy }, h.Options()).RunAsync();
            await busyStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
            var engine = FlowEngine.CreateDistributed(new LinearFlow("f") { charge }, h.Options(requestTimeout: TimeSpan.FromMilliseconds(300), margin: TimeSpan.FromSeconds(30)));
            var started = DateTime.UtcNow;
            await Assert.ThrowsAsync<WorkerTimeoutException>(() => engine.RunAsync().WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30)); // the refusal, not the margin, ended the wait
            var execute = Assert.IsType<Failure>(engine.Storage.GetResult("charge"));
            Assert.Contains("refused unrun by worker", execute.Message);
            Assert.Contains("withdrawn", execute.Message);
            release.SetResult();
            await busyRun.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, runs);
        }
        finally
        {
            release.TrySetResult();
            await worker.StopAsync();
        }
    }

    [Fact]
    public async Task Worker_RunningIsConfirmedBeforeTheTaskStarts_AndATaskWhoseStartCannotBeAnnouncedDoesNotRun()
    {
        await using var h = new DistributedHarness();
        int runs = 0;
        var gate = new GatedReplies(h.Connect());
        var worker = new TaskWorker(gate, new TaskWorkerOptions { Topic = h.Topic, MaxConcurrency = 2, HeartbeatInterval = TimeSpan.FromMilliseconds(200) });
        worker.AddTask("t", () => Counting("t", () => Interlocked.Increment(ref runs)));
        await worker.StartAsync();
        try
        {
            await using var client = await RawClient.OpenAsync(h);
            await client.SendAsync(h.Topic, client.Request("first", "t", DateTimeOffset.UtcNow.AddMinutes(1)));
            await gate.RunningSeen.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await Task.Delay(200);
            Assert.Equal(0, runs); // RUNNING is not confirmed yet: the task has not started
            gate.Release.SetResult();
            await WaitUntilAsync(() => client.Responses("first").Any(r => r.State == ResponseState.Success), "it runs once RUNNING is confirmed");
            Assert.Equal(1, runs);

            gate.FailRunning = true;
            await client.SendAsync(h.Topic, client.Request("second", "t", DateTimeOffset.UtcNow.AddMinutes(1)));
            await WaitUntilAsync(() => client.Responses("second").Length > 0, "the unannounced request is refused");
            Assert.Equal(Refusals.NotAnnounced, Assert.Single(client.Responses("second")).Refused);
            Assert.Equal(1, runs);
        }
        finally
        {
            await worker.StopAsync();
        }
    }

    /// <summary>A worker connection whose RUNNING replies wait for <see cref="Release"/>, or fail.</summary>
    private sealed class GatedReplies(InMemoryWorkerTransport inner) : IWorkerTransport
    {
        public TaskCompletionSource RunningSeen { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public volatile bool FailRunning;

        public async Task SendReplyAsync(string replyTo, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
        {
            if (WorkerProtocol.Parse(body.Span) is TaskResponse { State: ResponseState.Running })
            {
                if (FailRunning) throw new IOException("the broker is unreachable");
                RunningSeen.TrySetResult();
                await Release.Task;
            }
            await inner.SendReplyAsync(replyTo, body, cancellationToken);
        }

        public Task SendRequestAsync(string topic, ReadOnlyMemory<byte> body, TimeSpan? timeToLive = null, CancellationToken cancellationToken = default) => inner.SendRequestAsync(topic, body, timeToLive, cancellationToken);
        public Task<IAsyncDisposable> ConsumeRequestsAsync(string topic, int prefetch, Func<WorkerDelivery, Task> handler, CancellationToken cancellationToken = default) => inner.ConsumeRequestsAsync(topic, prefetch, handler, cancellationToken);
        public Task<IReplyEndpoint> OpenReplyEndpointAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default) => inner.OpenReplyEndpointAsync(handler, cancellationToken);
        public Task PublishNotificationAsync(ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default) => inner.PublishNotificationAsync(body, cancellationToken);
        public Task<IAsyncDisposable> SubscribeNotificationsAsync(Func<ReadOnlyMemory<byte>, Task> handler, CancellationToken cancellationToken = default) => inner.SubscribeNotificationsAsync(handler, cancellationToken);
        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    [Theory]
    [InlineData("amq.gen-3xk")]
    [InlineData("taskflow.workers.payments")]
    [InlineData("taskflow.reply.")]
    [InlineData("taskflow.reply.a/b")]
    public async Task Worker_ReplyAddressOutsideTheProtocolsPrefix_IsRefusedLoggedAndNeverRun(string replyTo)
    {
        await using var h = new DistributedHarness();
        int runs = 0;
        var log = new ListLogger();
        await h.StartWorkerAsync([Counting("t", () => Interlocked.Increment(ref runs))], log: log);
        var victim = h.Connect();
        var request = new TaskRequest("r1", "t", "t", TaskAction.Execute, new Dictionary<string, JsonElement>(), replyTo);
        await victim.SendRequestAsync(h.Topic, WorkerProtocol.Serialize(request));
        await WaitUntilAsync(() => h.Broker.CountRejected == 1, "the request is rejected");
        Assert.True(log.Contains("not under the protocol's 'taskflow.reply.'"));
        Assert.Equal(0, runs);
    }

    [Fact]
    public void ReplyAddresses_OfBothTransports_AreUnderTheProtocolsPrefix()
    {
        Assert.True(WorkerProtocol.IsReplyAddress("taskflow.reply.41c6e0d3a9b44c5f9a3f3f0b1e2d3c4a"));
        Assert.False(WorkerProtocol.IsReplyAddress("taskflow.replyX"));
        Assert.False(WorkerProtocol.IsReplyAddress("TASKFLOW.REPLY.x"));
    }

    [Fact]
    public async Task InMemoryEndpoint_AddressIsUnderTheProtocolsPrefix()
    {
        await using var t = new InMemoryWorkerTransport();
        await using var endpoint = await t.OpenReplyEndpointAsync(_ => Task.CompletedTask);
        Assert.True(WorkerProtocol.IsReplyAddress(endpoint.Address), endpoint.Address);
    }

    [Fact]
    public async Task InMemoryBroker_DropsARequestWhoseTimeToLivePassed_AndDeliversTheOthers()
    {
        var broker = new InMemoryWorkerBroker();
        await using var t = new InMemoryWorkerTransport(broker);
        await t.SendRequestAsync("t", Encoding.UTF8.GetBytes("short"), TimeSpan.FromMilliseconds(50));
        await t.SendRequestAsync("t", Encoding.UTF8.GetBytes("long"), TimeSpan.FromMinutes(5));
        await t.SendRequestAsync("t", Encoding.UTF8.GetBytes("forever"));
        await Task.Delay(200);
        Assert.Equal(2, broker.CountWaiting("t"));
        var got = new List<string>();
        await using var consumer = await t.ConsumeRequestsAsync("t", 5, async d => { await d.AcknowledgeAsync(); lock (got) got.Add(Encoding.UTF8.GetString(d.Body.Span)); });
        await WaitUntilAsync(() => { lock (got) return got.Count == 2; }, "two are delivered");
        await Task.Delay(100);
        lock (got) Assert.Equal(["long", "forever"], got);
        Assert.Equal(1, broker.CountExpired);
    }

    [Fact]
    public async Task InMemoryDelivery_CannotBeAcknowledgedOnceItsConsumerStopped_ItWentBackToTheTopic()
    {
        var broker = new InMemoryWorkerBroker();
        await using var t = new InMemoryWorkerTransport(broker);
        var delivered = new TaskCompletionSource<WorkerDelivery>();
        var consumer = await t.ConsumeRequestsAsync("t", 1, d => { delivered.TrySetResult(d); return Task.CompletedTask; });
        await t.SendRequestAsync("t", Encoding.UTF8.GetBytes("x"));
        var delivery = await delivered.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await consumer.DisposeAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(() => delivery.AcknowledgeAsync());
        Assert.Equal(1, broker.CountWaiting("t"));
    }

    /// <summary>
    /// Finding 1 of the reliability review, on the in-memory transport: two busy workers, and a "charge" execute with a
    /// RequestTimeout of 0.8 s queued behind them. Before the fix the engine failed the execute at 0.8 s and reverted
    /// it (the revert found nothing to undo), then the queued execute ran and the charge stayed. Now the flow reverts
    /// only once the execute can no longer start, and it never runs.
    /// </summary>
    [Fact]
    public async Task Finding1_TimedOutQueuedExecute_NeverRunsAfterItsFlowReverted()
    {
        var broker = new InMemoryWorkerBroker();
        var outcome = await Finding1Reproduction.RunAsync(() => Task.FromResult<IWorkerTransport>(new InMemoryWorkerTransport(broker)));
        Assert.False(outcome.Reproduced, outcome.Report);
        Assert.Equal(FlowState.Reverted, outcome.FlowState);
    }
}
