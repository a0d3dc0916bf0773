using System.Runtime.InteropServices;

namespace TaskFlow.Persistence;

/// <summary>
/// Makes a directory's entries (files renamed into it or deleted, directories created in it) durable: open the
/// directory and fsync it (Unix; on Windows the file system journals its metadata and there is nothing to call).
/// Every failure is a <see cref="PersistenceException"/> naming the directory, the step and what it was for, never a
/// silent "durable": a save whose directory could not be synced may vanish on power loss, so it must not count as
/// done. The one exception, as in PostgreSQL's <c>fsync_fname</c>: a file system that cannot sync directories at
/// all answers <c>EINVAL</c> (or <c>EBADF</c>), which is ignored. The system calls are virtual so tests can fail them.
/// </summary>
internal class DirectorySync
{
    private const int EBADF = 9;
    private const int EINTR = 4;
    private const int EINVAL = 22;

    /// <summary>The real system calls.</summary>
    public static DirectorySync Posix { get; } = new();

    /// <summary>Syncs <paramref name="directory"/>; <paramref name="cause"/> says what made it necessary, for the message.</summary>
    /// <exception cref="PersistenceException">The directory could not be opened or synced.</exception>
    public void Flush(string directory, string cause)
    {
        if (OperatingSystem.IsWindows()) return;
        int error;
        int fd;
        while ((error = Open(directory, out fd)) == EINTR) { }
        if (error != 0)
            throw new PersistenceException(
                $"Could not open the directory '{directory}' to fsync it after {cause}: {Describe(error)}. The change may not survive a power loss.");
        try
        {
            while ((error = Sync(fd)) == EINTR) { }
            if (error is not (0 or EINVAL or EBADF))
                throw new PersistenceException(
                    $"fsync of the directory '{directory}' failed after {cause}: {Describe(error)}. The change may not survive a power loss.");
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>Opens a directory for reading; 0 and the descriptor, or the <c>errno</c>.</summary>
    protected virtual int Open(string directory, out int fd)
    {
        fd = open(directory, 0); // O_RDONLY: what fsync of a directory needs on Linux and macOS
        return fd < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>fsync; 0 or the <c>errno</c>.</summary>
    protected virtual int Sync(int fd) => fsync(fd) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Closes what <see cref="Open"/> opened.</summary>
    protected virtual void Close(int fd) => _ = close(fd);

    private static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    [DllImport("libc", SetLastError = true)]
    private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int fsync(int fd);

    [DllImport("libc", SetLastError = true)]
    private static extern int close(int fd);
}
