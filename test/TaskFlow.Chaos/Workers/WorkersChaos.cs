using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Retries;
using TaskFlow.States;
using TaskFlow.Workers;
using TaskFlow.Workers.RabbitMQ;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// <c>workers</c>: distributed engines in this process, worker child processes on real RabbitMQ, and a killer that
/// SIGKILLs a worker every K started tasks and starts a replacement. Every flow must end in its expected state —
/// SUCCESS with each task's effect applied exactly once, or REVERTED (the flows with a task failing by design) with
/// every effect undone — and no effect may be applied twice. <c>workers-bench</c> measures round trips per second.
/// </summary>
public static class WorkersChaos
{
    public const string ChildCommand = "worker-process";

    private const string AmqpVariable = "TASKFLOW_AMQP";
    private static readonly TimeSpan Heartbeat = TimeSpan.FromMilliseconds(500);

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args, "workers", "flows", "kill-every", "concurrency", "seed");
        int workers = o.Int("workers", 3), flows = o.Int("flows", 100), killEvery = o.Int("kill-every", 50), concurrency = o.Int("concurrency", 10);
        var seed = o.Int("seed", Environment.TickCount);
        var random = new Random(seed);
        if (Amqp() is not { } amqp) return 2;

        var runId = Guid.NewGuid().ToString("N")[..12];
        var topic = "chaos." + runId;
        var ledgerDir = Directory.CreateTempSubdirectory("taskflow-chaos-workers-").FullName;
        var ledger = new EffectLedger(ledgerDir);
        Console.WriteLine($"workers chaos: {workers} workers, {flows} flows, kill every {killEvery} tasks, seed {seed}, topic {topic}, ledger {ledgerDir}");

        await using var transport = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = "taskflow.chaos.", TopicQueueExpiry = TimeSpan.FromMinutes(5) });
        await using var pool = new WorkerPool(topic, ledgerDir, concurrency: 4);
        for (int i = 0; i < workers; i++) pool.Start();
        await pool.WaitAllReadyAsync(TimeSpan.FromSeconds(60));

        int started = 0, kills = 0;
        var killRequests = System.Threading.Channels.Channel.CreateUnbounded<int>();
        var killer = Task.Run(async () =>
        {
            await foreach (var _ in killRequests.Reader.ReadAllAsync())
            {
                await pool.KillOneAndReplaceAsync(random);
                Interlocked.Increment(ref kills);
            }
        });

        var cases = Enumerable.Range(0, flows).Select(i => new FlowCase($"{runId}-{i}", FailsByDesign: random.Next(5) == 0, Shape: random.Next(3))).ToList();
        var results = new ConcurrentBag<(FlowCase Case, string? Problem)>();
        using var gate = new SemaphoreSlim(concurrency);
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(cases.Select(async c =>
        {
            await gate.WaitAsync();
            try
            {
                var engine = FlowEngine.CreateDistributed(c.Build(ledger), new DistributedEngineOptions
                {
                    Transport = transport,
                    Topics = [topic],
                    TaskName = _ => EffectTask.RemoteName,
                    // Requests queue for well under a second here; a sent request not accepted in 20 s was lost with
                    // its worker between acknowledging it and saying RUNNING.
                    RequestTimeout = TimeSpan.FromSeconds(20),
                    WorkerExpiry = Heartbeat * 4,
                    Engine = new EngineOptions { Store = { ["flow_id"] = c.Id }, MaxDegreeOfParallelism = 4 },
                });
                using var _ = engine.Notifications.Subscribe<AtomStateChanged>(e =>
                {
                    if (e.Kind == AtomKind.Task && e.State == AtomState.Running && Interlocked.Increment(ref started) % killEvery == 0)
                        killRequests.Writer.TryWrite(0);
                });
                Exception? error = null;
                try { await engine.RunAsync().WaitAsync(TimeSpan.FromMinutes(5)); }
                catch (Exception e) { error = e; }
                results.Add((c, c.Check(engine, error, ledger)));
            }
            finally { gate.Release(); }
        }));
        killRequests.Writer.Complete();
        await killer;
        stopwatch.Stop();

        int passed = 0, failed = 0;
        foreach (var (c, problem) in results.OrderBy(r => r.Case.Id, StringComparer.Ordinal))
        {
            if (problem is null) passed++;
            else { failed++; Console.WriteLine($"FAIL {c.Id}: {problem}"); }
        }
        // Effects of keys no flow owns, or applied twice, are failures too (a request run by two workers).
        foreach (var (key, net) in ledger.Net().Where(kv => kv.Value > 1))
        {
            failed++;
            Console.WriteLine($"FAIL {key}: effect applied {net} times");
        }
        Console.WriteLine($"{started} tasks started, {kills} workers killed, {pool.Started} worker processes in all, {stopwatch.Elapsed.TotalSeconds:0.0} s");
        Console.WriteLine($"{passed} passed, {failed} failed");
        if (failed == 0) Directory.Delete(ledgerDir, recursive: true);
        else Console.WriteLine($"ledger kept in {ledgerDir}");
        return failed == 0 && passed > 0 ? 0 : 1;
    }

    /// <summary>Round trips through the distributed executor, over RabbitMQ, with each number of worker processes.</summary>
    public static async Task<int> RunBenchmarkAsync(string[] args)
    {
        var o = Options.Parse(args, "workers", "requests", "concurrency");
        if (Amqp() is not { } amqp) return 2;
        int requests = o.Int("requests", 4000), concurrency = o.Int("concurrency", 64);
        await using var transport = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = "taskflow.chaos.", TopicQueueExpiry = TimeSpan.FromMinutes(5) });
        int failed = 0;
        foreach (var count in o.Get("workers", "1,4").Split(',').Select(w => int.Parse(w, CultureInfo.InvariantCulture)))
        {
            var topic = "bench." + Guid.NewGuid().ToString("N")[..12];
            await using var pool = new WorkerPool(topic, Path.GetTempPath(), concurrency: 16);
            for (int i = 0; i < count; i++) pool.Start();
            await pool.WaitAllReadyAsync(TimeSpan.FromSeconds(60));
            var executor = new DistributedTaskExecutor(new DistributedEngineOptions { Transport = transport, Topics = [topic], TaskName = _ => EchoTask.RemoteName });
            var task = new EchoTask();
            async Task<bool> RoundTrip(long x)
            {
                var result = await executor.ExecuteAsync(task, TaskArguments.Create("echo", [KeyValuePair.Create<string, object?>("x", x)]), TaskContext.Create("echo"));
                return ArgumentConverter.Convert<long>(result, "echo", "result") == x + 1;
            }
            for (int i = 0; i < 200; i++) await RoundTrip(i); // warm up: connections, JIT, queue declares

            foreach (var c in new[] { 1, concurrency })
            {
                int n = c == 1 ? Math.Min(requests, 1000) : requests, next = 0, wrong = 0;
                var sw = Stopwatch.StartNew();
                await Task.WhenAll(Enumerable.Range(0, c).Select(async _ =>
                {
                    int i;
                    while ((i = Interlocked.Increment(ref next)) <= n)
                        if (!await RoundTrip(i)) Interlocked.Increment(ref wrong);
                }));
                sw.Stop();
                failed += wrong;
                Console.WriteLine($"workers={count} concurrency={c}: {n} round trips in {sw.Elapsed.TotalSeconds:0.00} s = {n / sw.Elapsed.TotalSeconds:0} round trips/s, mean latency {sw.Elapsed.TotalMilliseconds * c / n:0.00} ms{(wrong > 0 ? $", {wrong} WRONG" : "")}");
            }
        }
        Console.WriteLine($"{(failed == 0 ? 1 : 0)} passed, {(failed == 0 ? 0 : 1)} failed");
        return failed == 0 ? 0 : 1;
    }

    /// <summary>The child: a worker hosting the chaos and benchmark tasks until it is killed.</summary>
    public static async Task<int> RunWorkerProcessAsync(string[] args)
    {
        var o = Options.Parse(args, "topic", "ledger", "concurrency");
        if (Amqp() is not { } amqp) return 2;
        await using var transport = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = "taskflow.chaos.", TopicQueueExpiry = TimeSpan.FromMinutes(5), ClientName = $"chaos-worker-{Environment.ProcessId}" });
        var ledger = new EffectLedger(o.Require("ledger"));
        var worker = new TaskWorker(transport, new TaskWorkerOptions { Topic = o.Require("topic"), MaxConcurrency = o.Int("concurrency", 4), HeartbeatInterval = Heartbeat });
        worker.AddTask(EffectTask.RemoteName, () => new EffectTask(ledger));
        worker.AddTask(EchoTask.RemoteName, () => new EchoTask());
        await worker.StartAsync();
        Console.WriteLine($"ready {worker.WorkerId}");
        var stop = new TaskCompletionSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.TrySetResult(); };
        AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.TrySetResult();
        await stop.Task;
        await worker.StopAsync();
        return 0;
    }

    private static string? Amqp()
    {
        var amqp = Environment.GetEnvironmentVariable(AmqpVariable);
        if (!string.IsNullOrWhiteSpace(amqp)) return amqp;
        Console.Error.WriteLine($"error: {AmqpVariable} is not set; start RabbitMQ with scripts/services.sh and export it.");
        return null;
    }

    /// <summary>One flow of the run and what it must end as.</summary>
    private sealed record FlowCase(string Id, bool FailsByDesign, int Shape)
    {
        private readonly List<string> _atoms = [];

        public Flow Build(EffectLedger ledger)
        {
            EffectTask T(string name, bool fail = false)
            {
                _atoms.Add(name);
                return new EffectTask(ledger) { Name = name, Inject = fail ? new Dictionary<string, object?> { ["fail"] = true } : null };
            }
            // Kills turn into task failures; the retry controller retries them (a lost attempt is reverted first).
            var root = new LinearFlow("chaos-" + Id, new TimesRetry(6) { Name = "retry" });
            switch (Shape)
            {
                case 0:
                    root.Add(T("a"), T("b"), T("c"), T("d"));
                    break;
                case 1:
                    root.Add(T("a"), new UnorderedFlow("fan") { T("b"), T("c"), T("d") }, T("e"));
                    break;
                default:
                    var g = new GraphFlow("graph");
                    FlowTask a = T("a"), b = T("b"), c = T("c"), d = T("d");
                    g.Add(a, b, c, d);
                    g.Link(a, b).Link(a, c).Link(b, d).Link(c, d);
                    root.Add(g);
                    break;
            }
            if (FailsByDesign) root.Add(T("doomed", fail: true));
            return root;
        }

        // Kills surface as WorkerTimeoutException: a worker presumed lost, or a request it took and never started.
        private static bool RaisedByDesignOrLostWorkers(Exception? error) => error switch
        {
            WrappedFailureException w => w.Failures.All(f => f.Check<WorkerTimeoutException>() || f.Message.Contains("fails by design", StringComparison.Ordinal)),
            WorkerTimeoutException => true,
            _ => false,
        };

        public string? Check(FlowEngine engine, Exception? error, EffectLedger ledger)
        {
            var expected = FailsByDesign ? FlowState.Reverted : FlowState.Success;
            if (engine.State != expected)
                return $"ended {engine.State} ({error?.GetType().Name}: {error?.Message}), expected {expected}";
            // The last attempt fails by design, unless kills got there first: then the failures raised are lost workers.
            if (FailsByDesign && !RaisedByDesignOrLostWorkers(error))
                return $"expected the by-design failure (or lost workers) to be raised, got {error?.GetType().Name}: {error?.Message}";
            if (!FailsByDesign && error is not null) return $"succeeded but raised {error.GetType().Name}: {error.Message}";
            var net = ledger.Net();
            foreach (var atom in _atoms)
            {
                int n = net.GetValueOrDefault(EffectTask.Key(Id, atom));
                int want = FailsByDesign ? 0 : 1;
                if (n != want) return $"task {atom}: effect applied {n} time(s) net, expected {want}";
            }
            return null;
        }
    }

    /// <summary>The worker child processes: started, killed with SIGKILL, replaced.</summary>
    private sealed class WorkerPool(string topic, string ledgerDir, int concurrency) : IAsyncDisposable
    {
        private readonly Lock _gate = new();
        private readonly List<(Process Process, TaskCompletionSource Ready)> _live = [];
        private int _started;

        public int Started => Volatile.Read(ref _started);

        public void Start()
        {
            var (file, prefix) = Self();
            var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in prefix.Concat([ChildCommand, "--topic", topic, "--ledger", ledgerDir, "--concurrency", concurrency.ToString(CultureInfo.InvariantCulture)]))
                info.ArgumentList.Add(a);
            var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start a worker process.");
            var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            process.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("ready ", StringComparison.Ordinal) == true) ready.TrySetResult(); };
            process.ErrorDataReceived += (_, e) => { if (!string.IsNullOrEmpty(e.Data)) Console.Error.WriteLine($"[worker {process.Id}] {e.Data}"); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            Interlocked.Increment(ref _started);
            lock (_gate) _live.Add((process, ready));
        }

        public async Task WaitAllReadyAsync(TimeSpan timeout)
        {
            Task[] ready;
            lock (_gate) ready = [.. _live.Select(l => l.Ready.Task)];
            await Task.WhenAll(ready).WaitAsync(timeout);
        }

        public async Task KillOneAndReplaceAsync(Random random)
        {
            Process victim;
            lock (_gate)
            {
                int i;
                lock (random) i = random.Next(_live.Count);
                victim = _live[i].Process;
                _live.RemoveAt(i);
            }
            victim.Kill(entireProcessTree: false); // SIGKILL on Unix: no goodbye, no acks, no replies
            await victim.WaitForExitAsync();
            victim.Dispose();
            Start();
        }

        public async ValueTask DisposeAsync()
        {
            List<Process> all;
            lock (_gate) all = [.. _live.Select(l => l.Process)];
            foreach (var p in all)
            {
                try { p.Kill(); await p.WaitForExitAsync(); } catch (InvalidOperationException) { }
                p.Dispose();
            }
        }

        private static (string File, string[] Prefix) Self()
        {
            var process = Environment.ProcessPath!;
            return Path.GetFileNameWithoutExtension(process) == "dotnet"
                ? (process, [typeof(WorkersChaos).Assembly.Location])
                : (process, []);
        }
    }
}
