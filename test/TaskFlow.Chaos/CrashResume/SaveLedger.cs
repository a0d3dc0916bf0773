namespace TaskFlow.Chaos.CrashResume;

/// <summary>
/// The crash-resume oracle for what was saved, read from the side-effects log in the order things happened. The
/// log holds the tasks' calls (<c>exec X</c>, <c>revert X</c>), the child's saves before they start and after they
/// returned (<c>saving ID METHOD X=STATE … @flow=STATE</c>, <c>saved ID METHOD …</c>), the child's own kills
/// (<c>kill METHOD before|after N PHASE</c>) and, from the parent, the start of each child (<c>child N</c>), each kill
/// it made by time (<c>timed-kill</c>) and what the store held after each kill and at the end
/// (<c>probe X=STATE … @flow=STATE</c>). It checks, independently of the engine under test:
/// <list type="bullet">
/// <item>no acknowledged save is lost: after a kill, each atom (and the flow) is stored in the state its last
/// acknowledged save gave it, or in a state a save still in flight at the kill was writing; an atom saved once is never
/// missing;</item>
/// <item>nothing runs that the store says is finished: a task executes only when the last state saved for it (or found
/// in the store after a kill) is RUNNING, and reverts only when it is REVERTING — so an atom whose SUCCESS was
/// acknowledged never executes again, not even when that acknowledgement was the run's last save.</item>
/// </list>
/// It also tells where each kill landed, for the histogram.
/// </summary>
internal sealed class SaveLedger
{
    private const string FlowKey = "@flow";

    private readonly Dictionary<string, string> _acknowledged = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(long Id, string State)>> _inFlight = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _known = new(StringComparer.Ordinal);
    private readonly Dictionary<long, string> _openCalls = [];
    private bool _childSaved;

    /// <summary>Where each kill landed, e.g. "SaveAtomDetailsAsync after (run)" or "timed: inside SaveAtomDetailsAsync".</summary>
    public List<string> KillPoints { get; } = [];

    /// <summary>Reads the whole log; null when every rule held, else the first violation.</summary>
    public static (string? Problem, SaveLedger Ledger) Check(IEnumerable<string> lines)
    {
        var ledger = new SaveLedger();
        int number = 0;
        foreach (var line in lines)
        {
            number++;
            if (ledger.Apply(line) is { } problem) return ($"{problem} (effects log line {number}: '{line}')", ledger);
        }
        return (null, ledger);
    }

    private string? Apply(string line)
    {
        var parts = line.Split(' ');
        switch (parts[0])
        {
            case "child":
                _openCalls.Clear();
                _childSaved = false;
                return null;
            case "saving":
            {
                long id = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
                _openCalls[id] = parts[2];
                _childSaved = true;
                foreach (var (name, state) in States(parts, 3))
                {
                    if (!_inFlight.TryGetValue(name, out var list)) _inFlight[name] = list = [];
                    list.Add((id, state));
                }
                return null;
            }
            case "saved":
            {
                long id = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
                _openCalls.Remove(id);
                foreach (var (name, state) in States(parts, 3))
                {
                    _acknowledged[name] = state;
                    _known[name] = state;
                    _inFlight.GetValueOrDefault(name)?.RemoveAll(p => p.Id <= id);
                }
                return null;
            }
            case "kill":
                KillPoints.Add($"{parts[1]} {parts[2]} ({parts[4]})");
                return null;
            case "timed-kill":
                KillPoints.Add(_openCalls.Count > 0 ? $"timed: inside {_openCalls.Values.Last()}"
                    : _childSaved ? "timed: between saves (tasks running)" : "timed: before the child's first save");
                return null;
            case "probe":
            {
                var stored = States(parts, 1).ToDictionary(p => p.Name, p => p.State, StringComparer.Ordinal);
                foreach (var (name, state) in stored)
                {
                    var allowed = new HashSet<string>(StringComparer.Ordinal);
                    if (_acknowledged.TryGetValue(name, out var ack)) allowed.Add(ack);
                    foreach (var (_, s) in _inFlight.GetValueOrDefault(name) ?? []) allowed.Add(s);
                    if (!allowed.Contains(state))
                        return ack is null
                            ? $"the store has {Describe(name)}={state}, which no save wrote"
                            : $"an acknowledged save was lost: {Describe(name)}={ack} was saved (the call returned) but the store has {state}";
                    _acknowledged[name] = state;
                    _known[name] = state;
                }
                foreach (var name in _acknowledged.Keys)
                    if (!stored.ContainsKey(name))
                        return $"an acknowledged save was lost: {Describe(name)} was saved but is not in the store";
                return null;
            }
            case "exec":
                return Expect(parts[1], "RUNNING", "executed");
            case "revert":
                return Expect(parts[1], "REVERTING", "reverted");
            default:
                return null;
        }
    }

    private string? Expect(string atom, string state, string what)
    {
        var known = _known.GetValueOrDefault(atom);
        return known == state ? null
            : known is null ? $"atom '{atom}' {what} before any state of it was saved (it must be saved {state} first)"
            : $"atom '{atom}' {what} although its last saved state was {known} (it must be saved {state} first; a finished state that was acknowledged must never run again)";
    }

    private static string Describe(string name) => name == FlowKey ? "the flow" : $"atom '{name}'";

    private static IEnumerable<(string Name, string State)> States(string[] parts, int from)
    {
        for (int i = from; i < parts.Length; i++)
        {
            int eq = parts[i].LastIndexOf('=');
            if (eq > 0) yield return (parts[i][..eq], parts[i][(eq + 1)..]);
        }
    }
}
