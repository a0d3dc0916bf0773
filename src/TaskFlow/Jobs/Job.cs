using System.Text.Json;
using System.Text.Json.Serialization;
using TaskFlow.Persistence;

namespace TaskFlow.Jobs;

/// <summary>
/// A job on a board, as read at one moment: what to run (a flow factory by name with its arguments, an initial store,
/// the logbook and flow detail the run is persisted under) and where the job stood (state, owner). Immutable; ask the
/// board again for fresh state. Its JSON form uses the property names shown, with no type information in the data.
/// </summary>
public sealed record Job
{
    /// <summary>The job's id, unique on its board.</summary>
    [JsonPropertyName("id")]
    public required Guid Id { get; init; }

    /// <summary>A name for people (logs, listings); not necessarily unique.</summary>
    [JsonPropertyName("name")]
    public required string Name
    {
        get;
        init => field = JobPosting.RequireText(value, nameof(Name));
    }

    /// <summary>The name under which the conductor's flow factory registry knows how to build the flow.</summary>
    [JsonPropertyName("flow_factory")]
    public required string FlowFactory
    {
        get;
        init => field = JobPosting.RequireText(value, nameof(FlowFactory));
    }

    /// <summary>The arguments given to the flow factory (any JSON value), or null for none.</summary>
    [JsonPropertyName("factory_arguments")]
    public JsonElement? FactoryArguments
    {
        get;
        init => field = ModelValues.Detach(value, nameof(FactoryArguments));
    }

    /// <summary>Initial store values of the run (TaskFlow's <c>details['store']</c>); a read-only copy.</summary>
    [JsonPropertyName("store")]
    public IReadOnlyDictionary<string, JsonElement> Store
    {
        get;
        init => field = ModelValues.FreezeMetadata(value);
    } = ModelValues.EmptyMetadata;

    /// <summary>The logbook the run's flow detail lives in.</summary>
    [JsonPropertyName("logbook_id")]
    public required Guid LogBookId { get; init; }

    /// <summary>The flow detail the run is persisted under, so whoever claims the job later resumes the same run.</summary>
    [JsonPropertyName("flow_detail_id")]
    public required Guid FlowDetailId { get; init; }

    /// <summary>Higher priorities are handed out first.</summary>
    [JsonPropertyName("priority")]
    public JobPriority Priority { get; init; } = JobPriority.Normal;

    /// <summary>When the job was posted (UTC, microsecond precision).</summary>
    [JsonPropertyName("created_at")]
    public required DateTimeOffset CreatedAt
    {
        get;
        init => field = ModelValues.NormalizeTimestamp(value);
    }

    /// <summary>The state when this snapshot was read.</summary>
    [JsonPropertyName("state")]
    [JsonConverter(typeof(JsonStringEnumConverter<JobState>))]
    public JobState State { get; init; } = JobState.Unclaimed;

    /// <summary>Who held the claim when this snapshot was read (for a complete or trashed job: who finished it); null when unclaimed.</summary>
    [JsonPropertyName("owner")]
    public string? Owner { get; init; }

    /// <summary>How many times the job has been claimed; more than one means earlier owners abandoned it or lost their claim.</summary>
    [JsonPropertyName("claim_count")]
    public int ClaimCount { get; init; }

    /// <inheritdoc />
    public bool Equals(Job? other) =>
        other is not null && Id == other.Id && Name == other.Name && FlowFactory == other.FlowFactory &&
        ModelValues.JsonEquals(FactoryArguments, other.FactoryArguments) && ModelValues.MetadataEquals(Store, other.Store) &&
        LogBookId == other.LogBookId && FlowDetailId == other.FlowDetailId && Priority == other.Priority &&
        CreatedAt == other.CreatedAt && State == other.State && Owner == other.Owner && ClaimCount == other.ClaimCount;

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Id, State, Owner);

    /// <summary>Id, name and state only: store values and arguments may be confidential and stay out of logs.</summary>
    public override string ToString() =>
        Owner is null ? $"Job '{Name}' ({Id}) {State}" : $"Job '{Name}' ({Id}) {State} by '{Owner}'";

    /// <summary>The job as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads a job written by <see cref="ToJson"/>.</summary>
    /// <exception cref="ArgumentException">The text is not a job document; the message says which field is at fault.</exception>
    public static Job FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return JsonSerializer.Deserialize<Job>(json, JsonOptions)
                ?? throw new ArgumentException("The job document is the JSON null, not a job object.", nameof(json));
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"The job document is invalid at {ex.Path ?? "$"}: {ex.Message}", nameof(json), ex);
        }
    }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.General)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
        Converters = { new JsonStringEnumConverter<JobPriority>() },
    };
}

