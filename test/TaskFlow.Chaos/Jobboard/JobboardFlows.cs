using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Conductors;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>
/// The flows the jobboard chaos posts: <c>step-1 … step-N</c> in a line, then <c>fan-a</c> and <c>fan-b</c> side by side,
/// then <c>join</c>. Every task logs "exec &lt;job&gt; &lt;task&gt;" before doing anything, sleeps a little, and returns a value
/// computed only from its inputs, so the checker can recompute the expected result of every job.
/// </summary>
internal static class JobboardFlows
{
    public const string FactoryName = "chaos-steps";

    public static FlowFactoryRegistry Registry(ISideEffects? log) =>
        new FlowFactoryRegistry().Register(FactoryName, (_, args) => Build(Steps(args), DelayMs(args), log));

    public static int Steps(IReadOnlyDictionary<string, JsonElement>? args) =>
        args is not null && args.TryGetValue("steps", out var steps) ? steps.GetInt32() : throw new ArgumentException("chaos-steps needs a 'steps' argument");

    /// <summary>The steps of a posted job (its factory arguments as posted).</summary>
    public static int Steps(JsonElement? posted) => posted?.GetProperty("steps").GetInt32() ?? throw new ArgumentException("chaos-steps needs arguments");

    public static int DelayMs(IReadOnlyDictionary<string, JsonElement>? args) =>
        args is not null && args.TryGetValue("delay_ms", out var delay) ? delay.GetInt32() : 0;

    public static IEnumerable<string> TaskNames(int steps) =>
        Enumerable.Range(1, steps).Select(i => $"step-{i}").Concat(["fan-a", "fan-b", "join"]);

    public static Flow Build(int steps, int delayMs, ISideEffects? log)
    {
        var line = new LinearFlow(FactoryName);
        for (var i = 1; i <= steps; i++)
        {
            var step = i;
            line.Add(new StepTask($"step-{i}", log, delayMs, ["job", $"v{i - 1}"], $"v{i}", a => unchecked(a[1] * 31 + step)));
        }
        var fan = new UnorderedFlow("fan")
        {
            new StepTask("fan-a", log, delayMs, ["job", $"v{steps}"], "fa", a => a[1] + 1),
            new StepTask("fan-b", log, delayMs, ["job", $"v{steps}"], "fb", a => a[1] + 2),
        };
        line.Add(fan);
        line.Add(new StepTask("join", log, delayMs, ["job", "fa", "fb"], "result", a => unchecked(a[1] * 7 + a[2])));
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
        private readonly int _delayMs;
        private readonly Func<long[], long> _compute;
        private readonly string[] _inputs;

        public StepTask(string name, ISideEffects? log, int delayMs, string[] requires, string provides, Func<long[], long> compute) : base(name)
        {
            _log = log;
            _delayMs = delayMs;
            _compute = compute;
            _inputs = requires;
            Requires = requires;
            Provides = ProvidesSpec.Whole(provides);
        }

        public override async ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
        {
            var inputs = Array.ConvertAll(_inputs, arguments.Get<long>);
            _log?.Record($"exec {inputs[0]} {Name}");
            if (_delayMs > 0) await Task.Delay(_delayMs, context.CancellationToken).ConfigureAwait(false);
            return _compute(inputs);
        }

        public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
        {
            _log?.Record($"revert {arguments.Get<long>("job")} {Name}");
            return ValueTask.FromResult<object?>(null);
        }
    }
}
