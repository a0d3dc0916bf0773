using System.CommandLine;
using TaskFlow.Cli.Books;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Running;
using TaskFlow.Persistence;

namespace TaskFlow.Cli;

/// <summary>
/// The <c>taskflow</c> command line. Errors are printed as one line (<c>error: …</c>) and a hint (<c>hint: …</c>), with
/// the stack only under <c>--verbose</c>, and end the process with one of <see cref="ExitCodes"/>. Nothing printed
/// contains a password from a connection string.
/// </summary>
public static class TaskFlowCommand
{
    /// <summary>Parses <paramref name="args"/>, runs the command and returns the exit code.</summary>
    /// <param name="args">The command line, without the program name.</param>
    /// <param name="output">Where results go (standard output).</param>
    /// <param name="error">Where errors go (standard error).</param>
    /// <param name="interactive">Whether <paramref name="output"/> is a terminal: colours, borders and live progress.</param>
    /// <param name="cancellationToken">Cancels the command (Ctrl+C when run as a program).</param>
    public static async Task<int> InvokeAsync(string[] args, TextWriter output, TextWriter error, bool interactive, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        var redactor = new Redactor();
        var console = new CliConsole(output, error, interactive, redactor);
        var verbose = new Option<bool>("--verbose", "-v") { Description = "On error, print the full exception with its stack.", Recursive = true };
        var common = new CommonOptions();
        var root = new RootCommand("taskflow: look inside saved flow runs, draw flows, run a flow from a factory method, serve tasks to distributed engines.")
        {
            verbose,
            BooksCommand.Create(common, () => console),
            Diagrams.GraphCommand.Create(common, () => console),
            RunCommand.Create(common, () => console),
            Workers.WorkerCommand.Create(common, () => console),
        };

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) console.ErrorLine($"error: {OneLine(e.Message)}");
            console.ErrorLine($"hint: taskflow {string.Join(' ', CommandPath(parse))} --help shows the options.");
            return ExitCodes.Usage;
        }
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false }, cancellationToken);
        }
        catch (CliException e)
        {
            return Report(console, e.ExitCode, e.Message, e.Hint, parse.GetValue(verbose) ? e.InnerException ?? e : null);
        }
        catch (OperationCanceledException)
        {
            return Report(console, ExitCodes.Cancelled, "Interrupted.", null, null);
        }
        catch (PersistenceException e)
        {
            return Report(console, ExitCodes.StoreError, e.Message, "Check --db; --verbose shows the stack.", parse.GetValue(verbose) ? e : null);
        }
        catch (Exception e) when (IsStoreConnectionError(e))
        {
            return Report(console, ExitCodes.StoreError, $"Cannot reach the store: {e.Message}", "Check the host, port, user name and password in --db.", parse.GetValue(verbose) ? e : null);
        }
        catch (Exception e)
        {
            return Report(console, ExitCodes.InternalError, $"{e.GetType().Name}: {e.Message}",
                "This is a bug in taskflow; please report it with the output of --verbose.", parse.GetValue(verbose) ? e : null);
        }
    }

    private static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new Stack<string>();
        for (var r = parse.CommandResult; r.Parent is System.CommandLine.Parsing.CommandResult parent; r = parent) names.Push(r.Command.Name);
        return names;
    }

    private static bool IsStoreConnectionError(Exception e) =>
        e is System.Data.Common.DbException or System.Net.Sockets.SocketException or TimeoutException
        || e.InnerException is { } inner && IsStoreConnectionError(inner);

    private static int Report(CliConsole console, int exitCode, string message, string? hint, Exception? verbose)
    {
        console.ErrorLine($"error: {OneLine(message)}");
        if (hint is not null) console.ErrorLine($"hint: {OneLine(hint)}");
        if (verbose is not null) console.ErrorLine(verbose.ToString());
        return exitCode;
    }

    private static string OneLine(string text) => string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()));
}
