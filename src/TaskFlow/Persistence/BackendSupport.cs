using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>An atom as stored, reduced to what the merge rules look at.</summary>
internal readonly record struct StoredAtomKey(Guid Id, string Name, string Kind);

/// <summary>An atom serialized and checked, ready to be written.</summary>
internal sealed record EncodedAtom(Guid Id, string Name, string Kind, AtomState State, byte[] Data)
{
    public string StateName => State.ToTaskFlowName();
}

/// <summary>Validation and rules shared by every backend, so they agree on what is accepted and what each error says.</summary>
internal static class BackendSupport
{
    public static Exception SchemaTooNew(string store, int found, int supported) =>
        new PersistenceException(
            $"The {store} has schema version {found}, but this version of TaskFlow supports schema versions up to {supported}. " +
            "It was written by a newer TaskFlow; upgrade the TaskFlow persistence packages to use it. Nothing was changed.");

    public static NotFoundException FlowNotFound(Guid flowDetailId) =>
        new($"Flow detail {flowDetailId} is not stored; save it with SaveFlowDetailAsync before saving its atoms or state.");

    public static NotFoundException LogBookNotFound(Guid logBookId, string purpose) =>
        new($"Logbook {logBookId} is not stored; save it with SaveLogBookAsync before {purpose}.");

    public static PersistenceException FlowInOtherLogBook(FlowDetail flow, Guid storedLogBookId) =>
        new($"Flow detail '{flow.Name}' ({flow.Id}) is stored in logbook {storedLogBookId}, not in logbook {flow.LogBookId}; a flow detail cannot move between logbooks.");

    public static void ValidateState(FlowState state)
    {
        if (!Enum.IsDefined(state))
            throw new ArgumentOutOfRangeException(nameof(state), state, "Not a defined flow state.");
    }

    public static byte[] EncodeLogBook(LogBook logBook, int maxDocumentBytes)
    {
        ArgumentNullException.ThrowIfNull(logBook);
        return ModelCodec.Serialize(logBook, ModelCodec.WriteLogBook, ModelCodec.Subject(logBook), maxDocumentBytes);
    }

    /// <summary>Checks the header and returns the serialized metadata.</summary>
    public static byte[] EncodeFlowHeaderMetadata(FlowDetail flow, int maxDocumentBytes)
    {
        ModelCodec.ValidateFlowHeader(flow);
        return ModelCodec.SerializeMetadata(flow.Metadata, $"the metadata of {ModelCodec.Subject(flow)}", maxDocumentBytes);
    }

    public static byte[] EncodeLogBookMetadata(LogBook book, int maxDocumentBytes)
    {
        EncodeLogBook(book, maxDocumentBytes);
        return ModelCodec.SerializeMetadata(book.Metadata, $"the metadata of {ModelCodec.Subject(book)}", maxDocumentBytes);
    }