/// <summary>What to post on a board; the board turns it into a <see cref="Job"/>.</summary>
public sealed record JobPosting
{
    /// <summary>A name for people; not necessarily unique.</summary>
    public required string Name
    {
        get;
        init => field = RequireText(value, nameof(Name));
    }

    /// <summary>The flow factory's registered name.</summary>
    public required string FlowFactory
    {
        get;
        init => field = RequireText(value, nameof(FlowFactory));
    }

    /// <summary>Arguments for the flow factory (any JSON value), or null.</summary>
    public JsonElement? FactoryArguments
    {
        get;
        init => field = ModelValues.Detach(value, nameof(FactoryArguments));
    }

    /// <summary>Initial store values of the run.</summary>
    public IReadOnlyDictionary<string, JsonElement> Store
    {
        get;
        init => field = ModelValues.FreezeMetadata(value);
    } = ModelValues.EmptyMetadata;

    /// <summary>The logbook for the run's flow detail; null lets the board pick a fresh id.</summary>
    public Guid? LogBookId { get; init; }

    /// <summary>The run's flow detail; null lets the board pick a fresh id (the engine creates the detail on first run).</summary>
    public Guid? FlowDetailId { get; init; }

    /// <summary>Higher priorities are handed out first. Default <see cref="JobPriority.Normal"/>.</summary>
    public JobPriority Priority { get; init; } = JobPriority.Normal;

    /// <summary>
    /// A posting whose factory arguments and store values are serialized from plain .NET values with System.Text.Json.
    /// </summary>
    public static JobPosting Create(string name, string flowFactory, object? factoryArguments = null, IReadOnlyDictionary<string, object?>? store = null) =>
        new()
        {
            Name = name,
            FlowFactory = flowFactory,
            FactoryArguments = factoryArguments is null ? null : JsonSerializer.SerializeToElement(factoryArguments),
            Store = store is null
                ? ModelValues.EmptyMetadata
                : store.ToDictionary(p => p.Key, p => JsonSerializer.SerializeToElement(p.Value), StringComparer.Ordinal),
        };

    /// <summary>The job this posting becomes, unclaimed, with the given id and time.</summary>
    public Job ToJob(Guid id, DateTimeOffset createdAt)
    {
        if (Priority is < JobPriority.VeryLow or > JobPriority.VeryHigh || !Enum.IsDefined(Priority))
            throw new ArgumentOutOfRangeException(nameof(Priority), Priority, $"Job '{Name}' has priority {(int)Priority}; use a JobPriority value.");
        foreach (var key in Store.Keys)
            if (string.IsNullOrEmpty(key)) throw new ArgumentException($"Job '{Name}' has a store entry with an empty name.", nameof(Store));
        return new Job
        {
            Id = id,
            Name = Name,
            FlowFactory = FlowFactory,
            FactoryArguments = FactoryArguments,
            Store = Store,
            LogBookId = LogBookId ?? Guid.CreateVersion7(createdAt),
            FlowDetailId = FlowDetailId ?? Guid.CreateVersion7(createdAt),
            Priority = Priority,
            CreatedAt = createdAt,
        };
    }

    internal static string RequireText(string value, string what)
    {
        ArgumentNullException.ThrowIfNull(value, what);
        if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"A job's {what} must not be empty.", what);
        if (value.Contains('\0')) throw new ArgumentException($"A job's {what} must not contain NUL characters.", what);
        return value;
    }
}
