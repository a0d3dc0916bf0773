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
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// <c>workers</c>: distributed engines in this process, worker child processes on real RabbitMQ, optionally a killer
/// that SIGKILLs a worker every K started tasks and starts a replacement. The <c>backlog</c> scenario gives the
/// workers fewer slots than there are requests and a RequestTimeout below the queue wait, so timeouts really fire.
/// Every apply and revert is logged by the workers with its request id and counted gross; after the last flow ends
/// (and the topic queue has drained) a grace period passes before the ledger is read. Fails on: a request applied
/// twice, an effect applied after its flow ended REVERTED, a REVERTED flow with an effect no revert undid, a SUCCESS
/// flow whose task is not applied exactly once (unreverted), a flow ending otherwise than expected.
/// <c>--self-test true</c> runs the same against a deliberately broken variant (workers ignore deadlines and
/// withdrawals, the engine takes a timeout as "did not run"; test code only), which must fail.
/// <c>workers-finding1</c> is the standalone reproduction of review finding 1; <c>workers-bench</c> measures round trips.
/// </summary>
public static class WorkersChaos
{
    public const string ChildCommand = "worker-process";

    private const string AmqpVariable = "TASKFLOW_AMQP";
    private const string QueuePrefix = "taskflow.chaos.";
    private static readonly TimeSpan Heartbeat = TimeSpan.FromMilliseconds(500);

