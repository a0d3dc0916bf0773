using System.Buffers;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// The JSON contract of the persistence model, written and read by hand so the format is explicit and stable:
/// no type names from data, states as TaskFlow names, absent values omitted, JSON null kept as a value.
/// Writers validate (bad input → <see cref="ArgumentException"/> naming the object, before anything is stored);
/// readers are strict (malformed data → <see cref="PersistenceException"/> naming the object and where it came from).
/// </summary>
internal static class ModelCodec
{
    public const int MaxJsonDepth = 256;
    public const int MaxFailureDepth = 32;
    public const string TaskKind = "task";
    public const string RetryKind = "retry";
    private const string TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'";

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        MaxDepth = MaxJsonDepth,
    };

    private static readonly JsonReaderOptions ReaderOptions = new()
    {
        MaxDepth = MaxJsonDepth,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
    };

    // ------------------------------------------------------------------ subjects

    public static string Subject(LogBook book) => ModelValues.Describe("logbook", book.Name, book.Id);
    public static string Subject(FlowDetail flow) => ModelValues.Describe("flow detail", flow.Name, flow.Id);
    public static string Subject(AtomDetail atom) => ModelValues.Describe("atom", atom.Name, atom.Id);

    public static string FormatTimestamp(DateTimeOffset value) =>
        ModelValues.NormalizeTimestamp(value).UtcDateTime.ToString(TimestampFormat, CultureInfo.InvariantCulture);

    public static string FormatId(Guid id) => id.ToString("D");

    // ------------------------------------------------------------------ writing (validating)

    public static byte[] Serialize<T>(T value, Action<Utf8JsonWriter, T> write, string subject, int maxDocumentBytes)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        try
        {
            using var writer = new Utf8JsonWriter(buffer, WriterOptions);
            write(writer, value);
        }
        catch (ArgumentException ex) when (ex is not ArgumentNullException)
        {
            throw new ArgumentException($"Cannot store {subject}: {ex.Message}", ex);
        }
        catch (InvalidOperationException ex)
        {
            throw new ArgumentException($"Cannot store {subject}: {ex.Message}", ex);
        }
        if (buffer.WrittenCount > maxDocumentBytes)
            throw new ArgumentException(
                $"Cannot store {subject}: it serializes to {buffer.WrittenCount} bytes, more than the limit of {maxDocumentBytes} bytes " +
                "(MaxDocumentBytes). Store large payloads elsewhere and keep a reference in the result, or raise the limit.");
        return buffer.WrittenSpan.ToArray();
    }

    public static string SerializeToString<T>(T value, Action<Utf8JsonWriter, T> write, string subject, int maxDocumentBytes) =>
        System.Text.Encoding.UTF8.GetString(Serialize(value, write, subject, maxDocumentBytes));

    public static void WriteLogBook(Utf8JsonWriter w, LogBook book)
    {
        ArgumentNullException.ThrowIfNull(book);
        ValidateIdentity("logbook", book.Id, book.Name);
        w.WriteStartObject();
        w.WriteString("id", FormatId(book.Id));
        w.WriteString("name", book.Name);
        w.WriteString("created_at", FormatTimestamp(book.CreatedAt));
        w.WriteString("updated_at", FormatTimestamp(book.UpdatedAt));
        w.WritePropertyName("meta");
        WriteMetadata(w, book.Metadata);
        w.WriteEndObject();
    }

    public static void WriteFlowDetail(Utf8JsonWriter w, FlowDetail flow) => WriteFlowDetail(w, flow, includeAtoms: true);

    public static void WriteFlowHeader(Utf8JsonWriter w, FlowDetail flow) => WriteFlowDetail(w, flow, includeAtoms: false);

    private static void WriteFlowDetail(Utf8JsonWriter w, FlowDetail flow, bool includeAtoms)
    {
        ValidateFlowHeader(flow);
        w.WriteStartObject();
        w.WriteString("id", FormatId(flow.Id));
        w.WriteString("logbook_id", FormatId(flow.LogBookId));
        w.WriteString("name", flow.Name);
        w.WriteString("state", flow.State.ToTaskFlowName());
        w.WriteString("created_at", FormatTimestamp(flow.CreatedAt));
        w.WriteString("updated_at", FormatTimestamp(flow.UpdatedAt));
        w.WritePropertyName("meta");
        WriteMetadata(w, flow.Metadata);
        if (includeAtoms)
        {
            w.WriteStartArray("atoms");
            foreach (var atom in flow.Atoms)
                WriteAtom(w, atom);
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    public static void ValidateFlowHeader(FlowDetail flow)
    {
        ArgumentNullException.ThrowIfNull(flow);
        ValidateIdentity("flow detail", flow.Id, flow.Name);
        if (flow.LogBookId == Guid.Empty)
            throw new ArgumentException($"Flow detail '{flow.Name}' ({flow.Id}) has an empty LogBookId; set it to the id of a saved logbook.");
        if (!Enum.IsDefined(flow.State))
            throw new ArgumentException($"Flow detail '{flow.Name}' ({flow.Id}) has the undefined state {(int)flow.State}.");
    }

    public static void WriteAtom(Utf8JsonWriter w, AtomDetail atom)
    {
        ArgumentNullException.ThrowIfNull(atom);
        ValidateIdentity("atom", atom.Id, atom.Name);
        if (!Enum.IsDefined(atom.State))
            throw new ArgumentException($"Atom '{atom.Name}' ({atom.Id}) has the undefined state {(int)atom.State}.");
        if (!Enum.IsDefined(atom.Intention))
            throw new ArgumentException($"Atom '{atom.Name}' ({atom.Id}) has the undefined intention {(int)atom.Intention}.");
        if (string.IsNullOrEmpty(atom.Version))
            throw new ArgumentException($"Atom '{atom.Name}' ({atom.Id}) has an empty version; use \"{AtomDetail.DefaultVersion}\".");

        w.WriteStartObject();
        w.WriteString("kind", atom.Kind);
        w.WriteString("id", FormatId(atom.Id));
        w.WriteString("name", atom.Name);
        w.WriteString("state", atom.State.ToTaskFlowName());
        w.WriteString("intention", atom.Intention.ToTaskFlowName());
        ValidateText(atom.Version, $"The version of atom '{atom.Name}' ({atom.Id})");
        w.WriteString("version", atom.Version);
        w.WritePropertyName("meta");
        WriteMetadata(w, atom.Metadata);
        switch (atom)
        {
            case TaskDetail task:
                WriteOptionalElement(w, "result", task.Result);
                WriteOptionalFailure(w, "failure", task.Failure);
                WriteOptionalElement(w, "revert_result", task.RevertResult);
                WriteOptionalFailure(w, "revert_failure", task.RevertFailure);
                break;
            case RetryDetail retry:
                w.WriteStartArray("history");
                foreach (var attempt in retry.History)
                    WriteAttempt(w, attempt);
                w.WriteEndArray();
                WriteOptionalFailure(w, "failure", retry.Failure);
                WriteOptionalFailure(w, "revert_failure", retry.RevertFailure);
                break;
            default:
                throw new ArgumentException($"Unknown atom detail type {atom.GetType()}.");
        }
        w.WriteEndObject();
    }

    public static void WriteAttempt(Utf8JsonWriter w, RetryAttempt attempt)
    {
        ArgumentNullException.ThrowIfNull(attempt);
        w.WriteStartObject();
        WriteOptionalElement(w, "value", attempt.Value);
        w.WriteStartObject("failures");
        foreach (var (name, failure) in attempt.Failures)
        {
            ValidateText(name, "An atom name in a retry attempt's failures");
            w.WritePropertyName(name);
            WriteFailure(w, failure);
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public static void WriteFailure(Utf8JsonWriter w, Failure failure) => WriteFailure(w, failure, 1);

    private static void WriteFailure(Utf8JsonWriter w, Failure failure, int depth)
    {
        if (depth > MaxFailureDepth)
            throw new ArgumentException($"A failure's chain of causes is deeper than {MaxFailureDepth}; shorten the chain of inner exceptions.");
        w.WriteStartObject();
        w.WriteStartArray("types");
        foreach (var type in failure.ExceptionTypeNames)
        {
            ValidateText(type ?? throw new ArgumentException("A failure has a null exception type name."), "An exception type name");
            w.WriteStringValue(type);
        }
        w.WriteEndArray();
        w.WriteString("message", failure.Message);
        if (failure.StackTrace is not null)
            w.WriteString("stack", failure.StackTrace);
        if (failure.Cause is not null)
        {
            w.WritePropertyName("cause");
            WriteFailure(w, failure.Cause, depth + 1);
        }
        w.WriteEndObject();
    }

    public static void WriteMetadata(Utf8JsonWriter w, IReadOnlyDictionary<string, JsonElement> metadata)
    {
        w.WriteStartObject();
        foreach (var (key, value) in metadata)
        {
            ValidateText(key, "A metadata key");
            w.WritePropertyName(key);
            value.WriteTo(w);
        }
        w.WriteEndObject();
    }

    public static byte[] SerializeMetadata(IReadOnlyDictionary<string, JsonElement> metadata, string subject, int maxDocumentBytes) =>
        Serialize(metadata, WriteMetadata, subject, maxDocumentBytes);

    private static void WriteOptionalElement(Utf8JsonWriter w, string name, JsonElement? value)
    {
        if (value is not { } element) return;
        w.WritePropertyName(name);
        element.WriteTo(w);
    }

    private static void WriteOptionalFailure(Utf8JsonWriter w, string name, Failure? failure)
    {
        if (failure is null) return;
        w.WritePropertyName(name);
        WriteFailure(w, failure);
    }

    /// <summary>
    /// Identifiers (names, keys, versions, type names) must be valid UTF-16: the JSON writer would silently turn a lone
    /// surrogate into U+FFFD and the value read back would differ. (Failure messages and stacks are free text; there the
    /// replacement is accepted.)
    /// </summary>
    public static void ValidateText(string value, string what)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1])) { i++; continue; }
            if (char.IsSurrogate(c))
                throw new ArgumentException($"{what} contains an unpaired UTF-16 surrogate at index {i}; it cannot be stored exactly.");
        }
    }

    private static void ValidateIdentity(string kind, Guid id, string name)
    {
        ValidateText(name, $"The name of {kind} {id}");
        if (id == Guid.Empty)
            throw new ArgumentException($"The {kind} '{name}' has an empty id; give it a fresh Guid (or use its Create method).");
        if (string.IsNullOrEmpty(name))
            throw new ArgumentException($"The {kind} {id} has an empty name; every {kind} needs a name.");
    }

    // ------------------------------------------------------------------ reading (strict)

    /// <summary>Parses a document and maps it; every failure becomes a <see cref="PersistenceException"/> naming <paramref name="subject"/>.</summary>
    public static T Parse<T>(ReadOnlySpan<byte> utf8, int maxDocumentBytes, string subject, Func<JsonElement, Reader, T> read, string? location = null)
    {
        var where = location is null ? subject : $"{subject} in {location}";
        if (utf8.Length > maxDocumentBytes)
            throw new PersistenceException(
                $"Stored data for {where} is {utf8.Length} bytes, more than the limit of {maxDocumentBytes} bytes (MaxDocumentBytes). " +
                "If the document is legitimate, raise the limit in the backend's options.");
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(utf8, ReaderOptions);
            document = JsonDocument.ParseValue(ref reader);
            if (reader.Read())
                throw new PersistenceException($"Stored data for {where} is not valid JSON: unexpected content after the end of the document.");
        }
        catch (JsonException ex)
        {
            throw new PersistenceException($"Stored data for {where} is not valid JSON (it may be truncated or hand-edited): {ex.Message}", ex);
        }
        using (document)
            return read(document.RootElement, new Reader(subject, location));
    }

    public static LogBook ReadLogBook(JsonElement e, Reader r)
    {
        r.RequireObject(e);
        var id = r.Guid(e, "id");
        var name = r.String(e, "name");
        r = r.Named(ModelValues.Describe("logbook", name, id));
        return r.Build(() => new LogBook
        {
            Id = id,
            Name = name,
            CreatedAt = r.Timestamp(e, "created_at"),
            UpdatedAt = r.Timestamp(e, "updated_at"),
            Metadata = r.Metadata(e, "meta"),
        });
    }

    public static FlowDetail ReadFlowDetail(JsonElement e, Reader r)
    {
        r.RequireObject(e);
        var id = r.Guid(e, "id");
        var name = r.String(e, "name");
        var flowSubject = ModelValues.Describe("flow detail", name, id);
        r = r.Named(flowSubject);
        var atomsElement = r.Required(e, "atoms", JsonValueKind.Array);
        var atoms = new List<AtomDetail>(atomsElement.GetArrayLength());
        var index = 0;
        foreach (var atomElement in atomsElement.EnumerateArray())
        {
            atoms.Add(ReadAtom(atomElement, r.Named($"atom #{index} of {flowSubject}"), flowSubject));
            index++;
        }
        return r.Build(() => new FlowDetail
        {
            Id = id,
            LogBookId = r.Guid(e, "logbook_id"),
            Name = name,
            State = r.FlowState(e, "state"),
            CreatedAt = r.Timestamp(e, "created_at"),
            UpdatedAt = r.Timestamp(e, "updated_at"),
            Metadata = r.Metadata(e, "meta"),
            Atoms = atoms,
        });
    }

    public static AtomDetail ReadAtom(JsonElement e, Reader r) => ReadAtom(e, r, null);

    /// <summary>Reads an atom; <paramref name="owner"/> (e.g. "flow detail 'f' (id) in …") is named in every error.</summary>
    public static AtomDetail ReadAtom(JsonElement e, Reader r, string? owner)
    {
        r.RequireObject(e);
        var id = r.Guid(e, "id");
        var name = r.String(e, "name");
        r = r.Named(ModelValues.Describe("atom", name, id) + (owner is null ? "" : $" of {owner}"));
        var kind = r.String(e, "kind");
        var state = r.AtomState(e, "state");
        var intention = r.Intention(e, "intention");
        var version = r.String(e, "version");
        var meta = r.Metadata(e, "meta");
        // An atom's optional properties (its result, failures, history) must not vanish because a key was renamed or
        // added by hand: unknown keys are damage, not something to skip.
        r.OnlyKnown(e, kind == RetryKind ? RetryProperties : TaskProperties);
        return kind switch
        {
            TaskKind => r.Build(() => new TaskDetail
            {
                Id = id,
                Name = name,
                State = state,
                Intention = intention,
                Version = version,
                Metadata = meta,
                Result = r.OptionalElement(e, "result"),
                Failure = r.OptionalFailure(e, "failure"),
                RevertResult = r.OptionalElement(e, "revert_result"),
                RevertFailure = r.OptionalFailure(e, "revert_failure"),
            }),
            RetryKind => r.Build(() => new RetryDetail
            {
                Id = id,
                Name = name,
                State = state,
                Intention = intention,
                Version = version,
                Metadata = meta,
                History = r.History(e, "history"),
                Failure = r.OptionalFailure(e, "failure"),
                RevertFailure = r.OptionalFailure(e, "revert_failure"),
            }),
            _ => throw r.Malformed($"property 'kind' is '{kind}', expected '{TaskKind}' or '{RetryKind}'"),
        };
    }

    public static Failure ReadFailure(JsonElement e, Reader r) => r.Failure(e, "failure", 1);

    public static RetryAttempt ReadAttempt(JsonElement e, Reader r) => r.Attempt(e, "retry attempt");

    public static IReadOnlyDictionary<string, JsonElement> ReadMetadata(JsonElement e, Reader r) => r.MetadataValue(e, "meta");

    private static readonly string[] TaskProperties = ["kind", "id", "name", "state", "intention", "version", "meta", "result", "failure", "revert_result", "revert_failure"];
    private static readonly string[] RetryProperties = ["kind", "id", "name", "state", "intention", "version", "meta", "history", "failure", "revert_failure"];
    private static readonly string[] FailureProperties = ["types", "message", "stack", "cause"];
    private static readonly string[] AttemptProperties = ["value", "failures"];

    /// <summary>Strict accessors that throw <see cref="PersistenceException"/> naming the object being read.</summary>
    internal readonly struct Reader(string subject, string? location)
    {
        /// <summary>Refuses a property that is not one of <paramref name="known"/>.</summary>
        public void OnlyKnown(JsonElement obj, string[] known, string? path = null)
        {
            foreach (var property in obj.EnumerateObject())
                if (Array.IndexOf(known, property.Name) < 0)
                    throw Malformed($"{(path is null ? "" : $"'{path}' has ")}an unknown property '{property.Name}' (expected only {string.Join(", ", known)})");
        }

        public string Subject => subject;

        public Reader Named(string newSubject) => new(newSubject, location);

        public PersistenceException Malformed(string detail, Exception? inner = null) =>
            new($"Stored data for {subject}{(location is null ? "" : $" in {location}")} is malformed: {detail}. " +
                "The store was changed outside TaskFlow or damaged; restore it from a backup or delete the object.", inner);

        public T Build<T>(Func<T> build)
        {
            try { return build(); }
            catch (ArgumentException ex) { throw Malformed(ex.Message, ex); }
        }

        public void RequireObject(JsonElement e)
        {
            if (e.ValueKind != JsonValueKind.Object)
                throw Malformed($"expected a JSON object, found {e.ValueKind}");
        }

        public JsonElement Required(JsonElement obj, string name, JsonValueKind kind)
        {
            if (!obj.TryGetProperty(name, out var value))
                throw Malformed($"property '{name}' is missing");
            if (value.ValueKind != kind && !(kind == JsonValueKind.True && value.ValueKind == JsonValueKind.False))
                throw Malformed($"property '{name}' is {value.ValueKind}, expected {kind}");
            return value;
        }

        public string String(JsonElement obj, string name) => Required(obj, name, JsonValueKind.String).GetString()!;

        public Guid Guid(JsonElement obj, string name)
        {
            var text = String(obj, name);
            if (!System.Guid.TryParseExact(text, "D", out var id) || id == System.Guid.Empty)
                throw Malformed($"property '{name}' is '{text}', expected a non-empty GUID");
            return id;
        }

        public DateTimeOffset Timestamp(JsonElement obj, string name)
        {
            var value = Required(obj, name, JsonValueKind.String);
            if (!value.TryGetDateTimeOffset(out var timestamp))
                throw Malformed($"property '{name}' is '{value.GetString()}', expected an ISO 8601 timestamp");
            return timestamp;
        }

        public FlowState FlowState(JsonElement obj, string name) => Parse(obj, name, StateNames.ParseFlowState);

        public AtomState AtomState(JsonElement obj, string name) => Parse(obj, name, StateNames.ParseAtomState);

        public AtomIntention Intention(JsonElement obj, string name) => Parse(obj, name, StateNames.ParseIntention);

        private T Parse<T>(JsonElement obj, string name, Func<string, T> parse)
        {
            var text = String(obj, name);
            try { return parse(text); }
            catch (FormatException ex) { throw Malformed($"property '{name}': {ex.Message}", ex); }
        }

        public IReadOnlyDictionary<string, JsonElement> Metadata(JsonElement obj, string name) =>
            MetadataValue(Required(obj, name, JsonValueKind.Object), name);

        public IReadOnlyDictionary<string, JsonElement> MetadataValue(JsonElement value, string name)
        {
            if (value.ValueKind != JsonValueKind.Object)
                throw Malformed($"'{name}' is {value.ValueKind}, expected an object");
            var map = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var property in value.EnumerateObject())
                if (!map.TryAdd(property.Name, property.Value.Clone()))
                    throw Malformed($"'{name}' has the key '{property.Name}' twice");
            return new FrozenMap<JsonElement>(map);
        }

        public JsonElement? OptionalElement(JsonElement obj, string name) =>
            obj.TryGetProperty(name, out var value) ? value.Clone() : null;

        public Failure? OptionalFailure(JsonElement obj, string name) =>
            obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? Failure(value, name, 1) : null;

        public Failure Failure(JsonElement e, string path, int depth)
        {
            if (depth > MaxFailureDepth)
                throw Malformed($"'{path}' nests causes deeper than {MaxFailureDepth}");
            if (e.ValueKind != JsonValueKind.Object)
                throw Malformed($"'{path}' is {e.ValueKind}, expected a failure object");
            OnlyKnown(e, FailureProperties, path);
            var typesElement = e.TryGetProperty("types", out var t) ? t : throw Malformed($"'{path}.types' is missing");
            if (typesElement.ValueKind != JsonValueKind.Array || typesElement.GetArrayLength() == 0)
                throw Malformed($"'{path}.types' must be a non-empty array of type names");
            var types = new List<string>(typesElement.GetArrayLength());
            foreach (var type in typesElement.EnumerateArray())
                types.Add(type.ValueKind == JsonValueKind.String ? type.GetString()! : throw Malformed($"'{path}.types' holds a {type.ValueKind}, expected strings"));
            var message = e.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String
                ? m.GetString()!
                : throw Malformed($"'{path}.message' is missing or not a string");
            string? stack = null;
            if (e.TryGetProperty("stack", out var s) && s.ValueKind != JsonValueKind.Null)
                stack = s.ValueKind == JsonValueKind.String ? s.GetString() : throw Malformed($"'{path}.stack' is {s.ValueKind}, expected a string");
            Failure? cause = null;
            if (e.TryGetProperty("cause", out var c) && c.ValueKind != JsonValueKind.Null)
                cause = Failure(c, path + ".cause", depth + 1);
            return new Failure(types, message, stack, cause);
        }

        public IReadOnlyList<RetryAttempt> History(JsonElement obj, string name)
        {
            var array = Required(obj, name, JsonValueKind.Array);
            var history = new List<RetryAttempt>(array.GetArrayLength());
            var index = 0;
            foreach (var item in array.EnumerateArray())
                history.Add(Attempt(item, $"{name}[{index++}]"));
            return history;
        }

        public RetryAttempt Attempt(JsonElement item, string path)
        {
            if (item.ValueKind != JsonValueKind.Object)
                throw Malformed($"'{path}' is {item.ValueKind}, expected an object");
            OnlyKnown(item, AttemptProperties, path);
            var failuresElement = item.TryGetProperty("failures", out var f) && f.ValueKind == JsonValueKind.Object
                ? f
                : throw Malformed($"'{path}.failures' is missing or not an object");
            var failures = new Dictionary<string, Failure>(StringComparer.Ordinal);
            foreach (var property in failuresElement.EnumerateObject())
                if (!failures.TryAdd(property.Name, Failure(property.Value, $"{path}.failures.{property.Name}", 1)))
                    throw Malformed($"'{path}.failures' has the atom '{property.Name}' twice");
            return new RetryAttempt(OptionalElement(item, "value"), failures);
        }
    }
}
