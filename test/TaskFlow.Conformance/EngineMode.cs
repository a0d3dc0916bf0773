using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Workers;

namespace TaskFlow.Conformance;

/// <summary>A scenario's engine, with what must happen around its run (starting and stopping workers).</summary>
public sealed record ScenarioRun(FlowEngine Engine, Func<Task> StartAsync, Func<Task> StopAsync);

/// <summary>
/// Which engine runs the scenarios: the local serial/parallel engines, or the distributed engine whose tasks run on a
/// worker (in process, hosting the scenario's own task instances by atom name) over a worker transport.
/// </summary>
public abstract class EngineMode
{
    public static EngineMode Local { get; } = new LocalMode();

    /// <summary>The distributed engine over a fresh in-memory broker per scenario.</summary>
    public static EngineMode DistributedInMemory { get; } = new DistributedMode("distributed-memory", () => new InMemoryWorkerTransport(), ownsTransport: true);

    public abstract string Name { get; }

    public abstract ScenarioRun Create(Flow flow, bool serial, EngineOptions options);

    /// <summary>The distributed engine over <paramref name="transport"/> (shared by every scenario; each gets its own topic).</summary>
    public static EngineMode Distributed(string name, IWorkerTransport transport) => new DistributedMode(name, () => transport, ownsTransport: false);

    public static EngineMode Parse(string name, Func<IWorkerTransport>? rabbitMq = null) => name switch
    {
        "local" => Local,
        "distributed-memory" => DistributedInMemory,
        "distributed-rabbitmq" => Distributed(name, (rabbitMq ?? throw new ArgumentException("RabbitMQ is not available."))()),
        _ => throw new ArgumentException($"Unknown engine mode '{name}'; use local, distributed-memory or distributed-rabbitmq."),
    };

    private sealed class LocalMode : EngineMode
    {
        public override string Name => "local";

        public override ScenarioRun Create(Flow flow, bool serial, EngineOptions options)
        {
            var engine = serial ? FlowEngine.CreateSerial(flow, options) : FlowEngine.CreateParallel(flow, options);
            return new ScenarioRun(engine, () => Task.CompletedTask, () => Task.CompletedTask);
        }
    }

    private sealed class DistributedMode(string name, Func<IWorkerTransport> connect, bool ownsTransport) : EngineMode
    {
        public override string Name => name;

        public override ScenarioRun Create(Flow flow, bool serial, EngineOptions engineOptions)
        {
            var transport = connect();
            var topic = "conformance." + Guid.NewGuid().ToString("N");
            var options = new DistributedEngineOptions
            {
                Transport = transport,
                Topics = [topic],
                TaskName = DistributedEngineOptions.ByAtomName,
                RequestTimeout = TimeSpan.FromSeconds(30),
                Engine = engineOptions,
            };
            // The serial scenarios keep the serial engine (their traces are totally ordered); it runs tasks remotely too.
            var engine = serial
                ? FlowEngine.CreateSerial(flow, new EngineOptions
                {
                    Store = engineOptions.Store,
                    Persistence = engineOptions.Persistence,
                    FlowDetailId = engineOptions.FlowDetailId,
                    Executor = new DistributedTaskExecutor(options),
                })
                : FlowEngine.CreateDistributed(flow, options);
            TaskWorker? worker = null;
            return new ScenarioRun(engine,
                async () =>
                {
                    var tasks = TasksOf(flow).ToList();
                    if (tasks.Count == 0) return;
                    worker = new TaskWorker(transport, new TaskWorkerOptions { Topic = topic, MaxConcurrency = 16, HeartbeatInterval = TimeSpan.FromSeconds(2) });
                    foreach (var task in tasks) worker.AddTask(task.Name, () => task);
                    await worker.StartAsync();
                },
                async () =>
                {
                    if (worker is not null) await worker.DisposeAsync();
                    if (ownsTransport) await transport.DisposeAsync();
                });
        }

        private static IEnumerable<FlowTask> TasksOf(Flow flow)
        {
            foreach (var node in flow.Items)
            {
                if (node is FlowTask t) yield return t;
                else if (node is Flow f) foreach (var inner in TasksOf(f)) yield return inner;
            }
        }
    }
}
