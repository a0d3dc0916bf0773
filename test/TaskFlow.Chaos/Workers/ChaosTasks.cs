using TaskFlow.Atoms;
using TaskFlow.Failures;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// The chaos flows' task. Execute holds its worker slot for a random time (so kills land mid-execution and requests
/// queue), fails when told to (before applying anything), else applies an effect and returns its id (the request id).
/// Revert decides only from what the task itself knows, as a real task would: with its execute's result it undoes
/// that effect; after a worker failure (a timeout or a lost worker: the outcome is unknown) it undoes, by its key,
/// whatever the atom has applied so far, as an idempotent "refund by idempotency key" does; after its own failure it
/// knows nothing was applied. It never reads the ledger: the ledger is the checker's record, written by the tasks.
/// </summary>
public sealed class EffectTask : FlowTask
{
    public const string RemoteName = "chaos.effect";

    private readonly EffectLedger _ledger;
    private readonly (int Min, int Max) _executeMs;

    public EffectTask(EffectLedger ledger, (int Min, int Max) executeMs) : base(RemoteName)
    {
        _ledger = ledger;
        _executeMs = executeMs;
    }

    protected override IReadOnlyList<AtomParameter> GetExecuteParameters() =>
        [new AtomParameter("flow_id"), new AtomParameter("fail", true, false)];

    public override async ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
    {
        var flow = arguments.Get<string>("flow_id");
        var request = RequestContext.Require(context.AtomName);
        await Task.Delay(Random.Shared.Next(_executeMs.Min, _executeMs.Max + 1), context.CancellationToken).ConfigureAwait(false);
        if (arguments.GetOrDefault("fail", false)) throw new InvalidOperationException($"{flow}/{context.AtomName} fails by design");
        _ledger.Append("apply", flow, context.AtomName, request, "-");
        context.ReportProgress(0.5);
        await Task.Delay(Random.Shared.Next(0, 10), context.CancellationToken).ConfigureAwait(false);
        return request;
    }

    public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        var flow = arguments.Get<string>("flow_id");
        var request = RequestContext.Require(context.AtomName);
        string target = result.Failure switch
        {
            null => result.Value as string ?? throw new InvalidOperationException($"{flow}/{context.AtomName}: execute returned {result.Value ?? "null"}, not an effect id"),
            var f when f.Check<WorkerTimeoutException>() => EffectLedger.Blind,
            _ => EffectLedger.Nothing,
        };
        _ledger.Append("revert", flow, context.AtomName, request, target);
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
