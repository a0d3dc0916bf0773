namespace TaskFlow.Persistence;

/// <summary>Options of <see cref="DirectoryPersistenceBackend"/>.</summary>
public sealed class DirectoryPersistenceOptions
{
    /// <summary>The directory that holds the store; created when missing (unless <see cref="ReadOnly"/>).</summary>
    public required string Path { get; init; }

    /// <summary>Files larger than this are refused when read, and documents larger than this are refused when written. Default 64 MiB.</summary>
    public int MaxDocumentBytes { get; init; } = PersistenceJson.DefaultMaxDocumentBytes;

    /// <summary>How long a writer waits for the directory's lock file held by another process or instance. Default 30 s.</summary>
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Opens the store for reading only: the directory must already be a TaskFlow store (it has <c>schema.json</c>) of a
    /// version this code reads; nothing in it is created, cleaned up or written (not even the lock file), and every save
    /// throws <see cref="PersistenceException"/>. For tools that inspect a store, such as <c>taskflow books</c>.
    /// </summary>
    public bool ReadOnly { get; init; }

    /// <summary>The clock for <c>UpdatedAt</c> stamps; <see cref="System.TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }
}
