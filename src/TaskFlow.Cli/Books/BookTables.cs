using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using TaskFlow.Cli.Console;
using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Cli.Books;

/// <summary>The readable (table) output of <c>books list</c> and <c>books show</c>.</summary>
internal static class BookTables
{
    public static void WriteList(CliConsole console, string store, IReadOnlyList<BookEntry> entries)
    {
        console.Line($"{store}: {Plural(entries.Count, "logbook")}, {Plural(entries.Sum(e => e.FlowDetails.Count), "flow detail")}");
        if (entries.Count == 0) return;
        var table = console.NewTable("Logbook", "Name", "Flow detail", "Flow", "State", "Atoms", "Updated (UTC)");
        foreach (var entry in entries)
        {
            if (entry.FlowDetails.Count == 0)
                table.AddRow(Esc(entry.LogBook.Id), Esc(entry.LogBook.Name), "-", "-", "-", "-", Time(entry.LogBook.UpdatedAt));
            foreach (var flow in entry.FlowDetails)
                table.AddRow(Esc(entry.LogBook.Id), Esc(entry.LogBook.Name), Esc(flow.Id), Esc(flow.Name), State(flow.State),
                    flow.Atoms.Count.ToString(CultureInfo.InvariantCulture), Time(flow.UpdatedAt));
        }
        console.Write(table);
    }

    public static void WriteFlowDetail(CliConsole console, LogBook? logBook, FlowDetail flow)
    {
        console.Line($"Flow detail {flow.Id}: {flow.Name}, {flow.State.ToTaskFlowName()}");
        console.Line($"  logbook {flow.LogBookId}{(logBook is null ? "" : $" ({logBook.Name})")}; created {Time(flow.CreatedAt)}, updated {Time(flow.UpdatedAt)} UTC");
        if (flow.Metadata.Count > 0)
            foreach (var (key, value) in flow.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                console.Line($"  {key}: {Compact(value)}");
        var table = console.NewTable("Atom", "Kind", "State", "Intention", "Result", "Failure");
        foreach (var atom in flow.Atoms)
        {
            var (result, failure) = atom switch
            {
                TaskDetail t => (ResultText(t), FailureText(t.Failure, t.RevertFailure)),
                RetryDetail r => (RetryText(r), FailureText(r.Failure, r.RevertFailure)),
                _ => ("", ""),
            };
            table.AddRow(Esc(atom.Name), atom is RetryDetail ? "retry" : "task", State(atom.State), atom.Intention.ToTaskFlowName(), Esc(result), Esc(failure));
        }
        console.Write(table);
        foreach (var atom in flow.Atoms)
        {
            var (execute, revert) = atom switch
            {
                TaskDetail t => (t.Failure, t.RevertFailure),
                RetryDetail r => (r.Failure, r.RevertFailure),
                _ => (null, null),
            };
            WriteFailure(console, atom.Name, "failed", execute);
            WriteFailure(console, atom.Name, "failed to revert", revert);
        }
    }

    private static void WriteFailure(CliConsole console, string atom, string what, Failure? failure)
    {
        for (var f = failure; f is not null; f = f.Cause)
        {
            console.Line(f == failure ? $"{atom} {what}: {f.ExceptionTypeName}: {f.Message}" : $"  caused by {f.ExceptionTypeName}: {f.Message}");
            if (!string.IsNullOrWhiteSpace(f.StackTrace))
                foreach (var line in f.StackTrace.Split('\n'))
                    console.Line("    " + line.Trim());
        }
    }

    private static string ResultText(TaskDetail task)
    {
        var parts = new List<string>();
        if (task.Result is { } r) parts.Add(Compact(r));
        if (task.RevertResult is { ValueKind: not JsonValueKind.Null } rr) parts.Add($"revert: {Compact(rr)}");
        return string.Join("; ", parts);
    }

    private static string RetryText(RetryDetail retry) =>
        retry.History.Count == 0 ? "" : $"{Plural(retry.History.Count, "attempt")}, last {(retry.History[^1].Value is { } v ? Compact(v) : "-")}";

    private static string FailureText(Failure? execute, Failure? revert)
    {
        var parts = new List<string>();
        if (execute is not null) parts.Add($"{ShortName(execute.ExceptionTypeName)}: {execute.Message}");
        if (revert is not null) parts.Add($"revert: {ShortName(revert.ExceptionTypeName)}: {revert.Message}");
        return string.Join("; ", parts);
    }

    private static string ShortName(string typeName) => typeName[(typeName.LastIndexOf('.') + 1)..];

    private static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The value as one line of JSON, non-ASCII text left readable.</summary>
    internal static string Compact(JsonElement value) => JsonSerializer.Serialize(value, Readable);

    private static string State(FlowState state) => Coloured(state.ToTaskFlowName(), state switch
    {
        FlowState.Success => "green",
        FlowState.Failure or FlowState.Reverted => "red",
        FlowState.Running or FlowState.Resuming => "yellow",
        _ => "grey",
    });

    internal static string State(AtomState state) => Coloured(state.ToTaskFlowName(), state switch
    {
        AtomState.Success => "green",
        AtomState.Failure or AtomState.RevertFailure => "red",
        AtomState.Reverted => "blue",
        AtomState.Running or AtomState.Reverting or AtomState.Retrying => "yellow",
        _ => "grey",
    });

    private static string Coloured(string text, string colour) => $"[{colour}]{Markup.Escape(text)}[/]";

    internal static string Esc(object? value) => Markup.Escape(Convert.ToString(value, CultureInfo.InvariantCulture) ?? "");

    private static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    internal static string Plural(int count, string noun) => $"{count} {noun}{(count == 1 ? "" : "s")}";
}
