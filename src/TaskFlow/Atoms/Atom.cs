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

    /// <summary><see cref="ProvidedSymbols"/> as an array (may repeat a name under positional provides).</summary>
    internal string[] ProvidedSymbolArray => _provides.NameArray;

    /// <summary><see cref="RequiredSymbols"/> as an array (distinct).</summary>
    internal string[] RequiredSymbolArray => Map.RequiredSymbols;

    internal ArgumentMap Map => _map ??= ArgumentMap.Build(this);

    /// <summary>Computes and caches the argument mapping now, so definition errors surface at build time.</summary>
    internal void Freeze() => _ = Map;

    internal sealed class ArgumentMap
    {
        /// <summary>The map of an atom that binds nothing (most no-argument tasks): one shared instance.</summary>
        private static readonly ArgumentMap Empty = new()
        {
            Execute = [], Revert = [], RequiredSymbols = [], OptionalSymbols = [], ExecuteNames = [], RevertNames = [],
        };

        // Atoms of one type bind the same parameter names: their name arrays are shared, keyed by the binder's parameters.
        private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<AtomParameter[], string[]> NamesBySignature = [];

        public required ArgumentBinding[] Execute { get; init; }
        public required ArgumentBinding[] Revert { get; init; }
        /// <summary>Distinct, in binding order (execute first); arrays, since a flow of 100k atoms holds 100k of them.</summary>
        public required string[] RequiredSymbols { get; init; }
        public required string[] OptionalSymbols { get; init; }
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
            if (exec.Length == 0 && revert.Length == 0) return Empty;
            var inject = atom._inject;
            var required = Symbols(exec, revert, inject, optional: false, exclude: []);
            var optional = Symbols(exec, revert, inject, optional: true, exclude: required);
            var execNames = NamesOf(exec, execDeclared);
            return new ArgumentMap
            {
                Execute = exec,
                Revert = revert,
                RequiredSymbols = required,
                OptionalSymbols = optional,
                ExecuteNames = execNames,
                RevertNames = ReferenceEquals(revert, exec) ? execNames : NamesOf(revert, revertDeclared),
            };
        }

        /// <summary>The distinct symbols of the (non-injected) required or optional bindings, minus <paramref name="exclude"/>.</summary>
        private static string[] Symbols(ArgumentBinding[] exec, ArgumentBinding[] revert, IReadOnlyDictionary<string, object?>? inject, bool optional, string[] exclude)
        {
            bool one = ReferenceEquals(revert, exec);
            string[]? found = null;
            int count = 0;
            HashSet<string>? seen = null; // only for atoms with many parameters; a linear scan is cheaper below that
            for (int pass = 0; pass < (one ? 1 : 2); pass++)
                foreach (var b in pass == 0 ? exec : revert)
                {
                    if (b.IsOptional != optional || Array.IndexOf(exclude, b.Symbol) >= 0) continue;
                    if (inject is not null && inject.ContainsKey(b.Symbol)) continue;
                    found ??= new string[one ? exec.Length : exec.Length + revert.Length];
                    if (seen is null && count >= 16) seen = new HashSet<string>(found.Take(count), StringComparer.Ordinal);
                    if (seen is not null ? !seen.Add(b.Symbol) : Array.IndexOf(found, b.Symbol, 0, count) >= 0) continue;
                    found[count++] = b.Symbol;
                }
            if (found is null) return [];
            if (count < found.Length) Array.Resize(ref found, count);
            return found;
        }

        /// <summary>The parameter names of <paramref name="bindings"/>; shared by atoms of a type when they are the signature's names in order.</summary>
        private static string[] NamesOf(ArgumentBinding[] bindings, IReadOnlyList<AtomParameter> declared)
        {
            if (bindings.Length == 0) return [];
            if (declared is AtomParameter[] signature && signature.Length == bindings.Length)
            {
                bool same = true;
                for (int i = 0; i < bindings.Length && same; i++) same = bindings[i].Parameter == signature[i].Name;
                if (same) return NamesBySignature.GetValue(signature, static s => Array.ConvertAll(s, p => p.Name));
            }
            return Array.ConvertAll(bindings, b => b.Parameter);
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
            var rebind = atom._rebind;
            if (declared.Count == 0 && rebind is null) return [];
            // Ordered required parameters, then optional ones (TaskFlow's signature inference + requires=), each with
            // the symbol it reads. Held as bindings from the start: an atom's arrays are the result, not scratch lists.
            var required = new ArgumentBinding[declared.Count];
            int requiredCount = 0;
            ArgumentBinding[]? optional = null;
            int optionalCount = 0;
            foreach (var p in declared)
            {
                if (p.IsOptional)
                {
                    optional ??= new ArgumentBinding[declared.Count];
                    if (IndexOf(optional, optionalCount, p.Name) < 0) optional[optionalCount++] = new ArgumentBinding(p.Name, p.Name, true, p.DefaultValue);
                }
                else if (IndexOf(required, requiredCount, p.Name) < 0)
                {
                    required[requiredCount++] = new ArgumentBinding(p.Name, p.Name, false, null);
                }
            }
            if (rebind is not null)
            {
                List<string>? extras = null;
                if (rebind.PositionalSymbols is { } list)
                {
                    // Zipped with the required parameters as they were before any optional one was promoted.
                    // (Rebinding changes only symbols and appends: the first requiredBefore parameter names stay put.)
                    int requiredBefore = requiredCount;
                    for (int i = 0; i < list.Count; i++)
                        Rebind(atom, i < requiredBefore ? required[i].Parameter : list[i], list[i], ref required, ref requiredCount, optional, ref optionalCount, ref extras);
                }
                else
                {
                    foreach (var (param, symbol) in rebind.Map!) Rebind(atom, param, symbol, ref required, ref requiredCount, optional, ref optionalCount, ref extras);
                }
                // Rebinding names the execute parameters; a revert that takes fewer parameters simply ignores the rest.
                if (extras is not null && method == "execute")
                {
                    var parameters = required.Take(requiredCount).Concat(optional is null ? [] : optional.Take(optionalCount)).Select(b => b.Parameter);
                    throw new FlowDefinitionException(
                        $"Atom '{atom.Name}' rebinds {string.Join(", ", extras.Select(e => $"'{e}'"))}, which {(extras.Count == 1 ? "is not a parameter" : "are not parameters")} of its {method} " +
                        $"(parameters: {string.Join(", ", parameters)}). Extra arguments cannot be bound.");
                }
            }
            if (optionalCount == 0 && requiredCount == required.Length) return required;
            var bindings = new ArgumentBinding[requiredCount + optionalCount];
            Array.Copy(required, bindings, requiredCount);
            if (optionalCount > 0) Array.Copy(optional!, 0, bindings, requiredCount, optionalCount);
            return bindings;
        }

        /// <summary>Points <paramref name="param"/> at <paramref name="symbol"/>; an optional parameter becomes required, an unknown one is an extra.</summary>
        private static void Rebind(Atom atom, string param, string symbol, ref ArgumentBinding[] required, ref int requiredCount,
            ArgumentBinding[]? optional, ref int optionalCount, ref List<string>? extras)
        {
            if (string.IsNullOrWhiteSpace(symbol))
                throw new FlowDefinitionException($"Atom '{atom.Name}' rebinds parameter '{param}' to an empty symbol name.");
            bool isRequired = false;
            for (int i = 0; i < requiredCount; i++)
                if (required[i].Parameter == param) { required[i] = required[i] with { Symbol = symbol }; isRequired = true; }
            int o = optional is null ? -1 : IndexOf(optional, optionalCount, param);
            if (o < 0)
            {
                if (!isRequired) (extras ??= []).Add(param);
                return;
            }
            // TaskFlow: rebinding an optional parameter makes it required.
            Array.Copy(optional!, o + 1, optional!, o, optionalCount - o - 1);
            optionalCount--;
            if (requiredCount == required.Length) Array.Resize(ref required, required.Length + 1);
            required[requiredCount++] = new ArgumentBinding(param, symbol, false, null);
        }

        private static int IndexOf(ArgumentBinding[] bindings, int count, string parameter)
        {
            for (int i = 0; i < count; i++)
                if (bindings[i].Parameter == parameter) return i;
            return -1;
        }
    }
}
