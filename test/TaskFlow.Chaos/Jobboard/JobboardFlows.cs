using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Conductors;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>
/// The flows the jobboard chaos posts: <c>step-1 … step-N</c> in a line, then <c>fan-a</c> and <c>fan-b</c> side by side,
/// then <c>join</c>. Every task logs "exec &lt;job&gt; &lt;task&gt; &lt;epoch&gt; &lt;start&gt;" before doing anything (the epoch
/// is the claim count of the conductor running it, the time the monotonic clock every process on the host shares),
/// sleeps a little, logs "end … &lt;start&gt; &lt;end&gt; &lt;outcome&gt;", and returns a value computed only from its inputs,
/// so the checker can recompute the expected result of every job.
/// </summary>
internal static class JobboardFlows
{
    public const string FactoryName = "chaos-steps";

    /// <param name="log">Where executions are logged; null for none (the benchmark).</param>
    /// <param name="epochOf">The claim epoch this process holds for a job index (read when the flow is built, right after the claim).</param>
    public static FlowFactoryRegistry Registry(ISideEffects? log, Func<long, long>? epochOf = null) =>
        new FlowFactoryRegistry().Register(FactoryName, (_, args) => Build(Steps(args), DelayMs(args), log, epochOf is null ? 0 : epochOf(JobIndex(args))));

    /// <summary>The job's index, which the harness also puts in the factory arguments so the flow knows its job before it runs.</summary>
    public static long JobIndex(IReadOnlyDictionary<string, JsonElement>? args) =>
        args is not null && args.TryGetValue("job", out var job) ? job.GetInt64() : -1;

    public static int Steps(IReadOnlyDictionary<string, JsonElement>? args) =>
        args is not null && args.TryGetValue("steps", out var steps) ? steps.GetInt32() : throw new ArgumentException("chaos-steps needs a 'steps' argument");

    /// <summary>The steps of a posted job (its factory arguments as posted).</summary>
    public static int Steps(JsonElement? posted) => posted?.GetProperty("steps").GetInt32() ?? throw new ArgumentException("chaos-steps needs arguments");

    public static int DelayMs(IReadOnlyDictionary<string, JsonElement>? args) =>
        args is not null && args.TryGetValue("delay_ms", out var delay) ? delay.GetInt32() : 0;

    public static IEnumerable<string> TaskNames(int steps) =>
        Enumerable.Range(1, steps).Select(i => $"step-{i}").Concat(["fan-a", "fan-b", "join"]);

    public static Flow Build(int steps, int delayMs, ISideEffects? log, long epoch = 0)
    {
        var line = new LinearFlow(FactoryName);
        for (var i = 1; i <= steps; i++)
        {
            var step = i;
            line.Add(new StepTask($"step-{i}", log, epoch, delayMs, ["job", $"v{i - 1}"], $"v{i}", a => unchecked(a[1] * 31 + step)));
        }
        var fan = new UnorderedFlow("fan")
        {
            new StepTask("fan-a", log, epoch, delayMs, ["job", $"v{steps}"], "fa", a => a[1] + 1),
            new StepTask("fan-b", log, epoch, delayMs, ["job", $"v{steps}"], "fb", a => a[1] + 2),
        };
        line.Add(fan);
        line.Add(new StepTask("join", log, epoch, delayMs, ["job", "fa", "fb"], "result", a => unchecked(a[1] * 7 + a[2])));
        return line;
    }

    /// <summary>What <c>join</c> must have returned for a job whose store held <c>v0</c>.</summary>
    public static long ExpectedResult(int steps, long v0)
    {
        var v = v0;
        for (var i = 1; i <= steps; i++) v = unchecked(v * 31 + i);
        return unchecked((v + 1) * 7 + (v + 2));
    }

    private sealed class StepTask : FlowTask
    {
        private readonly ISideEffects? _log;
        private readonly long _epoch;
        private readonly int _delayMs;
        private readonly Func<long[], long> _compute;
        private readonly string[] _inputs;

        public StepTask(string name, ISideEffects? log, long epoch, int delayMs, string[] requires, string provides, Func<long[], long> compute) : base(name)
        {
            _log = log;
            _epoch = epoch;
            _delayMs = delayMs;
            _compute = compute;
            _inputs = requires;
            Requires = requires;
            Provides = ProvidesSpec.Whole(provides);
        }

        public override async ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
        {
            var inputs = Array.ConvertAll(_inputs, arguments.Get<long>);
            var start = System.Diagnostics.Stopwatch.GetTimestamp();
            _log?.Record($"exec {inputs[0]} {Name} {_epoch} {start}");
            var outcome = "failed";
            try
            {
                if (_delayMs > 0) await Task.Delay(_delayMs, context.CancellationToken).ConfigureAwait(false);
                outcome = "ok";
                return _compute(inputs);
            }
            catch (OperationCanceledException)
            {
                outcome = "cancelled";
                throw;
            }
            finally
            {
                _log?.Record($"end {inputs[0]} {Name} {_epoch} {start} {System.Diagnostics.Stopwatch.GetTimestamp()} {outcome}");
            }
        }

        public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
        {
            _log?.Record($"revert {arguments.Get<long>("job")} {Name}");
            return ValueTask.FromResult<object?>(null);
        }
    }
}
