using System.Collections.ObjectModel;
using System.Text.Json;
using TaskFlow.Failures;

namespace TaskFlow.Persistence;

/// <summary>A read-only copy made by the model; never handed a caller's collection.</summary>
internal sealed class FrozenMap<TValue>(Dictionary<string, TValue> items) : ReadOnlyDictionary<string, TValue>(items);

/// <summary>A read-only copy made by the model.</summary>
internal sealed class FrozenList<T>(T[] items) : ReadOnlyCollection<T>(items);

/// <summary>Normalization, freezing and value equality for the persistence model.</summary>
internal static class ModelValues
{
    public static readonly FrozenMap<JsonElement> EmptyMetadata = new(new Dictionary<string, JsonElement>(StringComparer.Ordinal));
    public static readonly FrozenMap<Failure> EmptyFailures = new(new Dictionary<string, Failure>(StringComparer.Ordinal));

    /// <summary>UTC, truncated to whole microseconds (the precision every backend can store exactly).</summary>
    public static DateTimeOffset NormalizeTimestamp(DateTimeOffset value) =>
        new(value.UtcTicks - value.UtcTicks % 10, TimeSpan.Zero);

    /// <summary>A copy of the element that does not depend on the caller's <see cref="JsonDocument"/>.</summary>
    public static JsonElement Detach(JsonElement value, string what)
    {
        if (value.ValueKind == JsonValueKind.Undefined)
            throw new ArgumentException($"{what} is a default JsonElement with no value; use a JSON null (JsonValueKind.Null) or leave it out.", nameof(value));
        return value.Clone();
    }

    public static JsonElement? Detach(JsonElement? value, string what) => value is { } v ? Detach(v, what) : null;

    public static IReadOnlyDictionary<string, JsonElement> FreezeMetadata(IReadOnlyDictionary<string, JsonElement> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value is FrozenMap<JsonElement>) return value;
        var copy = new Dictionary<string, JsonElement>(value.Count, StringComparer.Ordinal);
        foreach (var (key, element) in value)
            copy[key] = Detach(element, $"Metadata entry '{key}'");
        return new FrozenMap<JsonElement>(copy);
    }

    public static IReadOnlyDictionary<string, Failure> FreezeFailures(IReadOnlyDictionary<string, Failure> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value is FrozenMap<Failure>) return value;
        var copy = new Dictionary<string, Failure>(value.Count, StringComparer.Ordinal);
        foreach (var (key, failure) in value)
            copy[key] = failure ?? throw new ArgumentException($"The failure recorded for atom '{key}' is null.", nameof(value));
        return new FrozenMap<Failure>(copy);
    }

    public static IReadOnlyList<T> FreezeList<T>(IReadOnlyList<T> value, string what) where T : class
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value is FrozenList<T>) return value;
        var copy = new T[value.Count];
        for (var i = 0; i < copy.Length; i++)
            copy[i] = value[i] ?? throw new ArgumentException($"{what} #{i} is null.", nameof(value));
        return new FrozenList<T>(copy);
    }

    public static bool JsonEquals(JsonElement? a, JsonElement? b) =>
        a is { } x ? b is { } y && JsonElement.DeepEquals(x, y) : b is null;

    public static bool MetadataEquals(IReadOnlyDictionary<string, JsonElement> a, IReadOnlyDictionary<string, JsonElement> b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a.Count != b.Count) return false;
        foreach (var (key, value) in a)
            if (!b.TryGetValue(key, out var other) || !JsonElement.DeepEquals(value, other)) return false;
        return true;
    }

    public static bool FailuresEqual(IReadOnlyDictionary<string, Failure> a, IReadOnlyDictionary<string, Failure> b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a.Count != b.Count) return false;
        foreach (var (key, value) in a)
            if (!b.TryGetValue(key, out var other) || !value.Equals(other)) return false;
        return true;
    }

    public static string Describe(string kind, string? name, Guid id) =>
        name is null ? $"{kind} {id}" : $"{kind} '{name}' ({id})";
}
