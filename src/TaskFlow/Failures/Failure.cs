using System.Runtime.ExceptionServices;

namespace TaskFlow.Failures;

/// <summary>
/// A captured failure: the exception's type names, message, stack and causes, plus the live
/// <see cref="Exception"/> when it happened in this process. Failures are values: they are stored,
/// persisted, sent over the wire and compared, and they can be rethrown.
/// </summary>
public sealed class Failure : IEquatable<Failure>
{
    private readonly ExceptionDispatchInfo? _dispatch;

    private Failure(Exception exception)
    {
        _dispatch = ExceptionDispatchInfo.Capture(exception);
        Exception = exception;
        Message = exception.Message;
        ExceptionTypeNames = TypeNamesOf(exception.GetType());
        // The stack text is formatted on first use (saving, logging, comparing), not here: a failure that is only
        // handled in memory — a retry round, say — never pays for it. Rethrow formats it first, so the text is always
        // the one from the capture.
        _stackPending = true;
        Cause = exception.InnerException is { } inner ? new Failure(inner) : null;
    }

    /// <summary>Creates a failure from stored or received data (no live exception).</summary>
    public Failure(IReadOnlyList<string> exceptionTypeNames, string message, string? stackTrace = null, Failure? cause = null)
    {
        ArgumentNullException.ThrowIfNull(exceptionTypeNames);
        ArgumentNullException.ThrowIfNull(message);
        if (exceptionTypeNames.Count == 0)
            throw new ArgumentException("A failure needs at least one exception type name.", nameof(exceptionTypeNames));
        ExceptionTypeNames = exceptionTypeNames;
        Message = message;
        _stackTrace = stackTrace;
        Cause = cause;
    }

    /// <summary>Captures an exception (its stack is kept for rethrowing).</summary>
    /// <remarks>
    /// A <see cref="WrappedFailureException"/> holding exactly one failure that has no live exception (one that came from
    /// storage or over the wire and was rethrown by <see cref="Rethrow"/>) captures as that failure, so a failure keeps its
    /// original type names when it is rethrown and caught again (for example by a remote task executor).
    /// </remarks>
    public static Failure FromException(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (exception is WrappedFailureException { Failures: [{ Exception: null } only] }) return only;
        return new Failure(exception);
    }

    /// <summary>The live exception, when the failure happened in this process; <see langword="null"/> once deserialized.</summary>
    public Exception? Exception { get; }

    /// <summary>The exception's message.</summary>
    public string Message { get; }

    /// <summary>The full type names of the exception and its base classes, most derived first (up to <see cref="System.Exception"/>).</summary>
    public IReadOnlyList<string> ExceptionTypeNames { get; }

    /// <summary>The most derived exception type's full name.</summary>
    public string ExceptionTypeName => ExceptionTypeNames[0];

    /// <summary>The stack trace text, when known.</summary>
    public string? StackTrace
    {
        get
        {
            if (_stackPending)
            {
                _stackTrace = _capturedTrace is { } trace ? Format(trace) : Exception?.StackTrace;
                _capturedTrace = null;
                _stackPending = false;
            }
            return _stackTrace;
        }
    }

    private string? _stackTrace;
    private volatile bool _stackPending;
    // Taken by Rethrow when the text was not needed yet: the frames as they were at the capture, with file and line
    // numbers, but not yet formatted (formatting is most of the cost, and a failure rethrown to a caller is often
    // never read again).
    private System.Diagnostics.StackTrace? _capturedTrace;

    // What Exception.StackTrace returns, from frames taken earlier: the same formatting without the trailing newline.
    private static string? Format(System.Diagnostics.StackTrace trace)
    {
        if (trace.FrameCount == 0) return null;
        var text = trace.ToString();
        return text.EndsWith(Environment.NewLine, StringComparison.Ordinal) ? text[..^Environment.NewLine.Length] : text;
    }

    /// <summary>The failure that caused this one (the inner exception), when there is one.</summary>
    public Failure? Cause { get; }

    /// <summary>Whether the exception is of the given type or derives from it (checked by name, so it works on deserialized failures).</summary>
    public bool Check<TException>() where TException : Exception => Check(typeof(TException));

    /// <summary>Whether the exception is of the given type or derives from it.</summary>
    public bool Check(Type exceptionType)
    {
        ArgumentNullException.ThrowIfNull(exceptionType);
        var name = exceptionType.FullName;
        foreach (var n in ExceptionTypeNames)
            if (n == name) return true;
        return false;
    }

    /// <summary>
    /// Throws the original exception with its original stack when it is live; otherwise a
    /// <see cref="WrappedFailureException"/> holding this failure.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public void Rethrow()
    {
        // The text must stay the capture's: take the frames before the rethrow appends the caller's.
        if (_stackPending && _capturedTrace is null && Exception is { } e) _capturedTrace = new System.Diagnostics.StackTrace(e, fNeedFileInfo: true);
        _dispatch?.Throw();
        throw new WrappedFailureException([this]);
    }

    /// <summary>An exception for this failure: the live one, or a <see cref="WrappedFailureException"/>.</summary>
    public Exception ToException() => Exception ?? new WrappedFailureException([this]);

    // Shared between failures of one type, so read-only.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, IReadOnlyList<string>> TypeNamesByType = new();

    private static IReadOnlyList<string> TypeNamesOf(Type type) => TypeNamesByType.GetOrAdd(type, static t => Array.AsReadOnly(ComputeTypeNames(t)));

    private static string[] ComputeTypeNames(Type type)
    {
        var names = new List<string>(4);
        for (Type? t = type; t is not null && t != typeof(object); t = t.BaseType)
            names.Add(t.FullName ?? t.Name);
        return names.ToArray();
    }

    /// <inheritdoc />
    public bool Equals(Failure? other)
    {
        if (other is null) return false;
        if (ReferenceEquals(this, other)) return true;
        return Message == other.Message
            && ExceptionTypeNames.SequenceEqual(other.ExceptionTypeNames)
            && Equals(Cause, other.Cause);
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is Failure f && Equals(f);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Message, ExceptionTypeName);

    /// <inheritdoc />
    public override string ToString() => $"Failure: {ExceptionTypeName}: {Message}";
}
