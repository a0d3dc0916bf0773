using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Atoms;

/// <summary>One parameter of an atom's execute or revert call.</summary>
/// <param name="Name">The parameter name (what the atom's code calls it).</param>
/// <param name="IsOptional">Whether the parameter has a default and may be left unbound.</param>
/// <param name="DefaultValue">The default value of an optional parameter.</param>
public readonly record struct AtomParameter(string Name, bool IsOptional = false, object? DefaultValue = null);

/// <summary>One parameter bound to the symbol it reads at run time.</summary>
/// <param name="Parameter">The parameter name.</param>
/// <param name="Symbol">The symbol (store key, or another atom's provided name) it reads.</param>
/// <param name="IsOptional">Whether the default is used when nothing anywhere provides the symbol.</param>
/// <param name="DefaultValue">The default of an optional parameter.</param>
public readonly record struct ArgumentBinding(string Parameter, string Symbol, bool IsOptional, object? DefaultValue);

/// <summary>
/// The unit of a flow: a named piece of work with inputs bound by name (requires, optional, rebind, inject)
/// and an output published under names (provides). Tasks (<see cref="FlowTask"/>) and retry controllers
/// (<see cref="TaskFlow.Retries.RetryController"/>) are atoms.
/// </summary>
public abstract class Atom : FlowNode
{
    private ProvidesSpec _provides = ProvidesSpec.None;
    private RebindSpec? _rebind;
    private IReadOnlyDictionary<string, object?>? _inject;
    private IReadOnlyList<string>? _requires;
    private IReadOnlyDictionary<string, object?>? _optional;
    private int _priority;
    private ArgumentMap? _map;

    /// <summary>What the result is published as (a name, positional names, or dictionary keys).</summary>
    public ProvidesSpec Provides
    {
        get => _provides;
        init => _provides = value ?? ProvidesSpec.None;
    }

    /// <summary>Renames parameters to the symbols they read: by position onto required parameters, or by map.</summary>
    public RebindSpec? Rebind
    {
        get => _rebind;
        init => _rebind = value;
    }

    /// <summary>Values for this atom only, keyed by symbol name (after rebinding); they beat every other source.</summary>
    public IReadOnlyDictionary<string, object?>? Inject
    {
        get => _inject;
        init => _inject = value is null ? null : new Dictionary<string, object?>(value, StringComparer.Ordinal);
    }

    /// <summary>
    /// Extra required parameters, beyond those the atom's signature declares (TaskFlow's <c>requires=</c>).
    /// A name that the signature declares as optional becomes required.
    /// </summary>
    public IReadOnlyList<string>? Requires
    {
        get => _requires;
        init => _requires = value?.ToArray();
    }

    /// <summary>Extra optional parameters with their defaults, beyond those the signature declares.</summary>
    public IReadOnlyDictionary<string, object?>? Optional
    {
        get => _optional;
        init => _optional = value is null ? null : new Dictionary<string, object?>(value, StringComparer.Ordinal);
    }

    /// <summary>
    /// The atom's version (TaskFlow's <c>version</c>, "1.0" by default), saved with its persisted detail. Bump it when
    /// a change makes a half-finished run of the old code unsafe to continue: resuming a saved run whose atom has
    /// started under another version fails with <see cref="FlowDefinitionException"/> instead of mixing the two.
    /// </summary>
    public string Version
    {
        get;
        init => field = string.IsNullOrWhiteSpace(value) ? throw new ArgumentException("An atom's version must be a non-empty string.", nameof(Version)) : value;
    } = "1.0";

    /// <summary>Among atoms ready at the same time, higher priorities are started first.</summary>
    public int Priority
    {
        get => _priority;
        init => _priority = value;
    }

    /// <summary>The parameters of the execute call, as the atom's code declares them.</summary>
    protected internal abstract IReadOnlyList<AtomParameter> GetExecuteParameters();

    /// <summary>The parameters of the revert call (without <c>result</c> and <c>flow_failures</c>).</summary>
    protected internal virtual IReadOnlyList<AtomParameter> GetRevertParameters() => GetExecuteParameters();

    /// <summary>
    /// Merges the parameters a signature declares with <see cref="Requires"/> and <see cref="Optional"/>:
    /// optional extras are appended, required extras are appended or promote an optional parameter.
    /// </summary>
    protected IReadOnlyList<AtomParameter> WithDeclaredExtras(IReadOnlyList<AtomParameter> signature)
    {
        ArgumentNullException.ThrowIfNull(signature);
        if (_requires is null && _optional is null) return signature;
        var list = new List<AtomParameter>(signature);
        if (_optional is not null)
            foreach (var (name, value) in _optional)
                if (!list.Exists(p => p.Name == name)) list.Add(new AtomParameter(name, true, value));
        if (_requires is not null)
            foreach (var name in _requires)
            {
                if (string.IsNullOrWhiteSpace(name))
                    throw new FlowDefinitionException($"Atom '{Name}' has an empty name in Requires.");
                int i = list.FindIndex(p => p.Name == name);
                if (i < 0) list.Add(new AtomParameter(name));
                else if (list[i].IsOptional) { list.RemoveAt(i); list.Add(new AtomParameter(name)); }
            }
        return list;
    }

    /// <summary>The execute bindings: each parameter with the symbol it reads.</summary>
    public IReadOnlyList<ArgumentBinding> ExecuteBindings => Map.Execute;

    /// <summary>The revert bindings.</summary>
    public IReadOnlyList<ArgumentBinding> RevertBindings => Map.Revert;

    /// <summary>The symbols this atom requires (execute and revert, minus injected ones).</summary>
    public IReadOnlyCollection<string> RequiredSymbols => Map.RequiredSymbols;

