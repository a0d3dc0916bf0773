using TaskFlow.Atoms;
using TaskFlow.Failures;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// The chaos flows' task: execute applies an effect (a ledger line) after a short random delay, so kills land
/// mid-execution, and fails when told to; revert undoes the effect only when it is applied, so it is idempotent and
/// correct whether or not a killed execute got as far as applying it.
/// </summary>
public sealed class EffectTask : FlowTask
{
    public const string RemoteName = "chaos.effect";

    private readonly EffectLedger _ledger;

    public EffectTask(EffectLedger ledger) : base(RemoteName) => _ledger = ledger;

    protected override IReadOnlyList<AtomParameter> GetExecuteParameters() =>
        [new AtomParameter("flow_id"), new AtomParameter("fail", true, false)];

    public static string Key(string flowId, string atomName) => $"{flowId}/{atomName}";

    public override async ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
    {
        var key = Key(arguments.Get<string>("flow_id"), context.AtomName);
        await Task.Delay(Random.Shared.Next(2, 25), context.CancellationToken).ConfigureAwait(false);
        if (arguments.GetOrDefault("fail", false)) throw new InvalidOperationException($"{key} fails by design");
        _ledger.Append("apply", key);
        context.ReportProgress(0.5);
        await Task.Delay(Random.Shared.Next(0, 10), context.CancellationToken).ConfigureAwait(false);
        return key;
    }

    public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        var key = Key(arguments.Get<string>("flow_id"), context.AtomName);
        if (_ledger.NetOf(key) > 0) _ledger.Append("revert", key);
        return ValueTask.FromResult<object?>(null);
    }
}

/// <summary>The benchmark's task: adds one, nothing else, so a round trip measures the transport and protocol.</summary>
public sealed class EchoTask : FlowTask
{
    public const string RemoteName = "bench.echo";

    public EchoTask() : base(RemoteName) { }

    protected override IReadOnlyList<AtomParameter> GetExecuteParameters() => [new AtomParameter("x")];

    public override ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context) =>
        ValueTask.FromResult<object?>(arguments.Get<long>("x") + 1);
}
