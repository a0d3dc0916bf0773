using System.Globalization;

namespace TaskFlow.Chaos;

/// <summary>
/// The chaos commands' <c>--name value</c> options (and <c>--flag</c>s, read as "true"). Given the names a command knows, anything else is refused; a bad
/// option is an <see cref="ArgumentException"/>, which the program reports as a usage error.
/// </summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Options Parse(string[] args, params string[] known)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
                throw new ArgumentException($"Expected '--name value' pairs (or a '--flag'), got '{args[i]}'.");
            var name = args[i][2..];
            if (known.Length > 0 && !known.Contains(name, StringComparer.Ordinal))
                throw new ArgumentException($"Unknown option '--{name}'; options: {string.Join(", ", known.Select(k => "--" + k))}.");
            // A name followed by another name (or by nothing) is a flag.
            o._values[name] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
        }
        return o;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);

    public string Get(string name, string fallback) => Get(name) ?? fallback;

    public string Require(string name) => Get(name) ?? throw new ArgumentException($"--{name} is required.");

    public int Int(string name, int fallback) =>
        Get(name) is { } text
            ? int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
                ? value
                : throw new ArgumentException($"--{name} must be an integer, not '{text}'.")
            : fallback;
}
