using Spectre.Console;
using Spectre.Console.Rendering;

namespace TaskFlow.Cli.Console;

/// <summary>
/// Where a command writes. Everything goes through <see cref="Redactor"/>. On a terminal, tables are drawn with
/// colours and rounded borders and runs get a live display; otherwise (redirected, piped, tests) output is plain
/// ASCII lines that are stable to diff and parse.
/// </summary>
internal sealed class CliConsole(TextWriter output, TextWriter error, bool interactive, Redactor redactor)
{
    public bool Interactive { get; } = interactive;

    public Redactor Redactor { get; } = redactor;

    public TextWriter Output { get; } = output;

    public void Line(string text = "") => Output.WriteLine(Redactor.Redact(text));

    public void ErrorLine(string text) => error.WriteLine(Redactor.Redact(text));

    /// <summary>A table with these columns: rounded borders on a terminal, ASCII ones otherwise.</summary>
    public Table NewTable(params string[] columns) =>
        new Table().Border(Interactive ? TableBorder.Rounded : TableBorder.Ascii).AddColumns(columns);

    /// <summary>Writes a Spectre.Console renderable (a table, a tree) as text, redacted.</summary>
    public void Write(IRenderable renderable)
    {
        using var buffer = new StringWriter();
        var console = CreateSpectreConsole(buffer);
        console.Write(renderable);
        Output.Write(Redactor.Redact(buffer.ToString()));
    }

    /// <summary>A Spectre.Console console over <paramref name="writer"/> with this console's capabilities.</summary>
    public IAnsiConsole CreateSpectreConsole(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = Interactive ? AnsiSupport.Yes : AnsiSupport.No,
            ColorSystem = Interactive ? ColorSystemSupport.Standard : ColorSystemSupport.NoColors,
            Interactive = Interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        console.Profile.Capabilities.Unicode = Interactive;
        console.Profile.Width = Interactive ? TerminalWidth() : 200;
        return console;
    }

    private static int TerminalWidth()
    {
        try { return System.Console.WindowWidth > 0 ? System.Console.WindowWidth : 120; }
        catch (IOException) { return 120; }
    }
}
