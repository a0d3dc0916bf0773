using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace TaskFlow.Chaos.BadInput;

/// <summary>
/// What one bad-input case fed to TaskFlow, reduced to its shape so that equal inputs hash equal: the random names a
/// case draws (through <see cref="Name"/>) are replaced by their order of drawing, and GUIDs and timestamps (new in every
/// run of the same input) by placeholders. The run counts distinct hashes, so "2000 cases" cannot hide 1400 repeats of a
/// handful of fixed shapes behind fresh names.
/// </summary>
internal sealed partial class CaseInput
{
    private readonly List<string> _parts = [];
    private readonly List<(string Name, string Token)> _names = [];

    /// <summary>A random name, remembered so that it hashes as "its k-th name" rather than as its digits.</summary>
    public string Name(Random rng, string prefix)
    {
        string name;
        do name = $"{prefix}-{rng.Next(1000, 9999)}";
        while (_names.Any(n => n.Name == name));
        _names.Add((name, $"<{prefix}#{_names.Count}>"));
        return name;
    }

    /// <summary>Adds a part of the input (a shape description, a document, the bytes of a message).</summary>
    public void Add(string part) => _parts.Add(part);

    public void Add(ReadOnlySpan<byte> bytes) => _parts.Add(Convert.ToHexString(SHA256.HashData(bytes)));

    public bool IsEmpty => _parts.Count == 0;

    /// <summary>Why the case's outcome is a known gap rather than a pass (see <see cref="Gap"/>), or null.</summary>
    public string? GapReason { get; private set; }

    /// <summary>
    /// Records that the case ended in an outcome the check cannot call right or wrong with what the stored format holds
    /// (damaged data read back as valid but different): counted apart from passes, and a failure under
    /// <c>--strict-reads</c>.
    /// </summary>
    public void Gap(string reason) => GapReason ??= reason;

    /// <summary>The hash of the normalized parts.</summary>
    public string Hash()
    {
        var text = new StringBuilder();
        foreach (var part in _parts)
        {
            var p = Guids().Replace(part, "<id>");
            p = Timestamps().Replace(p, "<time>");
            foreach (var (name, token) in _names.OrderByDescending(n => n.Name.Length))
                p = p.Replace(name, token, StringComparison.Ordinal);
            text.Append(p).Append('\u0001');
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    [GeneratedRegex("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")]
    private static partial Regex Guids();

    [GeneratedRegex(@"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")]
    private static partial Regex Timestamps();
}
