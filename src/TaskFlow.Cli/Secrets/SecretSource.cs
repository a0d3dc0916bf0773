using System.Text.RegularExpressions;
using TaskFlow.Cli.Console;

namespace TaskFlow.Cli.Secrets;

/// <summary>
/// Where a value that may hold a password (a <c>--db</c> connection string, an <c>--amqp</c> URI) comes from: the
/// option itself, a file named by its <c>-file</c> twin, or an environment variable — so the password need not be on
/// the command line, where <c>ps</c> and the shell history show it to others. A password given on the command line
/// still works, with a warning.
/// </summary>
internal static partial class SecretSource
{
    /// <summary>
    /// The value: <paramref name="direct"/> (the option), else the first line of <paramref name="file"/> that is neither
    /// empty nor a <c>#</c> comment, else the environment variable <paramref name="variable"/> when it may be used.
    /// Null when none is given.
    /// </summary>
    /// <exception cref="CliException">Both the option and the file are given, or the file is missing or empty.</exception>
    public static string? Resolve(string? direct, string? file, string optionName, string? variable, CliConsole console)
    {
        if (direct is not null && file is not null)
            throw new CliException(ExitCodes.Usage, $"{optionName} and {optionName}-file are both given.", $"Give one of them.");
        if (direct is not null)
        {
            if (HoldsPassword(direct))
                console.ErrorLine($"warning: {optionName} holds a password on the command line, where other users (ps) and the shell history can see it; " +
                    $"put it in a file given with {optionName}-file{(variable is null ? "" : $" or in ${variable}")} instead.");
            return direct;
        }
        if (file is not null)
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(file);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new CliException(ExitCodes.NotFound, $"The file '{Path.GetFullPath(file)}' given with {optionName}-file does not exist.", "Check the path.");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException(ExitCodes.NotFound, $"The file '{Path.GetFullPath(file)}' given with {optionName}-file cannot be read: {e.Message}", "Check its permissions.");
            }
            var value = lines.Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0 && !l.StartsWith('#'));
            return value ?? throw new CliException(ExitCodes.Usage, $"The file '{Path.GetFullPath(file)}' given with {optionName}-file holds no value.",
                $"Put the value on a line of its own (lines starting with # are comments).");
        }
        return variable is null ? null : Environment.GetEnvironmentVariable(variable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null;
    }

    /// <summary>Whether a connection string or URI carries a password (<c>Password=…</c>, <c>Pwd=…</c>, <c>user:password@</c>).</summary>
    public static bool HoldsPassword(string value) => PasswordPair().IsMatch(value) || UserInfoPassword().IsMatch(value);

    [GeneratedRegex(@"\b(?:password|pwd)\s*=\s*[^;\s]", RegexOptions.IgnoreCase)]
    private static partial Regex PasswordPair();

    [GeneratedRegex(@"^[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@", RegexOptions.IgnoreCase)]
    private static partial Regex UserInfoPassword();
}
