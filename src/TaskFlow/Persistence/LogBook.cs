using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TaskFlow.Persistence;

/// <summary>
/// A named collection of flow details (TaskFlow's <c>LogBook</c>), typically one per job or per owner.
/// Immutable: change it with <c>with</c> expressions and save the new value. Timestamps are kept in UTC
/// to whole microseconds, the precision every backend stores exactly.
/// </summary>
[JsonConverter(typeof(LogBookJsonConverter))]
public sealed record LogBook
{
    /// <summary>The logbook's unique id (never <see cref="Guid.Empty"/> once saved).</summary>
    public required Guid Id { get; init; }

    /// <summary>The logbook's name (need not be unique).</summary>
    public required string Name
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Name));
    }

    /// <summary>When the logbook was created (UTC, microsecond precision).</summary>
    public required DateTimeOffset CreatedAt
    {
        get;
        init => field = ModelValues.NormalizeTimestamp(value);
    }

    /// <summary>When the logbook was last changed (UTC, microsecond precision).</summary>
    public required DateTimeOffset UpdatedAt
    {
        get;
        init => field = ModelValues.NormalizeTimestamp(value);
    }

    /// <summary>Free-form metadata; a read-only copy of what was given.</summary>
    public IReadOnlyDictionary<string, JsonElement> Metadata
    {
        get;
        init => field = ModelValues.FreezeMetadata(value);
    } = ModelValues.EmptyMetadata;

    /// <summary>A new logbook with a fresh id, created now.</summary>
    /// <param name="name">The logbook's name.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when null.</param>
    public static LogBook Create(string name, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var now = (timeProvider ?? TimeProvider.System).GetUtcNow();
        return new LogBook { Id = Guid.CreateVersion7(now), Name = name, CreatedAt = now, UpdatedAt = now };
    }

    /// <inheritdoc />
    public bool Equals(LogBook? other) =>
        other is not null
        && Id == other.Id
        && Name == other.Name
        && CreatedAt == other.CreatedAt
        && UpdatedAt == other.UpdatedAt
        && ModelValues.MetadataEquals(Metadata, other.Metadata);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Id, Name);

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Id = {Id}, Name = {Name}, CreatedAt = {CreatedAt:O}, UpdatedAt = {UpdatedAt:O}, Metadata = {Metadata.Count} entries");
        return true;
    }
}
