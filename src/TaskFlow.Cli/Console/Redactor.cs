using System.Text.RegularExpressions;

namespace TaskFlow.Cli.Console;

/// <summary>
/// Removes secrets from everything taskflow prints: the passwords of the connection strings it was given, and any
/// <c>Password=…</c> pair that appears in a message (a driver may echo its connection string in an error).
/// </summary>
internal sealed partial class Redactor
{
    public const string Mask = "***";

    private readonly List<string> _secrets = [];

    /// <summary>Every later output has <paramref name="secret"/> replaced by <see cref="Mask"/>.</summary>
    public void AddSecret(string? secret)
    {
        if (string.IsNullOrEmpty(secret)) return;
        lock (_secrets)
        {
            if (!_secrets.Contains(secret)) _secrets.Add(secret);
            // Longer first, so a secret that contains another is replaced whole.
            _secrets.Sort((a, b) => b.Length.CompareTo(a.Length));
        }
    }

    public string Redact(string text)
    {
        if (string.IsNullOrEmpty(text)) return text;
        lock (_secrets)
            foreach (var secret in _secrets)
                text = text.Replace(secret, Mask, StringComparison.Ordinal);
        return PasswordPair().Replace(text, m => $"{m.Groups["key"].Value}={Mask}");
    }

    [GeneratedRegex(@"(?<key>\b(?:password|pwd))\s*=\s*(?:'[^']*'|""[^""]*""|[^;\s]*)", RegexOptions.IgnoreCase)]
    private static partial Regex PasswordPair();
}
