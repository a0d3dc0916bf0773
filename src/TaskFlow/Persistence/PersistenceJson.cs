using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using TaskFlow.Failures;

namespace TaskFlow.Persistence;

/// <summary>
/// The JSON form of the persistence model, shared by every backend. Documents look like
/// <c>{"kind":"task","id":"…","name":"x","state":"REVERT_FAILURE","intention":"REVERT","version":"1.0","meta":{},
/// "result":…,"failure":{"types":[…],"message":"…","stack":"…","cause":{…}}}</c>; states are TaskFlow's names,
/// absent values are omitted and a JSON null result is kept as a result. No type names are ever read from data.
/// </summary>
public static class PersistenceJson
{
    /// <summary>The default bound on the size of a document read or written: 64 MiB.</summary>
    public const int DefaultMaxDocumentBytes = 64 * 1024 * 1024;

    /// <summary>The deepest chain of failure causes that is stored or read.</summary>
    public const int MaxFailureCauseDepth = ModelCodec.MaxFailureDepth;

    /// <summary>The deepest JSON nesting that is stored or read (user results included).</summary>
    public const int MaxJsonDepth = ModelCodec.MaxJsonDepth;

    /// <summary>
    /// Read-only serializer options that know the model's contracts (<see cref="LogBook"/>, <see cref="FlowDetail"/>,
    /// <see cref="AtomDetail"/>, <see cref="RetryAttempt"/>, <see cref="Failure"/>), allow <see cref="MaxJsonDepth"/>
    /// levels and write non-ASCII text unescaped. Engines may use them to turn atom results into <see cref="JsonElement"/>s.
    /// </summary>
    public static JsonSerializerOptions Options { get; } = CreateOptions();

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.General)
        {
            MaxDepth = MaxJsonDepth,
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
        };
        options.Converters.Add(new FailureJsonConverter());
        options.MakeReadOnly();
        return options;
    }

    /// <summary>The logbook as UTF-8 JSON.</summary>
    /// <exception cref="ArgumentException">The logbook is invalid (empty id or name, default JSON values, too large).</exception>
    public static byte[] SerializeToUtf8Bytes(LogBook logBook) =>
        ModelCodec.Serialize(Check(logBook), ModelCodec.WriteLogBook, ModelCodec.Subject(logBook), DefaultMaxDocumentBytes);

    /// <summary>The flow detail, atoms included, as UTF-8 JSON.</summary>
    /// <exception cref="ArgumentException">The flow detail or one of its atoms is invalid.</exception>
    public static byte[] SerializeToUtf8Bytes(FlowDetail flowDetail) =>
        ModelCodec.Serialize(Check(flowDetail), ModelCodec.WriteFlowDetail, ModelCodec.Subject(flowDetail), DefaultMaxDocumentBytes);

    /// <summary>The atom detail as UTF-8 JSON.</summary>
    /// <exception cref="ArgumentException">The atom detail is invalid.</exception>
    public static byte[] SerializeToUtf8Bytes(AtomDetail atomDetail) =>
        ModelCodec.Serialize(Check(atomDetail), ModelCodec.WriteAtom, ModelCodec.Subject(atomDetail), DefaultMaxDocumentBytes);

    /// <summary>The failure (with its causes) as UTF-8 JSON.</summary>
    /// <exception cref="ArgumentException">The chain of causes is deeper than <see cref="MaxFailureCauseDepth"/>.</exception>
    public static byte[] SerializeToUtf8Bytes(Failure failure) =>
        ModelCodec.Serialize(Check(failure), ModelCodec.WriteFailure, "failure", DefaultMaxDocumentBytes);

    /// <summary>The logbook as a JSON string.</summary>
    public static string Serialize(LogBook logBook) => Encoding.UTF8.GetString(SerializeToUtf8Bytes(logBook));

    /// <summary>The flow detail, atoms included, as a JSON string.</summary>
    public static string Serialize(FlowDetail flowDetail) => Encoding.UTF8.GetString(SerializeToUtf8Bytes(flowDetail));

    /// <summary>The atom detail as a JSON string.</summary>
    public static string Serialize(AtomDetail atomDetail) => Encoding.UTF8.GetString(SerializeToUtf8Bytes(atomDetail));

    /// <summary>The failure as a JSON string.</summary>
    public static string Serialize(Failure failure) => Encoding.UTF8.GetString(SerializeToUtf8Bytes(failure));

    /// <summary>Reads a logbook.</summary>
    /// <param name="utf8Json">The document.</param>
    /// <param name="maxDocumentBytes">Documents larger than this are refused.</param>
    /// <exception cref="PersistenceException">The document is too large, not JSON, or not a logbook; the message names the logbook when its id and name could be read.</exception>
    public static LogBook DeserializeLogBook(ReadOnlySpan<byte> utf8Json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        ModelCodec.Parse(utf8Json, maxDocumentBytes, "logbook document", ModelCodec.ReadLogBook);

    /// <summary>Reads a flow detail with its atoms.</summary>
    /// <exception cref="PersistenceException">The document is too large, not JSON, or not a flow detail; the message names the flow detail or atom at fault.</exception>
    public static FlowDetail DeserializeFlowDetail(ReadOnlySpan<byte> utf8Json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        ModelCodec.Parse(utf8Json, maxDocumentBytes, "flow detail document", ModelCodec.ReadFlowDetail);

    /// <summary>Reads a task or retry detail.</summary>
    /// <exception cref="PersistenceException">The document is too large, not JSON, or not an atom detail; the message names the atom.</exception>
    public static AtomDetail DeserializeAtomDetail(ReadOnlySpan<byte> utf8Json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        ModelCodec.Parse(utf8Json, maxDocumentBytes, "atom document", ModelCodec.ReadAtom);

    /// <summary>Reads a failure with its causes.</summary>
    /// <exception cref="PersistenceException">The document is too large, not JSON, or not a failure.</exception>
    public static Failure DeserializeFailure(ReadOnlySpan<byte> utf8Json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        ModelCodec.Parse(utf8Json, maxDocumentBytes, "failure document", ModelCodec.ReadFailure);

    /// <summary>Reads a logbook from a JSON string.</summary>
    /// <exception cref="PersistenceException">The document is malformed.</exception>
    public static LogBook DeserializeLogBook(string json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        DeserializeLogBook(Utf8(json), maxDocumentBytes);

    /// <summary>Reads a flow detail from a JSON string.</summary>
    /// <exception cref="PersistenceException">The document is malformed.</exception>
    public static FlowDetail DeserializeFlowDetail(string json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        DeserializeFlowDetail(Utf8(json), maxDocumentBytes);

    /// <summary>Reads an atom detail from a JSON string.</summary>
    /// <exception cref="PersistenceException">The document is malformed.</exception>
    public static AtomDetail DeserializeAtomDetail(string json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        DeserializeAtomDetail(Utf8(json), maxDocumentBytes);

    /// <summary>Reads a failure from a JSON string.</summary>
    /// <exception cref="PersistenceException">The document is malformed.</exception>
    public static Failure DeserializeFailure(string json, int maxDocumentBytes = DefaultMaxDocumentBytes) =>
        DeserializeFailure(Utf8(json), maxDocumentBytes);

    private static byte[] Utf8(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        return Encoding.UTF8.GetBytes(json);
    }

    private static T Check<T>(T value) where T : class
    {
        ArgumentNullException.ThrowIfNull(value);
        return value;
    }
}

/// <summary>Base of the model's explicit System.Text.Json converters: the same contract as <see cref="PersistenceJson"/>.</summary>
internal abstract class ModelJsonConverter<T>(Action<Utf8JsonWriter, T> write, Func<JsonElement, ModelCodec.Reader, T> read, string subject)
    : JsonConverter<T>
{
    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var document = JsonDocument.ParseValue(ref reader);
        try
        {
            return read(document.RootElement, new ModelCodec.Reader(subject, null));
        }
        catch (PersistenceException ex)
        {
            throw new JsonException(ex.Message, ex);
        }
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => write(writer, value);
}

internal sealed class LogBookJsonConverter() : ModelJsonConverter<LogBook>(ModelCodec.WriteLogBook, ModelCodec.ReadLogBook, "logbook");

internal sealed class FlowDetailJsonConverter() : ModelJsonConverter<FlowDetail>(ModelCodec.WriteFlowDetail, ModelCodec.ReadFlowDetail, "flow detail");

internal sealed class AtomDetailJsonConverter() : ModelJsonConverter<AtomDetail>(ModelCodec.WriteAtom, ModelCodec.ReadAtom, "atom");

internal sealed class RetryAttemptJsonConverter() : ModelJsonConverter<RetryAttempt>(ModelCodec.WriteAttempt, ModelCodec.ReadAttempt, "retry attempt");

internal sealed class FailureJsonConverter() : ModelJsonConverter<Failure>(ModelCodec.WriteFailure, ModelCodec.ReadFailure, "failure");

internal sealed class TaskDetailJsonConverter() : ModelJsonConverter<TaskDetail>(ModelCodec.WriteAtom, ReadTask, "task detail")
{
    private static TaskDetail ReadTask(JsonElement e, ModelCodec.Reader r) =>
        ModelCodec.ReadAtom(e, r) is var atom && atom is TaskDetail task
            ? task
            : throw r.Named(ModelCodec.Subject(atom)).Malformed($"expected a task detail ('kind' = '{ModelCodec.TaskKind}'), found a {atom.Kind} detail");
}

internal sealed class RetryDetailJsonConverter() : ModelJsonConverter<RetryDetail>(ModelCodec.WriteAtom, ReadRetry, "retry detail")
{
    private static RetryDetail ReadRetry(JsonElement e, ModelCodec.Reader r) =>
        ModelCodec.ReadAtom(e, r) is var atom && atom is RetryDetail retry
            ? retry
            : throw r.Named(ModelCodec.Subject(atom)).Malformed($"expected a retry detail ('kind' = '{ModelCodec.RetryKind}'), found a {atom.Kind} detail");
}
