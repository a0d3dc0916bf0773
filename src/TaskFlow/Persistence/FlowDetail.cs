using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// The persisted state of one flow run (TaskFlow's <c>FlowDetail</c>): its state, metadata and one
/// <see cref="AtomDetail"/> per task or retry. Immutable; atom names and ids are unique within it.
/// </summary>
[JsonConverter(typeof(FlowDetailJsonConverter))]
public sealed record FlowDetail
{
    /// <summary>The flow detail's unique id (never <see cref="Guid.Empty"/> once saved).</summary>
    public required Guid Id { get; init; }

    /// <summary>The logbook this flow detail belongs to; it cannot move to another logbook once saved.</summary>
    public required Guid LogBookId { get; init; }

    /// <summary>The flow's name.</summary>
    public required string Name
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Name));
    }

    /// <summary>The flow's state.</summary>
    public FlowState State { get; init; } = FlowState.Pending;

    /// <summary>When the flow detail was created (UTC, microsecond precision).</summary>
    public required DateTimeOffset CreatedAt
    {
        get;
        init => field = ModelValues.NormalizeTimestamp(value);
    }

    /// <summary>When the flow detail was last changed (UTC, microsecond precision).</summary>
    public required DateTimeOffset UpdatedAt
    {
        get;
        init => field = ModelValues.NormalizeTimestamp(value);
    }

    /// <summary>Free-form metadata (TaskFlow keeps the flow factory and store here); a read-only copy.</summary>
    public IReadOnlyDictionary<string, JsonElement> Metadata
    {
        get;
        init => field = ModelValues.FreezeMetadata(value);
    } = ModelValues.EmptyMetadata;

    /// <summary>The atoms, in the order they were first saved. Names and ids are unique.</summary>
    /// <exception cref="ArgumentException">Two atoms share an id or a name, or an entry is null.</exception>
    public IReadOnlyList<AtomDetail> Atoms
    {
        get;
        init => field = FreezeAtoms(value);
    } = [];

    /// <summary>A new, empty flow detail with a fresh id in the given logbook, created now.</summary>
    /// <param name="logBookId">The owning logbook.</param>
    /// <param name="name">The flow's name.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when null.</param>
    public static FlowDetail Create(Guid logBookId, string name, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var now = (timeProvider ?? TimeProvider.System).GetUtcNow();
        return new FlowDetail { Id = Guid.CreateVersion7(now), LogBookId = logBookId, Name = name, CreatedAt = now, UpdatedAt = now };
    }

    /// <summary>The atom with the given name, or <see langword="null"/>.</summary>
    public AtomDetail? FindAtom(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var atom in Atoms)
            if (atom.Name == name) return atom;
        return null;
    }

    /// <summary>
    /// A copy with the atom replaced (matched by id) or, when no atom has its id, appended —
    /// the same merge a backend applies when the atom is saved.
    /// </summary>
    public FlowDetail WithAtom(AtomDetail atom)
    {
        ArgumentNullException.ThrowIfNull(atom);
        var atoms = new List<AtomDetail>(Atoms.Count + 1);
        var replaced = false;
        foreach (var existing in Atoms)
        {
            if (existing.Id == atom.Id) { atoms.Add(atom); replaced = true; }
            else atoms.Add(existing);
        }
        if (!replaced) atoms.Add(atom);
        return this with { Atoms = atoms };
    }

    private static IReadOnlyList<AtomDetail> FreezeAtoms(IReadOnlyList<AtomDetail> value)
    {
        var atoms = ModelValues.FreezeList(value, "Atom");
        if (atoms.Count > 1)
        {
            var ids = new HashSet<Guid>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var atom in atoms)
            {
                if (!ids.Add(atom.Id))
                    throw new ArgumentException($"Two atoms have the id {atom.Id} (one is '{atom.Name}'); atom ids must be unique within a flow detail.", nameof(Atoms));
                if (!names.Add(atom.Name))
                    throw new ArgumentException($"Two atoms are named '{atom.Name}'; atom names must be unique within a flow detail.", nameof(Atoms));
            }
        }
        return atoms;
    }

    /// <inheritdoc />
    public bool Equals(FlowDetail? other) =>
        other is not null
        && Id == other.Id
        && LogBookId == other.LogBookId
        && Name == other.Name
        && State == other.State
        && CreatedAt == other.CreatedAt
        && UpdatedAt == other.UpdatedAt
        && ModelValues.MetadataEquals(Metadata, other.Metadata)
        && Atoms.SequenceEqual(other.Atoms);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Id, Name, State);

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Id = {Id}, LogBookId = {LogBookId}, Name = {Name}, State = {State.ToTaskFlowName()}, Atoms = {Atoms.Count}");
        return true;
    }
}
