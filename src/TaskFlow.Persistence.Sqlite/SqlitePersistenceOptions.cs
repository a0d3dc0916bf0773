using Microsoft.Data.Sqlite;
using TaskFlow.Persistence;

namespace TaskFlow.Persistence.Sqlite;

/// <summary>How hard SQLite works to keep committed transactions across power loss (it always survives a process crash in WAL mode).</summary>
public enum SqliteDurability
{
    /// <summary>
    /// <c>PRAGMA synchronous=FULL</c>: the WAL is fsynced at every commit, so a committed save survives power loss
    /// and operating-system crashes. The default: use it for data you cannot recompute.
    /// </summary>
    FsyncEveryCommit,

    /// <summary>
    /// <c>PRAGMA synchronous=NORMAL</c>: the WAL is fsynced at checkpoints only. Commits are much faster and survive a
    /// crash of the process, but the last commits may be lost (never corrupted) on power loss or an OS crash.
    /// </summary>
    WalNoFsync,
}

/// <summary>Options of <see cref="SqlitePersistenceBackend"/>.</summary>
public sealed class SqlitePersistenceOptions
{
    /// <summary>A Microsoft.Data.Sqlite connection string, e.g. <c>Data Source=taskflow.db</c>. In-memory databases are refused.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>Durability of commits. Default <see cref="SqliteDurability.FsyncEveryCommit"/>.</summary>
    public SqliteDurability Durability { get; init; } = SqliteDurability.FsyncEveryCommit;

    /// <summary>
    /// How long an operation waits for another connection's write lock before failing. Default 30 s. Waits are rounded up
    /// to whole seconds by the provider, so <see cref="TimeSpan.Zero"/> fails after about a second.
    /// </summary>
    public TimeSpan BusyTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// After how many pages in the write-ahead log a commit copies them back into the database file (SQLite's
    /// <c>wal_autocheckpoint</c>; a page is 4 KiB by default). Default 10,000 (about 40 MiB of log), ten times SQLite's
    /// own default: an engine saves the same few pages over and over (the flow's row, its running atoms), and a checkpoint
    /// copies each page once however often it was saved, so rarer checkpoints copy far less — and with
    /// <see cref="SqliteDurability.WalNoFsync"/> the checkpoint is where the file is synced. A 1,000-task serial run spent
    /// about 30 % of its saving time in checkpoints at 1,000 pages. Lower it to bound the log's size on disk; 0 turns
    /// automatic checkpoints off (the log then grows until a checkpoint is run some other way).
    /// </summary>
    public int WalAutoCheckpointPages { get; init; } = 10_000;

    /// <summary>
    /// Opens the database for reading only (SQLite's <c>Mode=ReadOnly</c>): the file must exist and hold a TaskFlow
    /// store of a schema version this code reads; nothing is created, migrated or written (every save throws
    /// <see cref="PersistenceException"/>), and a file that is not a TaskFlow store is refused, unchanged. For tools
    /// that inspect a store, such as <c>taskflow books</c>. SQLite itself creates a WAL database's <c>-wal</c> and
    /// <c>-shm</c> companion files when they are missing, and a read-only connection cannot remove them afterwards.
    /// </summary>
    public bool ReadOnly { get; init; }

    /// <summary>Documents (an atom, or metadata) larger than this are refused when written or read. Default 64 MiB.</summary>
    public int MaxDocumentBytes { get; init; } = PersistenceJson.DefaultMaxDocumentBytes;

    /// <summary>The clock for <c>UpdatedAt</c> stamps; <see cref="System.TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>The options with any password removed from the connection string.</summary>
    public override string ToString()
    {
        string connection;
        try
        {
            var builder = new SqliteConnectionStringBuilder(ConnectionString);
            if (!string.IsNullOrEmpty(builder.Password)) builder.Password = "***";
            connection = builder.ConnectionString;
        }
        catch (ArgumentException)
        {
            connection = "(unparsable connection string)";
        }
        return $"SqlitePersistenceOptions {{ ConnectionString = {connection}, Durability = {Durability}, ReadOnly = {ReadOnly}, BusyTimeout = {BusyTimeout}, MaxDocumentBytes = {MaxDocumentBytes} }}";
    }
}
