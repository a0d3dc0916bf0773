namespace TaskFlow.Persistence;

/// <summary>Options of <see cref="DirectoryPersistenceBackend"/>.</summary>
public sealed class DirectoryPersistenceOptions
{
    /// <summary>The directory that holds the store; created when missing.</summary>
    public required string Path { get; init; }

    /// <summary>Files larger than this are refused when read, and documents larger than this are refused when written. Default 64 MiB.</summary>
    public int MaxDocumentBytes { get; init; } = PersistenceJson.DefaultMaxDocumentBytes;

    /// <summary>How long a writer waits for the directory's lock file held by another process or instance. Default 30 s.</summary>
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The clock for <c>UpdatedAt</c> stamps; <see cref="System.TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }
}
