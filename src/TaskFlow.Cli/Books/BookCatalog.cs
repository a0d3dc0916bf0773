using TaskFlow.Persistence;

namespace TaskFlow.Cli.Books;

/// <summary>Everything in a store: its logbooks, each with its flow details (atoms included).</summary>
internal sealed record BookEntry(LogBook LogBook, IReadOnlyList<FlowDetail> FlowDetails);

/// <summary>Reads a store and finds logbooks or flow details by id or by the start of an id (as git does with commits).</summary>
internal sealed class BookCatalog
{
    private BookCatalog(IReadOnlyList<BookEntry> entries) => Entries = entries;

    public IReadOnlyList<BookEntry> Entries { get; }

    public static async Task<BookCatalog> LoadAsync(IPersistenceBackend backend, CancellationToken cancellationToken)
    {
        var entries = new List<BookEntry>();
        foreach (var book in await backend.ListLogBooksAsync(cancellationToken))
            entries.Add(new BookEntry(book, await backend.ListFlowDetailsAsync(book.Id, cancellationToken)));
        return new BookCatalog(entries);
    }

    /// <summary>The flow details an id names: one flow detail, or every flow detail of one logbook.</summary>
    /// <exception cref="CliException">Nothing, or more than one thing, has an id starting with <paramref name="id"/>.</exception>
    public (LogBook? LogBook, IReadOnlyList<FlowDetail> FlowDetails) Find(string id)
    {
        var key = Key(id);
        var books = Entries.Where(e => Matches(e.LogBook.Id, key)).ToList();
        var flows = Entries.SelectMany(e => e.FlowDetails).Where(f => Matches(f.Id, key)).ToList();
        var count = books.Count + flows.Count;
        if (count == 0)
            throw new CliException(ExitCodes.NotFound, $"No logbook or flow detail has the id '{id}'.", "Ids are shown by: taskflow books list --db …");
        if (count > 1)
            throw new CliException(ExitCodes.Usage,
                $"'{id}' starts {count} ids: {string.Join(", ", books.Select(b => $"logbook {b.LogBook.Id}").Concat(flows.Select(f => $"flow detail {f.Id}")))}.",
                "Give more of the id.");
        return books.Count == 1 ? (books[0].LogBook, books[0].FlowDetails) : (null, flows);
    }

    /// <summary>The flow detail an id names (logbooks are not considered).</summary>
    /// <exception cref="CliException">No flow detail, or more than one, has an id starting with <paramref name="id"/>.</exception>
    public FlowDetail FindFlowDetail(string id)
    {
        var key = Key(id);
        var flows = Entries.SelectMany(e => e.FlowDetails).Where(f => Matches(f.Id, key)).ToList();
        return flows.Count switch
        {
            1 => flows[0],
            0 => throw new CliException(ExitCodes.NotFound, $"No flow detail has the id '{id}'.", "Ids are shown by: taskflow books list --db …"),
            _ => throw new CliException(ExitCodes.Usage, $"'{id}' starts {flows.Count} flow detail ids: {string.Join(", ", flows.Select(f => f.Id))}.", "Give more of the id."),
        };
    }

    private static string Key(string id)
    {
        var key = id.Trim().ToLowerInvariant();
        if (key.Length < 4 || !key.All(c => char.IsAsciiHexDigit(c) || c == '-'))
            throw new CliException(ExitCodes.Usage, $"'{id}' is not an id (or the start of one, at least 4 hex digits).",
                "Ids are shown by: taskflow books list --db …");
        return key;
    }

    private static bool Matches(Guid candidate, string key) => candidate.ToString("D").StartsWith(key, StringComparison.Ordinal)
        || candidate.ToString("N").StartsWith(key.Replace("-", "", StringComparison.Ordinal), StringComparison.Ordinal) && !key.Contains('-', StringComparison.Ordinal);
}
