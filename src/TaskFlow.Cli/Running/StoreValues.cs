using System.Text.Json;

namespace TaskFlow.Cli.Running;

/// <summary>
/// Parses <c>--store name=value</c> pairs. A value that is JSON (<c>2</c>, <c>true</c>, <c>"text"</c>, <c>[1,2]</c>,
/// <c>{"a":1}</c>) is kept as that JSON, which converts to the task parameter's type; anything else is a string.
/// </summary>
internal static class StoreValues
{
    public static Dictionary<string, object?> Parse(IEnumerable<string> pairs)
    {
        var store = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
                throw new CliException(ExitCodes.Usage, $"--store '{pair}' is not of the form name=value.", "For example: --store volume_id=vol-1 --store size_gb=10");
            var name = pair[..eq].Trim();
            if (store.ContainsKey(name))
                throw new CliException(ExitCodes.Usage, $"--store gives '{name}' twice.", "Give each name once.");
            store[name] = Value(pair[(eq + 1)..]);
        }
        return store;
    }

    private static object? Value(string text)
    {
        if (text.Length == 0) return "";
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind switch
            {
                JsonValueKind.String => document.RootElement.GetString(),
                JsonValueKind.Null => null,
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Number when document.RootElement.TryGetInt64(out var whole) => whole is >= int.MinValue and <= int.MaxValue ? (int)whole : whole,
                JsonValueKind.Number => document.RootElement.GetDouble(),
                _ => document.RootElement.Clone(),
            };
        }
        catch (JsonException)
        {
            return text;
        }
    }
}
