using System.Text.Json;
using TaskFlow.Failures;

namespace TaskFlow.Atoms;

/// <summary>The values bound to an atom's parameters for one call, by parameter name.</summary>
public sealed class TaskArguments
{
    private readonly string[] _names;
    private readonly object?[] _values;
    private readonly bool[] _present;

    internal TaskArguments(string atomName, string[] names, object?[] values, bool[] present)
    {
        AtomName = atomName;
        _names = names;
        _values = values;
        _present = present;
    }

    /// <summary>An empty set of arguments.</summary>
    public static TaskArguments Empty(string atomName) => new(atomName, [], [], []);

    /// <summary>
    /// Arguments built from values by parameter name: for executors that run a task somewhere else (a worker process)
    /// and for tests. Every entry counts as bound.
    /// </summary>
    public static TaskArguments Create(string atomName, IEnumerable<KeyValuePair<string, object?>> values)
    {
        ArgumentNullException.ThrowIfNull(atomName);
        ArgumentNullException.ThrowIfNull(values);
        var pairs = values.ToArray();
        var names = new string[pairs.Length];
        var bound = new object?[pairs.Length];
        var present = new bool[pairs.Length];
        for (int i = 0; i < pairs.Length; i++)
        {
            names[i] = pairs[i].Key ?? throw new ArgumentException($"Atom '{atomName}': an argument has a null name.", nameof(values));
            for (int j = 0; j < i; j++)
                if (names[j] == names[i]) throw new ArgumentException($"Atom '{atomName}': argument '{names[i]}' is given twice.", nameof(values));
            bound[i] = pairs[i].Value;
            present[i] = true;
        }
        return new TaskArguments(atomName, names, bound, present);
    }

    /// <summary>The atom the arguments are for.</summary>
    public string AtomName { get; }

    /// <summary>How many parameters there are (bound or left to their defaults).</summary>
    public int Count => _names.Length;

    /// <summary>The parameter names, in binding order (required first, then optional).</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>Whether a value was bound for <paramref name="name"/> (an optional parameter left to its default is not).</summary>
    public bool Contains(string name) => IndexOf(name) is var i && i >= 0 && _present[i];

    /// <summary>The bound value of a parameter.</summary>
    /// <exception cref="NotFoundException">The parameter has no bound value.</exception>
    public object? this[string name]
    {
        get
        {
            int i = IndexOf(name);
            if (i < 0 || !_present[i])
                throw new NotFoundException($"Atom '{AtomName}' has no bound value for parameter '{name}'.");
            return _values[i];
        }
    }

    /// <summary>The bound value converted to <typeparamref name="T"/>.</summary>
    public T Get<T>(string name) => ArgumentConverter.Convert<T>(this[name], AtomName, name);

    /// <summary>The bound value, or <paramref name="defaultValue"/> when none is bound.</summary>
    public T GetOrDefault<T>(string name, T defaultValue)
    {
        int i = IndexOf(name);
        return i >= 0 && _present[i] ? ArgumentConverter.Convert<T>(_values[i], AtomName, name) : defaultValue;
    }

    /// <summary>Tries to get the bound value.</summary>
    public bool TryGet(string name, out object? value)
    {
        int i = IndexOf(name);
        if (i >= 0 && _present[i]) { value = _values[i]; return true; }
        value = null;
        return false;
    }

    /// <summary>The bound values by parameter name (parameters left to their defaults are absent).</summary>
    public IReadOnlyDictionary<string, object?> ToDictionary()
    {
        var d = new Dictionary<string, object?>(_names.Length, StringComparer.Ordinal);
        for (int i = 0; i < _names.Length; i++) if (_present[i]) d[_names[i]] = _values[i];
        return d;
    }

    private int IndexOf(string name)
    {
        var names = _names;
        for (int i = 0; i < names.Length; i++)
            if (string.Equals(names[i], name, StringComparison.Ordinal)) return i;
        return -1;
    }
}

/// <summary>Converts stored or bound values to the type a parameter declares.</summary>
public static class ArgumentConverter
{
    /// <summary>Options used to turn persisted JSON values back into parameter types.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new(JsonSerializerDefaults.General);

    /// <summary>Converts <paramref name="value"/> to <typeparamref name="T"/>, naming the atom and parameter on failure.</summary>
    public static T Convert<T>(object? value, string atomName, string parameterName)
    {
        if (value is T t) return t;
        if (value is null)
        {
            if (default(T) is null) return default!;
            throw new ArgumentException($"Atom '{atomName}' parameter '{parameterName}' is of type {typeof(T).Name} but the bound value is null.");
        }
        try
        {
            if (value is JsonElement element) return element.Deserialize<T>(JsonOptions)!;
            var target = Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T);
            if (value is IConvertible && (target.IsPrimitive || target == typeof(decimal) || target == typeof(string)))
                return (T)System.Convert.ChangeType(value, target, System.Globalization.CultureInfo.InvariantCulture);
            if (target.IsEnum && value is string s) return (T)Enum.Parse(target, s);
        }
        catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException or JsonException or ArgumentException)
        {
            throw new ArgumentException($"Atom '{atomName}' parameter '{parameterName}' expects {typeof(T).Name}, but the bound value of type {value.GetType().Name} cannot be converted: {e.Message}", e);
        }
        throw new ArgumentException($"Atom '{atomName}' parameter '{parameterName}' expects {typeof(T).Name}, but the bound value is a {value.GetType().Name}.");
    }
}