    /// <summary>Serializes a batch, rejecting nulls, invalid atoms and duplicates within the batch.</summary>
    public static EncodedAtom[] EncodeAtoms(Guid flowDetailId, IReadOnlyList<AtomDetail> atoms, int maxDocumentBytes)
    {
        ArgumentNullException.ThrowIfNull(atoms);
        var encoded = new EncodedAtom[atoms.Count];
        var ids = new HashSet<Guid>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < atoms.Count; i++)
        {
            var atom = atoms[i] ?? throw new ArgumentException($"Atom #{i} of the batch for flow detail {flowDetailId} is null.", nameof(atoms));
            if (!ids.Add(atom.Id))
                throw new ArgumentException($"The batch for flow detail {flowDetailId} has the atom id {atom.Id} twice ('{atom.Name}'); send one version of each atom.", nameof(atoms));
            if (!names.Add(atom.Name))
                throw new ArgumentException($"The batch for flow detail {flowDetailId} has two atoms named '{atom.Name}'; atom names are unique within a flow detail.", nameof(atoms));
            var subject = $"{ModelCodec.Subject(atom)} of flow detail {flowDetailId}";
            var data = ModelCodec.Serialize(atom, ModelCodec.WriteAtom, subject, maxDocumentBytes);
            encoded[i] = new EncodedAtom(atom.Id, atom.Name, atom.Kind, atom.State, data);
        }
        return encoded;
    }

    /// <summary>
    /// Applies the merge rules: an atom keeps its id, name and kind for life. <paramref name="stored"/> holds the
    /// flow's stored atoms that share an id or a name with the batch (it may hold more).
    /// </summary>
    public static void CheckAgainstStored(Guid flowDetailId, IReadOnlyList<EncodedAtom> batch, IEnumerable<StoredAtomKey> stored)
    {
        var byId = new Dictionary<Guid, StoredAtomKey>();
        var byName = new Dictionary<string, StoredAtomKey>(StringComparer.Ordinal);
        foreach (var key in stored)
        {
            byId[key.Id] = key;
            byName[key.Name] = key;
        }
        foreach (var atom in batch)
        {
            if (byId.TryGetValue(atom.Id, out var sameId))
            {
                if (sameId.Name != atom.Name)
                    throw new PersistenceException(
                        $"Atom {atom.Id} of flow detail {flowDetailId} is stored as '{sameId.Name}' and cannot be renamed to '{atom.Name}'; atoms are matched by name on resumption, so give the new name a new atom id.");
                if (sameId.Kind != atom.Kind)
                    throw new PersistenceException(
                        $"Atom '{atom.Name}' ({atom.Id}) of flow detail {flowDetailId} is stored as a {sameId.Kind} and cannot be overwritten with a {atom.Kind} detail.");
            }
            else if (byName.TryGetValue(atom.Name, out var sameName))
            {
                throw new PersistenceException(
                    $"Flow detail {flowDetailId} already has an atom named '{atom.Name}' with id {sameName.Id}; the atom with id {atom.Id} cannot take that name. " +
                    "Save the existing atom detail (same id) instead of a new one.");
            }
        }
    }

    public static IReadOnlyDictionary<string, JsonElement> ReadMetadataColumn(string json, string subject, int maxDocumentBytes) =>
        ModelCodec.Parse(System.Text.Encoding.UTF8.GetBytes(json), maxDocumentBytes, subject, ModelCodec.ReadMetadata);

    /// <summary>Reads a stored atom document; errors name the atom and <paramref name="owner"/> (its flow detail and store).</summary>
    public static AtomDetail ReadAtomColumn(byte[] utf8, string atom, string owner, int maxDocumentBytes) =>
        ModelCodec.Parse(utf8, maxDocumentBytes, $"{atom} of {owner}", (e, r) => ModelCodec.ReadAtom(e, r, owner));

    /// <summary>
    /// Checks that an atom read from a row agrees with the row's columns: its key, and the kind and state every save
    /// writes beside the document (so a document edited to another state, which would otherwise load as a valid
    /// atom, is reported as damage).
    /// </summary>
    public static AtomDetail CheckRow(AtomDetail atom, Guid id, string name, string kind, string state, string subject)
    {
        if (atom.Id != id || atom.Name != name)
            throw new PersistenceException(
                $"Stored data for {subject} is malformed: its document describes atom '{atom.Name}' ({atom.Id}). The store was changed outside TaskFlow.");
        if (atom.Kind != kind || atom.State.ToTaskFlowName() != state)
            throw new PersistenceException(
                $"Stored data for {subject} is malformed: its row says {kind} {state}, its document {atom.Kind} {atom.State.ToTaskFlowName()}. The store was changed outside TaskFlow.");
        return atom;
    }

    public static int CompareCreated(DateTimeOffset a, Guid aId, DateTimeOffset b, Guid bId)
    {
        var c = a.CompareTo(b);
        return c != 0 ? c : string.CompareOrdinal(ModelCodec.FormatId(aId), ModelCodec.FormatId(bId));
    }

    public static void CheckMaxDocumentBytes(int value)
    {
        if (value <= 0)
            throw new ArgumentOutOfRangeException(nameof(value), value, "MaxDocumentBytes must be positive.");
    }
}

/// <summary>Runs a schema check once per backend instance, lazily, before the first operation.</summary>
internal sealed class SchemaGate(Func<CancellationToken, Task> ensure) : IDisposable
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private volatile bool _ready;

    public async ValueTask EnsureAsync(CancellationToken cancellationToken)
    {
        if (_ready) return;
        await RunAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await ensure(cancellationToken).ConfigureAwait(false);
            _ready = true;
        }
        finally
        {
            _lock.Release();
        }
    }

    public void Dispose() => _lock.Dispose();
}
