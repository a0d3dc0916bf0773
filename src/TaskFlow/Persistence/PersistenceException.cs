using TaskFlow.Failures;

namespace TaskFlow.Persistence;

/// <summary>
/// A persistence backend could not store or load data: stored data is malformed or too large, the store's
/// schema is newer than this code understands, or a save conflicts with what is already stored.
/// The message names the object at fault (logbook, flow detail, atom, file) and says what to do.
/// <see cref="StaleOwnerException"/> is the one kind with a type of its own: a fenced write of a replaced owner.
/// </summary>
public class PersistenceException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public PersistenceException(string message) : base(message) { }

    /// <summary>Creates the exception with a cause.</summary>
    public PersistenceException(string message, Exception? innerException) : base(message, innerException) { }
}
