using TaskFlow.Engines;
using TaskFlow.Flows;

namespace TaskFlow.Workers;

/// <summary>The worker-based engine: <c>FlowEngine.CreateDistributed(flow, options)</c>.</summary>
public static class DistributedFlowEngine
{
    extension(FlowEngine)
    {
        /// <summary>
        /// A parallel engine whose tasks run on remote workers (TaskFlow's worker-based engine). The flow's state,
        /// scheduling, retries and persistence stay in this process; each task's execute and revert is sent to a live
        /// worker advertising it, through <see cref="DistributedEngineOptions.Transport"/>.
        /// </summary>
        /// <exception cref="ArgumentException">The options are invalid, or already name an executor.</exception>
        public static FlowEngine CreateDistributed(Flow flow, DistributedEngineOptions options)
        {
            ArgumentNullException.ThrowIfNull(flow);
            ArgumentNullException.ThrowIfNull(options);
            var engine = options.Engine ?? new EngineOptions();
            if (engine.Executor is not null)
                throw new ArgumentException("DistributedEngineOptions.Engine.Executor is set; the distributed engine supplies its own executor.", nameof(options));
            return FlowEngine.CreateParallel(flow, engine with { Executor = new DistributedTaskExecutor(options) });
        }
    }
}
