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
/// after its flow reverted"): two workers with one slot each are busy for 2 s; a flow's "charge" execute, with a
/// RequestTimeout of 0.8 s, waits behind them. The charge and its refund are recorded by a billing system the task owns
/// (its revert refunds a charge it finds, as a real task would). Reproduced when, once the flow has ended and a grace
/// period has passed, a charge stands unrefunded in a flow that did not succeed, or a charge happened after the flow
/// ended. Uses only the public API that existed before the fix, so it runs against both; compiled into the chaos
/// program (<c>workers-finding1</c>) and into the worker test projects.
/// </summary>
public static class Finding1Reproduction
{
    public sealed record Outcome(bool Reproduced, FlowState FlowState, string Report);

    private static readonly TimeSpan Busy = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(0.8);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(3);

    /// <summary>Runs the scenario over connections made by <paramref name="connect"/> (one for the engine, one per worker).</summary>
    public static async Task<Outcome> RunAsync(Func<Task<IWorkerTransport>> connect)
    {
        var clock = Stopwatch.StartNew();
        var events = new ConcurrentQueue<string>();
        void Log(string what) => events.Enqueue($"{clock.ElapsedMilliseconds,6} ms  {what}");
        var billing = new Billing();
        var busyStarted = new CountdownEvent(2);
        var topic = "finding1." + Guid.NewGuid().ToString("N")[..12];

        var busy = FlowTask.Create("busy", async () => { busyStarted.Signal(); await Task.Delay(Busy); return 0; });
        var charge = FlowTask.Create("charge",
            () => { billing.Charge(clock.ElapsedMilliseconds); Log("charge EXECUTE ran: charged"); return 1; },
            () => Log(billing.RefundIfCharged() ? "charge REVERT ran: refunded" : "charge REVERT ran: nothing to refund"));

        var engineSide = await connect();
        var workerSides = new[] { await connect(), await connect() };
        var workers = new List<TaskWorker>();
        try
        {
            foreach (var side in workerSides)
            {
                var worker = new TaskWorker(side, new TaskWorkerOptions { Topic = topic, MaxConcurrency = 1, HeartbeatInterval = TimeSpan.FromMilliseconds(200) });
                worker.AddTask("busy", () => busy).AddTask("charge", () => charge);
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
            var busyRuns = Enumerable.Range(0, 2)
                .Select(i => FlowEngine.CreateDistributed(new LinearFlow("busy" + i) { busy }, Options(TimeSpan.FromSeconds(30))).RunAsync())
                .ToList();
            if (!busyStarted.Wait(TimeSpan.FromSeconds(30))) throw new TimeoutException("the two busy tasks did not start");
            Log("both workers busy for 2 s");

            var engine = FlowEngine.CreateDistributed(new LinearFlow("billing") { charge }, Options(RequestTimeout));
            Log("charge flow starts (RequestTimeout 0.8 s)");
            Exception? error = null;
            try { await engine.RunAsync().WaitAsync(TimeSpan.FromSeconds(60)); }
            catch (Exception e) { error = e; }
            long endedAt = clock.ElapsedMilliseconds;
            Log($"charge flow ended {engine.State}{(error is null ? "" : $" ({error.GetType().Name}: {First(error.Message)})")}");
            await Task.WhenAll(busyRuns).WaitAsync(TimeSpan.FromSeconds(60));
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