    /// <summary>The symbols this atom reads if something provides them.</summary>
    public IReadOnlyCollection<string> OptionalSymbols => Map.OptionalSymbols;

    /// <summary>The symbols this atom publishes.</summary>
    public IReadOnlyList<string> ProvidedSymbols => _provides.Names;

    internal ArgumentMap Map => _map ??= ArgumentMap.Build(this);

    /// <summary>Computes and caches the argument mapping now, so definition errors surface at build time.</summary>
    internal void Freeze() => _ = Map;

    internal sealed class ArgumentMap
    {
        public required ArgumentBinding[] Execute { get; init; }
        public required ArgumentBinding[] Revert { get; init; }
        public required HashSet<string> RequiredSymbols { get; init; }
        public required HashSet<string> OptionalSymbols { get; init; }
        /// <summary>Parameter names in binding order, shared by every call's <see cref="TaskArguments"/>.</summary>
        public required string[] ExecuteNames { get; init; }
        public required string[] RevertNames { get; init; }

        public static ArgumentMap Build(Atom atom)
        {
            var execDeclared = atom.GetExecuteParameters();
            var revertDeclared = atom.GetRevertParameters();
            var exec = BuildBindings(atom, execDeclared, "execute");
            // Most atoms revert with the parameters they execute with: bind once (the execute binding already raised
            // anything the revert binding could).
            var revert = SameParameters(execDeclared, revertDeclared) ? exec : BuildBindings(atom, revertDeclared, "revert");
            var inject = atom._inject;
            var required = new HashSet<string>(StringComparer.Ordinal);
            var optional = new HashSet<string>(StringComparer.Ordinal);
            foreach (var bindings in ReferenceEquals(revert, exec) ? [exec] : new[] { exec, revert })
                foreach (var b in bindings)
                {
                    if (inject is not null && inject.ContainsKey(b.Symbol)) continue;
                    if (b.IsOptional) optional.Add(b.Symbol); else required.Add(b.Symbol);
                }
            optional.ExceptWith(required);
            var execNames = Array.ConvertAll(exec, b => b.Parameter);
            return new ArgumentMap
            {
                Execute = exec,
                Revert = revert,
                RequiredSymbols = required,
                OptionalSymbols = optional,
                ExecuteNames = execNames,
                RevertNames = ReferenceEquals(revert, exec) ? execNames : Array.ConvertAll(revert, b => b.Parameter),
            };
        }

        private static bool SameParameters(IReadOnlyList<AtomParameter> a, IReadOnlyList<AtomParameter> b)
        {
            if (ReferenceEquals(a, b)) return true;
            if (a.Count != b.Count) return false;
            for (int i = 0; i < a.Count; i++)
                if (!a[i].Equals(b[i])) return false;
            return true;
        }

        private static ArgumentBinding[] BuildBindings(Atom atom, IReadOnlyList<AtomParameter> declared, string method)
        {
            if (declared.Count == 0 && atom._rebind is null) return [];
            // Ordered required parameters, then optional ones (TaskFlow's signature inference + requires=).
            var required = new List<string>();
            var optional = new Dictionary<string, object?>(StringComparer.Ordinal);
            var optionalOrder = new List<string>();
            foreach (var p in declared)
            {
                if (p.IsOptional) { if (optional.TryAdd(p.Name, p.DefaultValue)) optionalOrder.Add(p.Name); }
                else if (!required.Contains(p.Name)) required.Add(p.Name);
            }
            var symbolOf = new Dictionary<string, string>(StringComparer.Ordinal);
            var rebind = atom._rebind;
            if (rebind is not null)
            {
                IEnumerable<KeyValuePair<string, string>> pairs;
                if (rebind.PositionalSymbols is { } list)
                {
                    var zipped = new List<KeyValuePair<string, string>>();
                    for (int i = 0; i < list.Count; i++)
                    {
                        var param = i < required.Count ? required[i] : list[i];
                        zipped.Add(new(param, list[i]));
                    }
                    pairs = zipped;
                }
                else
                {
                    pairs = rebind.Map!;
                }
                var extras = new List<string>();
                foreach (var (param, symbol) in pairs)
                {
                    if (string.IsNullOrWhiteSpace(symbol))
                        throw new FlowDefinitionException($"Atom '{atom.Name}' rebinds parameter '{param}' to an empty symbol name.");
                    bool isRequired = required.Contains(param);
                    bool isOptional = optional.ContainsKey(param);
                    if (!isRequired && !isOptional)
                    {
                        extras.Add(param);
                        continue;
                    }
                    symbolOf[param] = symbol;
                    if (isOptional)
                    {
                        // TaskFlow: rebinding an optional parameter makes it required.
                        optional.Remove(param);
                        optionalOrder.Remove(param);
                        required.Add(param);
                    }
                }
                // Rebinding names the execute parameters; a revert that takes fewer parameters simply ignores the rest.
                if (extras.Count > 0 && method == "execute")
                    throw new FlowDefinitionException(
                        $"Atom '{atom.Name}' rebinds {string.Join(", ", extras.Select(e => $"'{e}'"))}, which {(extras.Count == 1 ? "is not a parameter" : "are not parameters")} of its {method} " +
                        $"(parameters: {string.Join(", ", required.Concat(optionalOrder))}). Extra arguments cannot be bound.");
            }

            var bindings = new ArgumentBinding[required.Count + optionalOrder.Count];
            int k = 0;
            foreach (var p in required)
                bindings[k++] = new ArgumentBinding(p, symbolOf.GetValueOrDefault(p, p), false, null);
            foreach (var p in optionalOrder)
                bindings[k++] = new ArgumentBinding(p, symbolOf.GetValueOrDefault(p, p), true, optional[p]);
            return bindings;
        }
    }
}