    /// <summary>One run's settings (the scenario's defaults, overridden by options).</summary>
    private sealed record Settings(string Scenario, int Workers, int Slots, int Flows, int Concurrency, int KillEvery, int Seed,
        TimeSpan RequestTimeout, TimeSpan Margin, (int Min, int Max) ExecuteMs, TimeSpan Grace, bool Broken);

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args, "scenario", "workers", "slots", "flows", "kill-every", "concurrency", "seed", "request-timeout-ms", "margin-ms", "execute-ms", "grace-ms", "self-test");
        var scenario = o.Get("scenario", "kills");
        bool backlog = scenario switch
        {
            "kills" => false,
            "backlog" => true,
            _ => throw new ArgumentException($"--scenario must be kills or backlog, not '{scenario}'."),
        };
        bool selfTest = o.Get("self-test", "false") switch
        {
            "true" => true,
            "false" => false,
            var v => throw new ArgumentException($"--self-test must be true or false, not '{v}'."),
        };
        // kills: requests queue for well under a second and a timeout practically never fires; killed workers are the fault.
        // backlog: 2 workers x 2 slots under 24 flows at once (each with up to 3 tasks in parallel) of 100-300 ms:
        // requests wait a second or more in the queue, past the 0.8 s RequestTimeout (some 200 timeouts a run).
        var requestTimeout = TimeSpan.FromMilliseconds(o.Int("request-timeout-ms", backlog ? 800 : 20_000));
        var margin = TimeSpan.FromMilliseconds(o.Int("margin-ms", backlog ? 500 : 2000));
        var execute = o.Get("execute-ms", backlog ? "100-300" : "2-25").Split('-');
        var executeMs = (int.Parse(execute[0], CultureInfo.InvariantCulture), int.Parse(execute[^1], CultureInfo.InvariantCulture));
        var settings = new Settings(scenario,
            Workers: o.Int("workers", backlog ? 2 : 3), Slots: o.Int("slots", backlog ? 2 : 4), Flows: o.Int("flows", backlog ? 60 : 100),
            Concurrency: o.Int("concurrency", backlog ? 24 : 10), KillEvery: o.Int("kill-every", backlog ? 0 : 50), Seed: o.Int("seed", Environment.TickCount),
            RequestTimeout: requestTimeout, Margin: margin, ExecuteMs: executeMs,
            // Counted from when the topic queue is empty: long enough for a request a worker still held then to have
            // run, were it going to.
            Grace: TimeSpan.FromMilliseconds(o.Int("grace-ms", (int)Math.Min(requestTimeout.TotalMilliseconds + margin.TotalMilliseconds, 10_000) + 2000)),
            Broken: selfTest);
        if (Amqp() is not { } amqp) return 2;
        int failed = await RunScenarioAsync(settings, amqp);
        if (!selfTest) return failed == 0 ? 0 : 1;
        if (failed > 0)
        {
            Console.WriteLine($"self-test: the broken variant FAILED as expected ({failed} failed)");
            return 0;
        }
        Console.WriteLine("self-test: the broken variant PASSED: the checks cannot see the bug they are for");
        return 1;
    }

    /// <summary>Runs one scenario; returns the number of failures (printed, with the summary line).</summary>
    private static async Task<int> RunScenarioAsync(Settings s, string amqp)
    {
        var random = new Random(s.Seed);
        var runId = Guid.NewGuid().ToString("N")[..12];
        var topic = "chaos." + runId;
        var ledgerDir = Directory.CreateTempSubdirectory("taskflow-chaos-workers-").FullName;
        var ledger = new EffectLedger(ledgerDir);
        Console.WriteLine($"workers chaos{(s.Broken ? " SELF-TEST (broken variant: deadlines ignored, timeout taken as 'did not run')" : "")}: scenario {s.Scenario}, " +
            $"{s.Workers} workers x {s.Slots} slots, {s.Flows} flows ({s.Concurrency} at once), kill every {(s.KillEvery > 0 ? $"{s.KillEvery} tasks" : "- (none)")}, " +
            $"RequestTimeout {s.RequestTimeout.TotalSeconds:0.###} s, margin {s.Margin.TotalSeconds:0.###} s, execute {s.ExecuteMs.Min}-{s.ExecuteMs.Max} ms, " +
            $"grace {s.Grace.TotalSeconds:0.#} s, seed {s.Seed}, topic {topic}, ledger {ledgerDir}");

        var engineLog = new CountingLogger();
        await using var connection = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = QueuePrefix, TopicQueueExpiry = TimeSpan.FromMinutes(5) });
        IWorkerTransport transport = s.Broken ? new TimeoutMeansNotRunTransport(connection, s.RequestTimeout) : connection;
        await using var pool = new WorkerPool(topic, ledgerDir, s.Slots, s.ExecuteMs, s.Broken);
        for (int i = 0; i < s.Workers; i++) pool.Start();
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

        var cases = Enumerable.Range(0, s.Flows).Select(i => new FlowCase($"{runId}-{i}", FailsByDesign: random.Next(5) == 0, Shape: random.Next(3))).ToList();
        var outcomes = new ConcurrentBag<(FlowCase Case, FlowState State, Exception? Error, long EndedTicks)>();
        using var gate = new SemaphoreSlim(s.Concurrency);
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(cases.Select(async c =>
        {
            await gate.WaitAsync();
            try
            {
                var engine = FlowEngine.CreateDistributed(c.Build(ledger, s.ExecuteMs), new DistributedEngineOptions
                {
                    Transport = transport,
                    Topics = [topic],
                    TaskName = _ => EffectTask.RemoteName,
                    RequestTimeout = s.RequestTimeout,
                    ClockSkewMargin = s.Margin,
                    WorkerExpiry = Heartbeat * 4,
                    // Reverts queue behind the backlog too; they are idempotent, and must get through.
                    RevertResends = 50,
                    Logger = engineLog,
                    Engine = new EngineOptions { Store = { ["flow_id"] = c.Id }, MaxDegreeOfParallelism = 4 },
                });
                using var _ = engine.Notifications.Subscribe<AtomStateChanged>(e =>
                {
                    if (e.Kind == AtomKind.Task && e.State == AtomState.Running && Interlocked.Increment(ref started) % Math.Max(s.KillEvery, 1) == 0 && s.KillEvery > 0)
                        killRequests.Writer.TryWrite(0);
                });
                Exception? error = null;
                try { await engine.RunAsync().WaitAsync(TimeSpan.FromMinutes(10)); }
                catch (Exception e) { error = e; }
                outcomes.Add((c, engine.State, error, DateTime.UtcNow.Ticks));
            }
            finally { gate.Release(); }
        }));
        killRequests.Writer.Complete();
        await killer;
        var flowsTook = stopwatch.Elapsed;

        // Late requests may still be queued, or held by a worker: let the queue drain, then a grace period pass.
        await WaitForEmptyQueueAsync(amqp, QueuePrefix + topic, TimeSpan.FromSeconds(120));
        await Task.Delay(s.Grace);
        var entries = ledger.Read();
        var known = cases.ToDictionary(c => c.Id, StringComparer.Ordinal);
        int passed = 0, failed = 0;
        var states = new Dictionary<FlowState, int>();
        foreach (var (c, state, error, ended) in outcomes.OrderBy(r => r.Case.Id, StringComparer.Ordinal))
        {
            states[state] = states.GetValueOrDefault(state) + 1;
            var problem = c.Check(state, error, ended, entries.Where(e => e.Flow == c.Id).ToList());
            if (problem is null) passed++;
            else { failed++; Console.WriteLine($"FAIL {c.Id}: {problem}"); }
        }
        // Gross, per request id: a request applied twice ran twice.
        foreach (var g in entries.Where(e => e.Verb == "apply").GroupBy(e => e.RequestId).Where(g => g.Count() > 1))
        {
            failed++;
            Console.WriteLine($"FAIL request {g.Key} ({g.First().Flow}/{g.First().Atom}): applied {g.Count()} times");
        }
        foreach (var e in entries.Where(e => e.Verb is "apply" or "revert" && !known.ContainsKey(e.Flow)))
        {
            failed++;
            Console.WriteLine($"FAIL {e.Verb} of unknown flow {e.Flow} by request {e.RequestId}");
        }

        var applies = entries.Count(e => e.Verb == "apply");
        var reverts = entries.Where(e => e.Verb == "revert").ToList();
        var refusals = entries.Where(e => e.Verb == "refuse").GroupBy(e => e.Target).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}");
        Console.WriteLine($"flows: {string.Join(", ", states.OrderBy(kv => kv.Key).Select(kv => $"{kv.Value} {kv.Key.ToString().ToUpperInvariant()}"))} " +
            $"({cases.Count(c => c.FailsByDesign)} fail by design); {started} tasks started, {kills} workers killed, {pool.Started} worker processes in all");
        Console.WriteLine($"requests: {engineLog.TimedOut} timed out at the engine ({engineLog.Refused} of them {(s.Broken ? "taken as not run by the broken variant" : "refused unrun by a worker")}), " +
            $"refused by workers: {(refusals.Any() ? string.Join(", ", refusals) : "none")}");
        Console.WriteLine($"ledger (gross): {applies} applies by {entries.Where(e => e.Verb == "apply").Select(e => e.RequestId).Distinct().Count()} requests, " +
            $"{reverts.Count} reverts ({reverts.Count(r => r.Target == EffectLedger.Blind)} blind, {reverts.Count(r => r.Target == EffectLedger.Nothing)} nothing to undo, " +
            $"{reverts.Count(r => r.Target is not (EffectLedger.Blind or EffectLedger.Nothing))} of a known effect); flows took {flowsTook.TotalSeconds:0.0} s, grace {s.Grace.TotalSeconds:0.#} s");
        Console.WriteLine($"{passed} passed, {failed} failed");
        if (failed == 0) Directory.Delete(ledgerDir, recursive: true);
        else Console.WriteLine($"ledger kept in {ledgerDir}");
        return passed > 0 ? failed : Math.Max(failed, 1);
    }

    /// <summary>The standalone reproduction of review finding 1 on the in-memory transport and on RabbitMQ.</summary>
    public static async Task<int> RunFinding1Async(string[] args)
    {
        var o = Options.Parse(args, "transport");
        var transports = o.Get("transport", "both") switch
        {
            "both" => new[] { "memory", "rabbitmq" },
            "memory" => ["memory"],
            "rabbitmq" => ["rabbitmq"],
            var t => throw new ArgumentException($"--transport must be memory, rabbitmq or both, not '{t}'."),
        };
        int reproduced = 0;
        foreach (var name in transports)
        {
            Func<Task<IWorkerTransport>> connect;
            if (name == "memory")
            {
                var broker = new InMemoryWorkerBroker();
                connect = () => Task.FromResult<IWorkerTransport>(new InMemoryWorkerTransport(broker));
            }
            else
            {
                if (Amqp() is not { } amqp) return 2;
                connect = async () => await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = QueuePrefix, TopicQueueExpiry = TimeSpan.FromMinutes(5) });
            }
            Console.WriteLine($"finding 1 on the {name} transport:");
            var outcome = await Finding1Reproduction.RunAsync(connect);
            Console.WriteLine(outcome.Report);
            if (outcome.Reproduced) reproduced++;
        }
        Console.WriteLine(reproduced == 0 ? $"finding 1: not reproduced ({string.Join(", ", transports)})" : $"finding 1: REPRODUCED on {reproduced} of {transports.Length} transport(s)");
        return reproduced == 0 ? 0 : 1;
    }

    private static async Task WaitForEmptyQueueAsync(string amqp, string queue, TimeSpan limit)
    {
        await using var connection = await new ConnectionFactory { Uri = new Uri(amqp) }.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var until = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < until)
        {
            try
            {
                if ((await channel.QueueDeclarePassiveAsync(queue)).MessageCount == 0) return;
            }
            catch (global::RabbitMQ.Client.Exceptions.OperationInterruptedException) { return; } // no such queue: nothing queued
            await Task.Delay(200);
        }
    }

    /// <summary>Counts the engine's request failures: timeouts, and those a worker refused.</summary>
    private sealed class CountingLogger : ILogger
    {
        private int _timedOut, _refused;
        public int TimedOut => Volatile.Read(ref _timedOut);
        public int Refused => Volatile.Read(ref _refused);
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id != 22) return; // RequestFailed
            var text = formatter(state, exception);
            if (text.Contains("refused unrun", StringComparison.Ordinal)) { Interlocked.Increment(ref _refused); Interlocked.Increment(ref _timedOut); }
            else if (text.Contains("timed out", StringComparison.Ordinal)) Interlocked.Increment(ref _timedOut);
        }
    }

    /// <summary>Round trips through the distributed executor, over RabbitMQ, with each number of worker processes.</summary>
    public static async Task<int> RunBenchmarkAsync(string[] args)
    {
        var o = Options.Parse(args, "workers", "requests", "concurrency");
        if (Amqp() is not { } amqp) return 2;
        int requests = o.Int("requests", 4000), concurrency = o.Int("concurrency", 64);
        await using var transport = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = QueuePrefix, TopicQueueExpiry = TimeSpan.FromMinutes(5) });
        int failed = 0;
        foreach (var count in o.Get("workers", "1,4").Split(',').Select(w => int.Parse(w, CultureInfo.InvariantCulture)))
        {
            var topic = "bench." + Guid.NewGuid().ToString("N")[..12];
            await using var pool = new WorkerPool(topic, Path.GetTempPath(), concurrency: 16, plain: true);
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
        var o = Options.Parse(args, "topic", "ledger", "concurrency", "execute-ms", "broken", "plain");
        if (Amqp() is not { } amqp) return 2;
        await using var connection = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp, QueuePrefix = QueuePrefix, TopicQueueExpiry = TimeSpan.FromMinutes(5), ClientName = $"chaos-worker-{Environment.ProcessId}" });
        // The benchmark's workers use the transport as it is; the chaos workers name each request in the ledger.
        IWorkerTransport transport = o.Get("plain", "false") == "true" ? connection : new WorkerSideTransport(connection, broken: o.Get("broken", "false") == "true");
        var ledger = new EffectLedger(o.Require("ledger"));
        var execute = o.Get("execute-ms", "2-25").Split('-');
        var executeMs = (int.Parse(execute[0], CultureInfo.InvariantCulture), int.Parse(execute[^1], CultureInfo.InvariantCulture));
        var worker = new TaskWorker(transport, new TaskWorkerOptions { Topic = o.Require("topic"), MaxConcurrency = o.Int("concurrency", 4), HeartbeatInterval = Heartbeat }, new RefusalLedger(ledger));
        worker.AddTask(EffectTask.RemoteName, () => new EffectTask(ledger, executeMs));
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

    /// <summary>Writes the worker's refusals (log event 9) into the ledger, for the summary's counts.</summary>
    private sealed class RefusalLedger(EffectLedger ledger) : ILogger<TaskWorker>
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id != 9 || state is not IReadOnlyList<KeyValuePair<string, object?>> values) return;
            string Value(string name) => values.FirstOrDefault(v => v.Key == name).Value?.ToString() ?? "?";
            ledger.Append("refuse", "-", "-", Value("RequestId"), Value("Reason"));
        }
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

        public Flow Build(EffectLedger ledger, (int Min, int Max) executeMs)
        {
            EffectTask T(string name, bool fail = false)
            {
                _atoms.Add(name);
                return new EffectTask(ledger, executeMs) { Name = name, Inject = fail ? new Dictionary<string, object?> { ["fail"] = true } : null };
            }
            // Kills and timeouts turn into task failures; the retry controller retries them (a failed attempt is reverted first).
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

        // Worker faults (timeouts, lost workers) surface as WorkerTimeoutException.
        private static bool OnlyByDesignOrWorkerFaults(Exception? error, bool allowByDesign) => error switch
        {
            WrappedFailureException w => w.Failures.All(f => f.Check<WorkerTimeoutException>() || (allowByDesign && f.Message.Contains("fails by design", StringComparison.Ordinal))),
            WorkerTimeoutException => true,
            _ => false,
        };

        /// <summary>The flow's end state against its ledger lines (gross: every apply must be accounted for).</summary>
        public string? Check(FlowState state, Exception? error, long endedTicks, List<LedgerEntry> lines)
        {
            if (FailsByDesign ? state != FlowState.Reverted : state is not (FlowState.Success or FlowState.Reverted))
                return $"ended {state} ({error?.GetType().Name}: {error?.Message}), expected {(FailsByDesign ? "REVERTED" : "SUCCESS, or REVERTED by worker timeouts")}";
            if (state == FlowState.Success && error is not null) return $"succeeded but raised {error.GetType().Name}: {error.Message}";
            // The last attempt fails by design, unless worker faults got there first; a flow not failing by design may
            // give up only because of worker faults.
            if (state == FlowState.Reverted && !OnlyByDesignOrWorkerFaults(error, FailsByDesign))
                return $"reverted, raising {error?.GetType().Name}: {error?.Message}";
            foreach (var atom in _atoms)
            {
                var applies = lines.Where(l => l.Verb == "apply" && l.Atom == atom).ToList();
                var reverts = lines.Where(l => l.Verb == "revert" && l.Atom == atom).ToList();
                // An apply is undone by a revert of that very effect, or by a blind revert (unknown outcome) after it.
                var live = applies.Where(a => !reverts.Any(r => r.Target == a.RequestId || (r.Target == EffectLedger.Blind && r.Ticks > a.Ticks))).ToList();
                if (state == FlowState.Reverted)
                {
                    if (live.FirstOrDefault(a => a.Ticks > endedTicks) is { } late)
                        return $"task {atom}: applied by request {late.RequestId} {TimeSpan.FromTicks(late.Ticks - endedTicks).TotalMilliseconds:0} ms after its flow ended REVERTED";
                    if (live.Count > 0)
                        return $"task {atom}: {live.Count} effect(s) (request(s) {string.Join(", ", live.Select(a => a.RequestId))}) applied and never reverted in a REVERTED flow ({applies.Count} applies, {reverts.Count} reverts)";
                }
                else if (live.Count != 1)
                {
                    var after = live.Count(a => a.Ticks > endedTicks);
                    return $"task {atom}: {live.Count} unreverted effect(s) in a SUCCESS flow, expected 1 ({applies.Count} applies, {reverts.Count} reverts{(after > 0 ? $", {after} applied after the flow ended" : "")})";
                }
            }
            return null;
        }
    }

    /// <summary>The worker child processes: started, killed with SIGKILL, replaced.</summary>
    private sealed class WorkerPool(string topic, string ledgerDir, int concurrency, (int Min, int Max) executeMs = default, bool broken = false, bool plain = false) : IAsyncDisposable
    {
        private readonly Lock _gate = new();
        private readonly List<(Process Process, TaskCompletionSource Ready)> _live = [];
        private int _started;

        public int Started => Volatile.Read(ref _started);

        public void Start()
        {
            var (file, prefix) = Self();
            var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in prefix.Concat([ChildCommand, "--topic", topic, "--ledger", ledgerDir, "--concurrency", concurrency.ToString(CultureInfo.InvariantCulture),
                "--execute-ms", $"{executeMs.Min}-{executeMs.Max}", "--broken", broken ? "true" : "false", "--plain", plain ? "true" : "false"]))
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
