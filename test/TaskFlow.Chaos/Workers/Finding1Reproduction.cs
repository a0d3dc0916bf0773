using System.Collections.Concurrent;
using System.Diagnostics;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.States;
using TaskFlow.Workers;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// A standalone reproduction of finding 1 of the reliability review ("a timed-out worker request runs
/// after its flow reverted"): two workers with one slot each; W1 is busy for 4 s and holds the flow's "charge" execute
/// (RequestTimeout 0.8 s) for its slot; W2 becomes busy for 2 s. The charge and its refund are recorded by a billing
/// system the task owns (its revert refunds a charge it finds, as a real task would). Before the fix: the execute
/// times out at 0.8 s, its revert runs on W2 at 2 s and finds nothing to refund, the flow ends REVERTED, and at 4 s W1
/// runs the stale execute: the charge stands. Reproduced when, once the flow has ended and a grace
/// period has passed, a charge stands unrefunded in a flow that did not succeed, or a charge happened after the flow
/// ended. Uses only the public API that existed before the fix, so it runs against both; compiled into the chaos
/// program (<c>workers-finding1</c>) and into the worker test projects.
/// </summary>
public static class Finding1Reproduction
{
    public sealed record Outcome(bool Reproduced, FlowState FlowState, string Report);

    private static readonly TimeSpan LongBusy = TimeSpan.FromSeconds(4);
    private static readonly TimeSpan ShortBusy = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(0.8);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(3);

    /// <summary>Runs the scenario over connections made by <paramref name="connect"/> (one for the engine, one per worker).</summary>
    public static async Task<Outcome> RunAsync(Func<Task<IWorkerTransport>> connect)
    {
        var clock = Stopwatch.StartNew();
        var events = new ConcurrentQueue<string>();
        void Log(string what) => events.Enqueue($"{clock.ElapsedMilliseconds,6} ms  {what}");
        var billing = new Billing();
        var longStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var shortStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var topic = "finding1." + Guid.NewGuid().ToString("N")[..12];

        var longBusy = FlowTask.Create("long_busy", async () => { longStarted.TrySetResult(); await Task.Delay(LongBusy); return 0; });
        var shortBusy = FlowTask.Create("short_busy", async () => { shortStarted.TrySetResult(); await Task.Delay(ShortBusy); return 0; });
        var charge = FlowTask.Create("charge",
            () => { billing.Charge(clock.ElapsedMilliseconds); Log("charge EXECUTE ran: charged"); return 1; },
            () => Log(billing.RefundIfCharged() ? "charge REVERT ran: refunded" : "charge REVERT ran: nothing to refund"));

        var engineSide = await connect();
        var workerSides = new[] { await connect(), await connect() };
        var workers = new List<TaskWorker>();
        try
        {
            async Task StartWorkerAsync(IWorkerTransport side)
            {
                // Heartbeats every second (presumed lost after 3 s), so a loaded machine does not lose a busy worker.
                var worker = new TaskWorker(side, new TaskWorkerOptions { Topic = topic, MaxConcurrency = 1, HeartbeatInterval = TimeSpan.FromSeconds(1) });
                worker.AddTask("long_busy", () => longBusy).AddTask("short_busy", () => shortBusy).AddTask("charge", () => charge);
                await worker.StartAsync();
                workers.Add(worker);
            }
            DistributedEngineOptions Options(TimeSpan requestTimeout) => new()
            {
                Transport = engineSide,
                Topics = [topic],
                TaskName = DistributedEngineOptions.ByAtomName,
                RequestTimeout = requestTimeout,
            };
            Task Run(FlowTask task) => FlowEngine.CreateDistributed(new LinearFlow(task.Name) { task }, Options(TimeSpan.FromSeconds(30))).RunAsync();

            // W1 alone: it starts the long task, then takes the charge execute and holds it, waiting for its slot.
            await StartWorkerAsync(workerSides[0]);
            var busyRuns = new List<Task> { Run(longBusy) };
            await longStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Log("W1 busy for 4 s");
            var engine = FlowEngine.CreateDistributed(new LinearFlow("billing") { charge }, Options(RequestTimeout));
            Log("charge flow starts (RequestTimeout 0.8 s)");
            var chargeRun = engine.RunAsync();
            await Task.Delay(300);
            // Then W2, busy for 2 s: the revert will wait for it.
            await StartWorkerAsync(workerSides[1]);
            busyRuns.Add(Run(shortBusy));
            await shortStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Log("W2 busy for 2 s");

            Exception? error = null;
            try { await chargeRun.WaitAsync(TimeSpan.FromSeconds(60)); }
            catch (Exception e) { error = e; }
            long endedAt = clock.ElapsedMilliseconds;
            Log($"charge flow ended {engine.State}{(error is null ? "" : $" ({error.GetType().Name}: {First(error.Message)})")}");
            try { await Task.WhenAll(busyRuns).WaitAsync(TimeSpan.FromSeconds(60)); }
            catch (Exception e) { Log($"a busy flow failed ({e.GetType().Name}: {First(e.Message)}); the charge is what is checked"); }
            await Task.Delay(Grace);
            Log($"after a {Grace.TotalSeconds:0} s grace: {billing.Describe()}");

            var late = billing.ChargesAfter(endedAt);
            bool reproduced = late > 0 || (engine.State != FlowState.Success && billing.Outstanding > 0);
            var report = string.Join(Environment.NewLine, events) + Environment.NewLine +
                (reproduced
                    ? $"REPRODUCED: the flow ended {engine.State}, yet {billing.Outstanding} charge(s) stand ({late} made after the flow ended)"
                    : $"not reproduced: the flow ended {engine.State} and {billing.Outstanding} charge(s) stand");
            return new Outcome(reproduced, engine.State, report);
        }
        finally
        {
            foreach (var w in workers) await w.StopAsync();
            foreach (var side in workerSides) await side.DisposeAsync();
            await engineSide.DisposeAsync();
        }
    }

    private static string First(string message) => message.Length <= 160 ? message : message[..160] + "…";

    /// <summary>The external system the task owns: charges and refunds, in the order they happened.</summary>
    private sealed class Billing
    {
        private readonly Lock _gate = new();
        private readonly List<long> _charges = [];
        private int _refunds;

        public void Charge(long at)
        {
            lock (_gate) _charges.Add(at);
        }

        public bool RefundIfCharged()
        {
            lock (_gate)
            {
                if (_charges.Count <= _refunds) return false;
                _refunds++;
                return true;
            }
        }

        public int Outstanding
        {
            get { lock (_gate) return _charges.Count - _refunds; }
        }

        public int ChargesAfter(long at)
        {
            lock (_gate) return _charges.Count(c => c > at);
        }

        public string Describe()
        {
            lock (_gate) return $"{_charges.Count} charge(s), {_refunds} refund(s)";
        }
    }
}
