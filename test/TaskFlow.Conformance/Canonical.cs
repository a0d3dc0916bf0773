using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TaskFlow.Failures;

namespace TaskFlow.Conformance;

/// <summary>Python's json.dumps(sort_keys=True, separators=(",", ":")) for the values scenarios use.</summary>
public static class Canonical
{
    public static object? FromJson(JsonNode? node) => node switch
    {
        null => null,
        JsonArray a => a.Select(FromJson).ToList(),
        JsonObject o => o.ToDictionary(p => p.Key, p => FromJson(p.Value), StringComparer.Ordinal),
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => v.GetValue<string>(),
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Number => v.GetValue<long>(),
            _ => null,
        },
        _ => throw new InvalidOperationException($"Unexpected JSON node {node.GetType().Name}"),
    };

    public static string Render(object? value)
    {
        var sb = new StringBuilder();
        Write(sb, value);
        return sb.ToString();
    }

    public static void Write(StringBuilder sb, object? value)
    {
        switch (value)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case string s: WriteString(sb, s); break;
            case long or int or short or byte or sbyte or uint or ulong or ushort:
                sb.Append(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)); break;
            case Failure f: sb.Append("Failure("); WriteString(sb, Message(f)); sb.Append(')'); break;
            case JsonElement je: Write(sb, FromJson(JsonNode.Parse(je.GetRawText()))); break;
            case IDictionary<string, object?> d:
                sb.Append('{');
                bool first = true;
                foreach (var k in d.Keys.Order(StringComparer.Ordinal))
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, k);
                    sb.Append(':');
                    Write(sb, d[k]);
                }
                sb.Append('}');
                break;
            case System.Collections.IEnumerable e:
                sb.Append('[');
                bool f1 = true;
                foreach (var item in e)
                {
                    if (!f1) sb.Append(',');
                    f1 = false;
                    Write(sb, item);
                }
                sb.Append(']');
                break;
            default: throw new InvalidOperationException($"Cannot render {value.GetType()}");
        }
    }

    private static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (var ch in s)
        {
            if (ch == '"') sb.Append("\\\"");
            else if (ch == '\\') sb.Append("\\\\");
            else if (ch < 0x20 || ch > 0x7e) sb.Append($"\\u{(int)ch:x4}");
            else sb.Append(ch);
        }
        sb.Append('"');
    }

    /// <summary>A failure as the oracle reports it: the behaviour's message, or "!" + snake_case(class) for internal errors.</summary>
    public static string Message(Failure f)
    {
        if (f.Check<ScenarioError>()) return f.Message;
        if (f.Check<NotFoundException>()) return "!not_found";
        var name = f.ExceptionTypeName;
        name = name[(name.LastIndexOf('.') + 1)..];
        if (name.EndsWith("Exception", StringComparison.Ordinal)) name = name[..^"Exception".Length];
        var sb = new StringBuilder("!");
        for (int i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(name[i]));
        }
        return sb.ToString();
    }
}

/// <summary>The exception a scenario behaviour raises ("fail").</summary>
public sealed class ScenarioError(string message) : Exception(message);
