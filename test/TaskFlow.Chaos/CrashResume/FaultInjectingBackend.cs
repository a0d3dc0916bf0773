using System.Runtime.InteropServices;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>Where a child kills itself: before or after its <see cref="Ordinal"/>-th call of <see cref="Method"/> ("*": any call).</summary>
internal sealed record KillPoint(int Ordinal, string Method, bool After)
{
    public static KillPoint Parse(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 3 || !int.TryParse(parts[0], System.Globalization.CultureInfo.InvariantCulture, out var n) || n < 1 || parts[2] is not ("before" or "after"))
            throw new ArgumentException($"--kill-call must be N:METHOD|*:before|after, not '{text}'.");
        return new KillPoint(n, parts[1], parts[2] == "after");
    }

    public override string ToString() => $"{Ordinal}:{Method}:{(After ? "after" : "before")}";
}

/// <summary>
/// The child's view of its store, in the crash-resume chaos. Every call is numbered; a save is logged to the side
/// effects file before it starts (<c>saving ID …</c>) and after it returned (<c>saved ID …</c>), with each atom's and the
/// flow's state, so the parent can tell which saves were acknowledged and which were in flight when the process died.
/// With a <see cref="KillPoint"/> the process SIGKILLs itself right before or right after that call — inside
/// preparing (logbook and flow detail creation, loading the saved run) as much as between an atom save and the
/// flow-state save that follows it — after logging <c>kill METHOD before|after N PHASE</c>.
/// </summary>
internal sealed class FaultInjectingBackend(IPersistenceBackend inner, ISideEffects log, KillPoint? kill, long callBase) : DelegatingBackend(inner)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, int> _perMethod = new(StringComparer.Ordinal);
    private int _calls;

    /// <summary>How many calls this backend has seen.</summary>
    public int Calls { get { lock (_gate) return _calls; } }

    /// <summary>How many calls of <paramref name="method"/> it has seen.</summary>
    public int CallsOf(string method) { lock (_gate) return _perMethod.GetValueOrDefault(method); }

    /// <summary>"prepare" until the child has prepared its engine, then "run".</summary>
    public string Phase { get; set; } = "prepare";

    private async Task<T> CallAsync<T>(string method, string? saving, Func<Task<T>> call)
    {
        long id;
        bool killBefore, killAfter;
        int ordinal;
        lock (_gate)
        {
            _calls++;
            _perMethod[method] = ordinal = _perMethod.GetValueOrDefault(method) + 1;
            id = callBase + _calls;
            bool hit = kill is not null && (kill.Method == "*" ? kill.Ordinal == _calls : kill.Method == method && kill.Ordinal == ordinal);
            killBefore = hit && !kill!.After;
            killAfter = hit && kill!.After;
        }
        if (killBefore) Die(method, "before", ordinal);
        if (saving is not null) log.Record($"saving {id} {method} {saving}");
        var result = await call().ConfigureAwait(false);
        if (saving is not null) log.Record($"saved {id} {method} {saving}");
        if (killAfter) Die(method, "after", ordinal);
        return result;
    }

    private Task CallAsync(string method, string? saving, Func<Task> call) =>
        CallAsync<bool>(method, saving, async () => { await call().ConfigureAwait(false); return true; });

    private void Die(string method, string when, int ordinal)
    {
        log.Record($"kill {method} {when} {ordinal} {Phase}");
        _ = SendSignal(Environment.ProcessId, 9); // SIGKILL: no finally block, no flush, no dispose runs
        Environment.FailFast("SIGKILL did not end the process.");
    }

    internal static string Describe(IEnumerable<AtomDetail> atoms, FlowState? flow)
    {
        var parts = atoms.Select(a => $"{a.Name}={a.State.ToTaskFlowName()}").ToList();
        if (flow is { } f) parts.Add($"@flow={f.ToTaskFlowName()}");
        return string.Join(' ', parts);
    }

    public override Task EnsureSchemaAsync(CancellationToken cancellationToken = default) => CallAsync(nameof(EnsureSchemaAsync), null, () => Inner.EnsureSchemaAsync(cancellationToken));

    public override Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) =>
        CallAsync(nameof(SaveLogBookAsync), null, () => Inner.SaveLogBookAsync(logBook, cancellationToken));

    public override Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) =>
        CallAsync(nameof(GetLogBookAsync), null, () => Inner.GetLogBookAsync(logBookId, cancellationToken));

    public override Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) =>
        CallAsync(nameof(SaveFlowDetailAsync), Describe(flowDetail.Atoms, flowDetail.State), () => Inner.SaveFlowDetailAsync(flowDetail, cancellationToken));

    public override Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) =>
        CallAsync(nameof(GetFlowDetailAsync), null, () => Inner.GetFlowDetailAsync(flowDetailId, cancellationToken));

    public override Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) =>
        CallAsync(nameof(UpdateFlowStateAsync), Describe([], state), () => Inner.UpdateFlowStateAsync(flowDetailId, state, cancellationToken));

    public override Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        CallAsync(nameof(SaveAtomDetailsAsync), Describe(atomDetails, null), () => Inner.SaveAtomDetailsAsync(flowDetailId, atomDetails, cancellationToken));

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);
}
