using System.Text.Json;
using System.Text.Json.Nodes;
using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Cli.Books;

/// <summary>
/// The <c>--json</c> shapes of <c>books list</c> and <c>books show</c> (documented in docs/cli.md). States and
/// intentions use TaskFlow's names; results are the JSON that was saved, unchanged.
/// </summary>
internal static class BookJson
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static string List(string store, IReadOnlyList<BookEntry> entries) => new JsonObject
    {
        ["store"] = store,
        ["logBooks"] = new JsonArray([.. entries.Select(e => (JsonNode)new JsonObject
        {
            ["id"] = e.LogBook.Id,
            ["name"] = e.LogBook.Name,
            ["createdAt"] = e.LogBook.CreatedAt,
            ["updatedAt"] = e.LogBook.UpdatedAt,
            ["flowDetails"] = new JsonArray([.. e.FlowDetails.Select(f => (JsonNode)new JsonObject
            {
                ["id"] = f.Id,
                ["name"] = f.Name,
                ["state"] = f.State.ToTaskFlowName(),
                ["createdAt"] = f.CreatedAt,
                ["updatedAt"] = f.UpdatedAt,
                ["atomCount"] = f.Atoms.Count,
            })]),
        })]),
    }.ToJsonString(Indented);

    public static string Show(string store, IReadOnlyList<FlowDetail> flowDetails) => new JsonObject
    {
        ["store"] = store,
        ["flowDetails"] = new JsonArray([.. flowDetails.Select(f => (JsonNode)FlowDetail(f))]),
    }.ToJsonString(Indented);

    private static JsonObject FlowDetail(FlowDetail f) => new()
    {
        ["id"] = f.Id,
        ["logBookId"] = f.LogBookId,
        ["name"] = f.Name,
        ["state"] = f.State.ToTaskFlowName(),
        ["createdAt"] = f.CreatedAt,
        ["updatedAt"] = f.UpdatedAt,
        ["metadata"] = Metadata(f.Metadata),
        ["atoms"] = new JsonArray([.. f.Atoms.Select(a => (JsonNode)Atom(a))]),
    };

    private static JsonObject Atom(AtomDetail atom)
    {
        var node = new JsonObject
        {
            ["id"] = atom.Id,
            ["name"] = atom.Name,
            ["kind"] = atom is RetryDetail ? "retry" : "task",
            ["state"] = atom.State.ToTaskFlowName(),
            ["intention"] = atom.Intention.ToTaskFlowName(),
        };
        switch (atom)
        {
            case TaskDetail task:
                // Absent: no result; null: a result that is JSON null (the store keeps the two apart, so does this).
                if (task.Result is not null) node["result"] = Json(task.Result);
                node["failure"] = Failure(task.Failure);
                if (task.RevertResult is not null) node["revertResult"] = Json(task.RevertResult);
                node["revertFailure"] = Failure(task.RevertFailure);
                break;
            case RetryDetail retry:
                node["history"] = new JsonArray([.. retry.History.Select(h => (JsonNode)new JsonObject
                {
                    ["value"] = Json(h.Value),
                    ["failures"] = new JsonObject(h.Failures.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)Failure(p.Value)))),
                })]);
                node["failure"] = Failure(retry.Failure);
                node["revertFailure"] = Failure(retry.RevertFailure);
                break;
        }
        node["metadata"] = Metadata(atom.Metadata);
        return node;
    }

    internal static JsonObject? Failure(Failure? failure) => failure is null ? null : new JsonObject
    {
        ["type"] = failure.ExceptionTypeName,
        ["types"] = new JsonArray([.. failure.ExceptionTypeNames.Select(t => (JsonNode?)t)]),
        ["message"] = failure.Message,
        ["stackTrace"] = failure.StackTrace,
        ["cause"] = Failure(failure.Cause),
    };

    private static JsonNode? Json(JsonElement? value) => value is { } v ? JsonNode.Parse(v.GetRawText()) ?? JsonValue.Create((string?)null) : null;

    private static JsonObject Metadata(IReadOnlyDictionary<string, JsonElement> metadata) =>
        new(metadata.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, Json(p.Value))));
}
