namespace TaskFlow.Cli;

/// <summary>An error the user can act on: one line saying what is wrong, a hint saying what to do, and the exit code.</summary>
internal sealed class CliException(int exitCode, string message, string? hint = null, Exception? inner = null) : Exception(message, inner)
{
    public int ExitCode { get; } = exitCode;

    public string? Hint { get; } = hint;
}
