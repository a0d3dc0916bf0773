using System.Buffers;
using System.Text;
using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Persistence;

namespace TaskFlow.Workers;

/// <summary>
/// The worker protocol's JSON form. Every message is one UTF-8 JSON object with <c>"version"</c> (<see cref="Version"/>)
/// and <c>"type"</c> (<c>request</c>, <c>response</c>, <c>notify</c>, <c>discover</c>, <c>cancel</c>); failures use the persistence
/// failure form (<see cref="PersistenceJson"/>). <see cref="Parse"/> validates everything it reads and throws
/// <see cref="WorkerProtocolException"/> naming the fault; it never instantiates a type named by the message.
/// Properties it does not know are ignored, so a newer sender may add optional fields without a version change.
/// </summary>
public static class WorkerProtocol
{
    /// <summary>The protocol version this library speaks.</summary>
    public const int Version = 1;

    /// <summary>The default bound on a message's size: 4 MiB.</summary>
    public const int DefaultMaxMessageBytes = 4 * 1024 * 1024;

    /// <summary>
    /// Every reply address starts with this: a worker replies only to addresses under it, so a request cannot make a
    /// worker publish into an arbitrary queue of the broker.
    /// </summary>
    internal const string ReplyAddressPrefix = "taskflow.reply.";

    private const int MaxIdLength = 128;
    private const int MaxNameLength = 1024;
    private const int MaxTasksPerWorker = 10_000;

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = PersistenceJson.MaxJsonDepth };

    /// <summary>The message as UTF-8 JSON.</summary>
    /// <exception cref="ArgumentException">A value cannot be written (for example a failure chain that is too deep).</exception>
    public static byte[] Serialize(WorkerMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = PersistenceJson.Options.Encoder, MaxDepth = PersistenceJson.MaxJsonDepth + 8 }))
        {
            w.WriteStartObject();
            w.WriteNumber("version", Version);
            switch (message)
            {
                case TaskRequest r:
                    w.WriteString("type", "request");
                    w.WriteString("id", r.Id);
                    w.WriteString("task", r.TaskName);
                    w.WriteString("atom", r.AtomName);
                    w.WriteString("action", r.Action == TaskAction.Execute ? "execute" : "revert");
                    w.WriteString("reply_to", r.ReplyTo);
                    w.WriteStartObject("arguments");
                    foreach (var (name, value) in r.Arguments)
                    {
                        w.WritePropertyName(name);
                        value.WriteTo(w);
                    }
                    w.WriteEndObject();
                    if (r.Action == TaskAction.Revert)
                    {
                        w.WriteStartObject("result");
                        if (r.ResultFailure is { } rf)
                        {
                            w.WriteString("outcome", "failure");
                            w.WritePropertyName("failure");
                            WriteFailure(w, rf);
                        }
                        else
                        {
                            w.WriteString("outcome", "success");
                            w.WritePropertyName("value");
                            WriteValue(w, r.Result);
                        }
                        w.WriteEndObject();
                        w.WriteStartObject("failures");
                        foreach (var (name, f) in r.FlowFailures)
                        {
                            w.WritePropertyName(name);
                            WriteFailure(w, f);
                        }
                        w.WriteEndObject();
                    }
                    if (r.Timeout is { } t) w.WriteNumber("timeout_ms", (long)t.TotalMilliseconds);
                    if (r.Deadline is { } d) w.WriteNumber("deadline_ms", d.ToUnixTimeMilliseconds());
                    break;
                case TaskResponse s:
                    w.WriteString("type", "response");
                    w.WriteString("id", s.Id);
                    w.WriteString("state", StateName(s.State));
                    w.WriteString("worker", s.WorkerId);
                    switch (s.State)
                    {
                        case ResponseState.Success:
                            w.WritePropertyName("result");
                            WriteValue(w, s.Result);
                            break;
                        case ResponseState.Failure:
                            w.WritePropertyName("failure");
                            WriteFailure(w, s.Failure ?? throw new ArgumentException($"Response '{s.Id}' is a FAILURE without a failure.", nameof(message)));
                            if (s.Refused is { } refused) w.WriteString("refused", refused);
                            break;
                        case ResponseState.Progress:
                            w.WriteNumber("progress", s.Progress);
                            w.WritePropertyName("details");
                            WriteValue(w, s.Details);
                            break;
                    }
                    break;
                case WorkerNotification n:
                    w.WriteString("type", "notify");
                    w.WriteString("worker", n.WorkerId);
                    w.WriteString("topic", n.Topic);
                    w.WriteStartArray("tasks");
                    foreach (var task in n.Tasks) w.WriteStringValue(task);
                    w.WriteEndArray();
                    w.WriteNumber("heartbeat_ms", (long)n.HeartbeatInterval.TotalMilliseconds);
                    if (n.Leaving) w.WriteBoolean("leaving", true);
                    break;
                case DiscoveryRequest:
                    w.WriteString("type", "discover");
                    break;
                case CancelRequest c:
                    w.WriteString("type", "cancel");
                    w.WriteString("id", c.Id);
                    if (c.Deadline is { } cd) w.WriteNumber("deadline_ms", cd.ToUnixTimeMilliseconds());
                    break;
                default:
                    throw new ArgumentException($"Unknown worker message type {message.GetType().Name}.", nameof(message));
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Reads and validates one message.</summary>
    /// <param name="utf8Json">The message body.</param>
    /// <param name="maxMessageBytes">Messages larger than this are rejected before they are parsed.</param>
    /// <exception cref="WorkerProtocolException">The message is oversized, not JSON, of another version, or not of the protocol's shape.</exception>
    public static WorkerMessage Parse(ReadOnlySpan<byte> utf8Json, int maxMessageBytes = DefaultMaxMessageBytes)
    {
        if (utf8Json.Length > maxMessageBytes)
            throw new WorkerProtocolException($"Message of {utf8Json.Length} bytes exceeds the {maxMessageBytes}-byte limit.");
        if (utf8Json.IsEmpty) throw new WorkerProtocolException("Message is empty.");
        JsonDocument doc;
        try
        {
            // JsonDocument.Parse needs memory it can keep; the message is copied once.
            doc = JsonDocument.Parse(utf8Json.ToArray(), DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new WorkerProtocolException($"Message is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new WorkerProtocolException($"Message is a JSON {Kind(root)}, not an object.");
            if (!root.TryGetProperty("version", out var v) || v.ValueKind != JsonValueKind.Number)
                throw new WorkerProtocolException("Message has no numeric \"version\".");
            if (!v.TryGetInt32(out int version) || version != Version)
                throw new WorkerProtocolException($"Message has protocol version {v.GetRawText()}; this worker protocol speaks version {Version}.");
            var type = RequiredString(root, "type", "message", MaxNameLength);
            return type switch
            {
                "request" => ReadRequest(root),
                "response" => ReadResponse(root),
                "notify" => ReadNotification(root),
                "discover" => new DiscoveryRequest(),
                "cancel" => ReadCancel(root),
                _ => throw new WorkerProtocolException($"Message has unknown type '{Truncate(type)}'."),
            };
        }
    }

    /// <summary>
    /// A received JSON value as a value for the engine or a task: null, a string or a bool for those JSON values (each
    /// has one natural .NET type, and a string result stays indexable by positional provides), else the element, which
    /// <see cref="Atoms.ArgumentConverter"/> converts to whatever type a parameter declares.
    /// </summary>
    internal static object? ToValue(JsonElement? element) => element switch
    {
        null => null,
        { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined } => null,
        { ValueKind: JsonValueKind.String } e => e.GetString(),
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        { } e => e,
    };

    /// <summary>A value as JSON, with the persistence options (failures in their JSON form, no type names).</summary>
    /// <exception cref="ArgumentException">The value cannot be written as JSON.</exception>
    internal static JsonElement ToJson(object? value, string what)
    {
        if (value is JsonElement je) return je;
        try
        {
            return value is null
                ? JsonSerializer.SerializeToElement<object?>(null, PersistenceJson.Options)
                : JsonSerializer.SerializeToElement(value, value.GetType(), PersistenceJson.Options);
        }
        catch (Exception e) when (e is NotSupportedException or JsonException or InvalidOperationException or ArgumentException)
        {
            throw new ArgumentException($"{what} of type {value!.GetType().Name} cannot be sent as JSON: {e.Message}", e);
        }
    }

    private static TaskRequest ReadRequest(JsonElement root)
    {
        var id = RequiredString(root, "id", "request", MaxIdLength);
        var task = RequiredString(root, "task", $"request '{id}'", MaxNameLength);
        var atom = RequiredString(root, "atom", $"request '{id}'", MaxNameLength);
        var replyTo = RequiredString(root, "reply_to", $"request '{id}'", MaxNameLength);
        var action = RequiredString(root, "action", $"request '{id}'", 16) switch
        {
            "execute" => TaskAction.Execute,
            "revert" => TaskAction.Revert,
            var a => throw new WorkerProtocolException($"Request '{id}' has unknown action '{Truncate(a)}'; expected execute or revert."),
        };
        if (!root.TryGetProperty("arguments", out var argsElement) || argsElement.ValueKind != JsonValueKind.Object)
            throw new WorkerProtocolException($"Request '{id}' has no \"arguments\" object.");
        var arguments = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var p in argsElement.EnumerateObject())
            if (!arguments.TryAdd(p.Name, p.Value.Clone()))
                throw new WorkerProtocolException($"Request '{id}' gives argument '{Truncate(p.Name)}' twice.");
        TimeSpan? timeout = null;
        if (root.TryGetProperty("timeout_ms", out var t) && t.ValueKind != JsonValueKind.Null)
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt64(out long ms) || ms <= 0 || ms > (long)TimeSpan.FromDays(365).TotalMilliseconds)
                throw new WorkerProtocolException($"Request '{id}' has an invalid \"timeout_ms\": expected a positive whole number of milliseconds.");
            timeout = TimeSpan.FromMilliseconds(ms);
        }
        var request = new TaskRequest(id, task, atom, action, arguments, replyTo) { Timeout = timeout, Deadline = OptionalInstant(root, "deadline_ms", $"Request '{id}'") };
        if (action == TaskAction.Execute) return request;

        if (!root.TryGetProperty("result", out var result) || result.ValueKind != JsonValueKind.Object)
            throw new WorkerProtocolException($"Revert request '{id}' has no \"result\" object.");
        var outcome = RequiredString(result, "outcome", $"request '{id}' result", 16);
        JsonElement? value = null;
        Failure? resultFailure = null;
        if (outcome == "success")
        {
            if (!result.TryGetProperty("value", out var rv))
                throw new WorkerProtocolException($"Revert request '{id}' has a success result without a \"value\".");
            value = rv.Clone();
        }
        else if (outcome == "failure")
        {
            resultFailure = ReadFailure(result, "failure", $"revert request '{id}' result");
        }
        else throw new WorkerProtocolException($"Revert request '{id}' has unknown result outcome '{Truncate(outcome)}'; expected success or failure.");
        var failures = new Dictionary<string, Failure>(StringComparer.Ordinal);
        if (root.TryGetProperty("failures", out var fs) && fs.ValueKind != JsonValueKind.Null)
        {
            if (fs.ValueKind != JsonValueKind.Object)
                throw new WorkerProtocolException($"Revert request '{id}' has \"failures\" that is a JSON {Kind(fs)}, not an object.");
            foreach (var p in fs.EnumerateObject())
                failures[p.Name] = ReadFailure(fs, p.Name, $"revert request '{id}' flow failure '{Truncate(p.Name)}'");
        }
        return request with { Result = value, ResultFailure = resultFailure, FlowFailures = failures };
    }

    private static TaskResponse ReadResponse(JsonElement root)
    {
        var id = RequiredString(root, "id", "response", MaxIdLength);
        var worker = RequiredString(root, "worker", $"response '{id}'", MaxNameLength);
        var state = RequiredString(root, "state", $"response '{id}'", 16) switch
        {
            "RUNNING" => ResponseState.Running,
            "PROGRESS" => ResponseState.Progress,
            "SUCCESS" => ResponseState.Success,
            "FAILURE" => ResponseState.Failure,
            var s => throw new WorkerProtocolException($"Response '{id}' has unknown state '{Truncate(s)}'; expected RUNNING, PROGRESS, SUCCESS or FAILURE."),
        };
        var response = new TaskResponse(id, state, worker);
        switch (state)
        {
            case ResponseState.Success:
                if (!root.TryGetProperty("result", out var r))
                    throw new WorkerProtocolException($"SUCCESS response '{id}' has no \"result\".");
                return response with { Result = r.Clone() };
            case ResponseState.Failure:
                string? refused = null;
                if (root.TryGetProperty("refused", out var rf) && rf.ValueKind != JsonValueKind.Null)
                {
                    if (rf.ValueKind != JsonValueKind.String || rf.GetString() is not { Length: > 0 and <= 64 } reason)
                        throw new WorkerProtocolException($"FAILURE response '{id}' has a \"refused\" that is not a short non-empty string.");
                    refused = reason;
                }
                return response with { Failure = ReadFailure(root, "failure", $"FAILURE response '{id}'"), Refused = refused };
            case ResponseState.Progress:
                if (!root.TryGetProperty("progress", out var p) || p.ValueKind != JsonValueKind.Number || !p.TryGetDouble(out double progress) || !double.IsFinite(progress))
                    throw new WorkerProtocolException($"PROGRESS response '{id}' has no numeric \"progress\".");
                return response with
                {
                    Progress = Math.Clamp(progress, 0.0, 1.0),
                    Details = root.TryGetProperty("details", out var d) ? d.Clone() : null,
                };
            default:
                return response;
        }
    }

    private static CancelRequest ReadCancel(JsonElement root)
    {
        var id = RequiredString(root, "id", "cancel request", MaxIdLength);
        return new CancelRequest(id) { Deadline = OptionalInstant(root, "deadline_ms", $"Cancel request '{id}'") };
    }

    // An instant as whole milliseconds since the Unix epoch, within the years DateTimeOffset can hold.
    private static DateTimeOffset? OptionalInstant(JsonElement root, string property, string what)
    {
        if (!root.TryGetProperty(property, out var p) || p.ValueKind == JsonValueKind.Null) return null;
        if (p.ValueKind != JsonValueKind.Number || !p.TryGetInt64(out long ms) || ms <= 0 || ms > MaxUnixMilliseconds)
            throw new WorkerProtocolException($"{what} has an invalid \"{property}\": expected a positive whole number of milliseconds since 1970-01-01 UTC.");
        return DateTimeOffset.FromUnixTimeMilliseconds(ms);
    }

    private static readonly long MaxUnixMilliseconds = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    /// <summary>Whether a request's reply-to is an address this protocol lets a worker reply to.</summary>
    internal static bool IsReplyAddress(string replyTo)
    {
        if (replyTo.Length <= ReplyAddressPrefix.Length || !replyTo.StartsWith(ReplyAddressPrefix, StringComparison.Ordinal)) return false;
        foreach (char c in replyTo.AsSpan(ReplyAddressPrefix.Length))
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) return false;
        return true;
    }

    private static WorkerNotification ReadNotification(JsonElement root)
    {
        var worker = RequiredString(root, "worker", "notification", MaxNameLength);
        var topic = RequiredString(root, "topic", $"notification from worker '{worker}'", MaxNameLength);
        if (!root.TryGetProperty("tasks", out var tasks) || tasks.ValueKind != JsonValueKind.Array)
            throw new WorkerProtocolException($"Notification from worker '{worker}' has no \"tasks\" array.");
        if (tasks.GetArrayLength() > MaxTasksPerWorker)
            throw new WorkerProtocolException($"Notification from worker '{worker}' lists more than {MaxTasksPerWorker} tasks.");
        var names = new List<string>(tasks.GetArrayLength());
        foreach (var t in tasks.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.String || t.GetString() is not { Length: > 0 and <= MaxNameLength } name)
                throw new WorkerProtocolException($"Notification from worker '{worker}' has a task name that is not a non-empty string.");
            names.Add(name);
        }
        if (!root.TryGetProperty("heartbeat_ms", out var hb) || hb.ValueKind != JsonValueKind.Number || !hb.TryGetInt64(out long ms) || ms <= 0 || ms > (long)TimeSpan.FromDays(1).TotalMilliseconds)
            throw new WorkerProtocolException($"Notification from worker '{worker}' has no valid \"heartbeat_ms\" (a positive number of milliseconds).");
        bool leaving = false;
        if (root.TryGetProperty("leaving", out var l))
        {
            if (l.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new WorkerProtocolException($"Notification from worker '{worker}' has a \"leaving\" that is not a boolean.");
            leaving = l.GetBoolean();
        }
        return new WorkerNotification(worker, topic, names, TimeSpan.FromMilliseconds(ms)) { Leaving = leaving };
    }

    private static Failure ReadFailure(JsonElement parent, string property, string what)
    {
        if (!parent.TryGetProperty(property, out var f) || f.ValueKind != JsonValueKind.Object)
            throw new WorkerProtocolException($"The {what} has no \"{property}\" failure object.");
        try
        {
            return PersistenceJson.DeserializeFailure(Encoding.UTF8.GetBytes(f.GetRawText()));
        }
        catch (Exception e) when (e is PersistenceException or JsonException or ArgumentException or FormatException)
        {
            throw new WorkerProtocolException($"The {what} has an invalid failure: {e.Message}", e);
        }
    }

    private static void WriteFailure(Utf8JsonWriter w, Failure failure) =>
        w.WriteRawValue(PersistenceJson.SerializeToUtf8Bytes(failure), skipInputValidation: true);

    private static void WriteValue(Utf8JsonWriter w, JsonElement? value)
    {
        if (value is { ValueKind: not JsonValueKind.Undefined } v) v.WriteTo(w);
        else w.WriteNullValue();
    }

    private static string RequiredString(JsonElement obj, string property, string what, int maxLength)
    {
        if (!obj.TryGetProperty(property, out var p))
            throw new WorkerProtocolException($"The {what} has no \"{property}\".");
        if (p.ValueKind != JsonValueKind.String)
            throw new WorkerProtocolException($"The {what} has a \"{property}\" that is a JSON {Kind(p)}, not a string.");
        var s = p.GetString()!;
        if (s.Length == 0) throw new WorkerProtocolException($"The {what} has an empty \"{property}\".");
        if (s.Length > maxLength) throw new WorkerProtocolException($"The {what} has a \"{property}\" longer than {maxLength} characters.");
        return s;
    }

    internal static string StateName(ResponseState state) => state switch
    {
        ResponseState.Running => "RUNNING",
        ResponseState.Progress => "PROGRESS",
        ResponseState.Success => "SUCCESS",
        _ => "FAILURE",
    };

    private static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();

    // Names from a rejected message end up in logs: keep them short.
    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";
}
