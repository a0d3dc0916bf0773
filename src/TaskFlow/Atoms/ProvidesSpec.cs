using TaskFlow.Failures;

namespace TaskFlow.Atoms;

/// <summary>How an atom's result is published under symbol names (TaskFlow's <c>provides</c>).</summary>
public sealed class ProvidesSpec
{
    /// <summary>How the names relate to the result.</summary>
    public enum ProvidesKind
    {
        /// <summary>Nothing is published.</summary>
        None,
        /// <summary>The whole result under one name.</summary>
        Whole,
        /// <summary>Element i of a list result under name i.</summary>
        Positional,
        /// <summary>Each name looked up as a key of a dictionary result.</summary>
        Keys,
    }

    private ProvidesSpec(ProvidesKind kind, string[] names)
    {
        Kind = kind;
        Names = NameArray = names;
    }

    /// <summary>The names as the array they are kept in (loops over it need no enumerator).</summary>
    internal string[] NameArray { get; }

    /// <summary>Publishes nothing.</summary>
    public static ProvidesSpec None { get; } = new(ProvidesKind.None, []);

    /// <summary>The kind of mapping.</summary>
    public ProvidesKind Kind { get; }

    /// <summary>The published symbol names.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The whole result under <paramref name="name"/>.</summary>
    public static ProvidesSpec Whole(string name)
    {
        ValidateName(name);
        return new ProvidesSpec(ProvidesKind.Whole, [name]);
    }

    /// <summary>Element i of a list (or tuple) result under <paramref name="names"/>[i].</summary>
    public static ProvidesSpec Positional(params string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        foreach (var n in names) ValidateName(n);
        return names.Length == 0 ? None : new ProvidesSpec(ProvidesKind.Positional, (string[])names.Clone());
    }

    /// <summary>Each name looked up as a key of a dictionary result.</summary>
    public static ProvidesSpec Keys(params string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        foreach (var n in names) ValidateName(n);
        return names.Length == 0 ? None : new ProvidesSpec(ProvidesKind.Keys, names.Distinct().ToArray());
    }

    /// <summary>One name for the whole result.</summary>
    public static implicit operator ProvidesSpec(string name) => Whole(name);

    /// <summary>Positional names for a list result.</summary>
    public static implicit operator ProvidesSpec(string[] names) => Positional(names);

    private static void ValidateName(string name)
    {
        if (string.IsNullOrWhiteSpace(name))
            throw new FlowDefinitionException("A provided symbol name must be a non-empty string.");
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        ProvidesKind.None => "(nothing)",
        ProvidesKind.Whole => Names[0],
        ProvidesKind.Positional => "[" + string.Join(", ", Names) + "]",
        _ => "{" + string.Join(", ", Names) + "}",
    };
}

/// <summary>How an atom's parameters are renamed to the symbols they read (TaskFlow's <c>rebind</c>).</summary>
public sealed class RebindSpec
{
    private RebindSpec(IReadOnlyList<string>? positional, IReadOnlyDictionary<string, string>? map)
    {
        PositionalSymbols = positional;
        Map = map;
    }

    /// <summary>Symbols zipped positionally with the required parameters, or null.</summary>
    public IReadOnlyList<string>? PositionalSymbols { get; }

    /// <summary>Parameter → symbol, or null.</summary>
    public IReadOnlyDictionary<string, string>? Map { get; }

    /// <summary>Rebinding by position onto the required parameters, in declaration order.</summary>
    public static RebindSpec Positional(params string[] symbols)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        return new RebindSpec((string[])symbols.Clone(), null);
    }

    /// <summary>Rebinding parameter → symbol.</summary>
    public static RebindSpec FromMap(IReadOnlyDictionary<string, string> map)
    {
        ArgumentNullException.ThrowIfNull(map);
        return new RebindSpec(null, new Dictionary<string, string>(map, StringComparer.Ordinal));
    }

    /// <summary>Positional rebinding.</summary>
    public static implicit operator RebindSpec(string[] symbols) => Positional(symbols);

    /// <summary>Parameter → symbol rebinding.</summary>
    public static implicit operator RebindSpec(Dictionary<string, string> map) => FromMap(map);
}
