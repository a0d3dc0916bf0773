namespace TaskFlow.Cli;

/// <summary>What the <c>taskflow</c> process exits with (documented in docs/cli.md; scripts rely on these numbers).</summary>
public static class ExitCodes
{
    /// <summary>The command did what was asked (for <c>run</c>: the flow finished in SUCCESS).</summary>
    public const int Success = 0;

    /// <summary><c>run</c>: the flow failed; what it had done was reverted (or a revert failed).</summary>
    public const int FlowFailed = 1;

    /// <summary>The command line is wrong: an unknown option, a missing or malformed value.</summary>
    public const int Usage = 2;

    /// <summary>Something named on the command line does not exist: a database file, a logbook or flow detail id, an assembly, a type or method.</summary>
    public const int NotFound = 3;

    /// <summary>The persistence store could not be opened or read (bad connection, refused login, newer schema, malformed data).</summary>
    public const int StoreError = 4;

    /// <summary>The flow could not be built or run at all: the factory threw or returned no flow, a cycle, a missing input.</summary>
    public const int InvalidFlow = 5;

    /// <summary>A tool the command needs is not installed (Graphviz <c>dot</c> for <c>--format svg</c>).</summary>
    public const int MissingTool = 6;

    /// <summary>An unexpected error inside taskflow itself (a bug: please report it with the <c>--verbose</c> output).</summary>
    public const int InternalError = 70;

    /// <summary>Interrupted (Ctrl+C); a persisted run can be continued with <c>--resume</c>.</summary>
    public const int Cancelled = 130;
}
