using TaskFlow.Engines.Compilation;
using TaskFlow.Failures;

namespace TaskFlow.Storage;

/// <summary>
/// A run's failure cache (TaskFlow's): the latest failure of each atom, in the order atoms first failed. The
/// by-name view handed to every revert is built once per change rather than once per revert call — a full revert of
/// n atoms after one failure used to build n identical dictionaries.
/// </summary>
internal sealed class FailuresByAtom(CompiledFlow compiled)
{
    private readonly Dictionary<int, Failure> _byNode = [];
    // Never changed once handed out (reverts and users may keep it): a change drops it and the next read builds anew.
    private IReadOnlyDictionary<string, Failure>? _byName;

    public int Count => _byNode.Count;

    public IEnumerable<Failure> Values => _byNode.Values;

    public void Set(int node, Failure failure)
    {
        _byNode[node] = failure;
        _byName = null;
    }

    public IReadOnlyDictionary<string, Failure> ByName()
    {
        if (_byNode.Count == 0) return Atoms.FlowTask.EmptyFailures;
        if (_byName is { } cached) return cached;
        var d = new Dictionary<string, Failure>(_byNode.Count, StringComparer.Ordinal);
        foreach (var (node, f) in _byNode) d[compiled.Atoms[node]!.Name] = f;
        return _byName = d;
    }
}
