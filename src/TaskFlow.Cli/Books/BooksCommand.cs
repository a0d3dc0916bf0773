using System.CommandLine;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Stores;

namespace TaskFlow.Cli.Books;

/// <summary><c>taskflow books list|show|delete</c>: what a persistence store holds.</summary>
internal static class BooksCommand
{
    public static Command Create(CommonOptions common, Func<CliConsole> console)
    {
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables (shape in docs/cli.md)." };
        var list = new Command("list", "List the logbooks and their flow details (the store is opened read-only: nothing is created or changed).") { common.Db, common.DbFile, common.Schema, json };
        list.SetAction(async (parse, ct) =>
        {
            var c = console();
            await using var store = Open(parse, common, c, StoreAccess.ReadOnly);
            var catalog = await BookCatalog.LoadAsync(store.Backend, ct);
            if (parse.GetValue(json)) c.Line(BookJson.List(store.DisplayName, catalog.Entries));
            else BookTables.WriteList(c, store.DisplayName, catalog.Entries);
            return ExitCodes.Success;
        });

        var showId = new Argument<string?>("id")
        {
            Description = "A flow detail id, or a logbook id (all its flow details); the start of an id is enough. Omitted: every flow detail.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var show = new Command("show", "Show flow details: each atom's state, intention, result and failure (the store is opened read-only).") { showId, common.Db, common.DbFile, common.Schema, json };
        show.SetAction(async (parse, ct) =>
        {
            var c = console();
            await using var store = Open(parse, common, c, StoreAccess.ReadOnly);
            var catalog = await BookCatalog.LoadAsync(store.Backend, ct);
            var id = parse.GetValue(showId);
            var selected = id is null
                ? catalog.Entries.SelectMany(e => e.FlowDetails.Select(f => (LogBook: (TaskFlow.Persistence.LogBook?)e.LogBook, Flow: f))).ToList()
                : Select(catalog, id);
            if (parse.GetValue(json))
            {
                c.Line(BookJson.Show(store.DisplayName, [.. selected.Select(s => s.Flow)]));
                return ExitCodes.Success;
            }
            if (selected.Count == 0) c.Line($"{store.DisplayName}: no flow details.");
            for (int i = 0; i < selected.Count; i++)
            {
                if (i > 0) c.Line();
                BookTables.WriteFlowDetail(c, selected[i].LogBook, selected[i].Flow);
            }
            return ExitCodes.Success;
        });

        var deleteId = new Argument<string>("id") { Description = "The logbook (with all its flow details) or flow detail to delete; the start of an id is enough." };
        var delete = new Command("delete", "Delete a logbook with its flow details, or one flow detail.") { deleteId, common.Db, common.DbFile, common.Schema };
        delete.SetAction(async (parse, ct) =>
        {
            var c = console();
            await using var store = Open(parse, common, c, StoreAccess.Existing);
            await store.CheckAsync(ct);
            var catalog = await BookCatalog.LoadAsync(store.Backend, ct);
            var (book, flows) = catalog.Find(parse.GetValue(deleteId)!);
            if (book is not null)
            {
                await store.Backend.DeleteLogBookAsync(book.Id, ct);
                c.Line($"Deleted logbook {book.Id} ({book.Name}) and its {BookTables.Plural(flows.Count, "flow detail")} from {store.DisplayName}.");
            }
            else
            {
                await store.Backend.DeleteFlowDetailAsync(flows[0].Id, ct);
                c.Line($"Deleted flow detail {flows[0].Id} ({flows[0].Name}) from {store.DisplayName}.");
            }
            return ExitCodes.Success;
        });

        return new Command("books", "Look inside a persistence store: logbooks, flow details and their atoms. list and show open the store read-only: " +
            "they never create or change anything, and refuse a file or schema that is not a TaskFlow store.") { list, show, delete };
    }

    private static List<(TaskFlow.Persistence.LogBook? LogBook, TaskFlow.Persistence.FlowDetail Flow)> Select(BookCatalog catalog, string id)
    {
        var (book, flows) = catalog.Find(id);
        return [.. flows.Select(f => (book ?? catalog.Entries.FirstOrDefault(e => e.LogBook.Id == f.LogBookId)?.LogBook, f))];
    }

    private static StoreTarget Open(ParseResult parse, CommonOptions common, CliConsole console, StoreAccess access) =>
        StoreLocator.Open(StoreLocator.Require(parse, common.Db, common, console), parse.GetValue(common.Schema)!, access, console.Redactor);
}
