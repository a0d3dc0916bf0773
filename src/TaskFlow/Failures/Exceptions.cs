namespace TaskFlow.Failures;

/// <summary>Base class of the exceptions TaskFlow raises itself.</summary>
public class TaskFlowException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TaskFlowException(string message) : base(message) { }

    /// <summary>Creates the exception with a cause.</summary>
    public TaskFlowException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>A flow's links or inferred dependencies form a cycle.</summary>
public sealed class DependencyCycleException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public DependencyCycleException(string message) : base(message) { }
}

/// <summary>One requirement of an atom: the parameter, the symbol it reads, and which call needs it.</summary>
/// <param name="AtomName">The atom that needs the value.</param>
/// <param name="ParameterName">The parameter of execute or revert.</param>
/// <param name="SymbolName">The symbol (after rebinding) that nothing provides.</param>
/// <param name="Method">"execute" or "revert".</param>
public sealed record MissingRequirement(string AtomName, string ParameterName, string SymbolName, string Method);

/// <summary>
/// Validation found requirements that no store value, injection or earlier atom provides.
/// The message lists every one of them at once.
/// </summary>
public sealed class MissingDependenciesException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public MissingDependenciesException(string flowName, IReadOnlyList<MissingRequirement> missing)
        : base(BuildMessage(flowName, missing))
    {
        FlowName = flowName;
        Missing = missing;
    }

    /// <summary>The flow being validated.</summary>
    public string FlowName { get; }

    /// <summary>Every missing requirement.</summary>
    public IReadOnlyList<MissingRequirement> Missing { get; }

    /// <summary>The missing names as TaskFlow reports them: parameter names, sorted and distinct.</summary>
    public IReadOnlyList<string> MissingParameterNames =>
        Missing.Select(m => m.ParameterName).Distinct().Order(StringComparer.Ordinal).ToArray();

    private static string BuildMessage(string flowName, IReadOnlyList<MissingRequirement> missing)
    {
        var lines = missing.Select(m => m.ParameterName == m.SymbolName
            ? $"'{m.SymbolName}' (needed by '{m.AtomName}'.{m.Method})"
            : $"'{m.SymbolName}' (parameter '{m.ParameterName}' of '{m.AtomName}'.{m.Method})");
        return $"Flow '{flowName}' has requirements that nothing provides: {string.Join(", ", lines)}. " +
               "Put them in EngineOptions.Store, inject them into the atom, or add an atom that provides them before the atom that needs them.";
    }
}

/// <summary>A graph flow cannot tell which of several providers an atom's requirement should come from.</summary>
public sealed class AmbiguousDependencyException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public AmbiguousDependencyException(string message) : base(message) { }
}

/// <summary>Two atoms in one flow tree have the same name, or one atom or flow is used twice.</summary>
public sealed class DuplicateAtomNameException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public DuplicateAtomNameException(string message) : base(message) { }
}

/// <summary>An illegal state transition, or an operation that the current state does not allow.</summary>
public sealed class InvalidStateException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public InvalidStateException(string message) : base(message) { }
}

/// <summary>A value, atom, flow detail or element was looked up and not found.</summary>
public sealed class NotFoundException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public NotFoundException(string message) : base(message) { }

    /// <summary>Creates the exception with a cause.</summary>
    public NotFoundException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>Several failures at once (several atoms failed, or an atom and its revert). Iterate <see cref="Failures"/>.</summary>
public sealed class WrappedFailureException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public WrappedFailureException(IReadOnlyList<Failure> failures)
        : base(BuildMessage(failures))
    {
        Failures = failures;
    }

    /// <summary>The failures, in the order they were recorded.</summary>
    public IReadOnlyList<Failure> Failures { get; }

    /// <summary>Whether any of the failures is of the given exception type.</summary>
    public bool Check<TException>() where TException : Exception => Failures.Any(f => f.Check<TException>());

    private static string BuildMessage(IReadOnlyList<Failure> failures)
    {
        ArgumentNullException.ThrowIfNull(failures);
        return failures.Count == 1
            ? $"{failures[0].ExceptionTypeName}: {failures[0].Message}"
            : $"{failures.Count} failures: " + string.Join("; ", failures.Select(f => $"{f.ExceptionTypeName}: {f.Message}"));
    }
}

/// <summary>A job could not be run to the end.</summary>
public sealed class JobFailureException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public JobFailureException(string message, Exception? innerException = null) : base(message, innerException) { }
}

/// <summary>A job is already claimed by another owner (or no longer claimable).</summary>
public sealed class UnclaimableJobException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public UnclaimableJobException(string message) : base(message) { }
}

/// <summary>A remote worker did not answer in time.</summary>
public sealed class WorkerTimeoutException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public WorkerTimeoutException(string message) : base(message) { }
}

/// <summary>A flow definition, atom or option is invalid (bad rebind, provides, link, or signature).</summary>
public sealed class FlowDefinitionException : TaskFlowException
{
    /// <summary>Creates the exception.</summary>
    public FlowDefinitionException(string message) : base(message) { }

    /// <summary>Creates the exception with the error that caused it.</summary>
    public FlowDefinitionException(string message, Exception? innerException) : base(message, innerException) { }
}
