using TaskFlow.Atoms;
using TaskFlow.Failures;

namespace TaskFlow.Retries;

/// <summary>What a retry controller decides when an atom in its scope fails.</summary>
public enum RetryDecision
{
    /// <summary>Revert the controller's subflow, then run it again.</summary>
    Retry,
    /// <summary>Revert the controller's subflow (and consult the parent controller).</summary>
    Revert,
    /// <summary>Revert the whole flow, whatever the parents say.</summary>
    RevertAll,
}

/// <summary>One attempt of a retry controller: the value its execute returned, and the failures of that attempt.</summary>
/// <param name="Value">What the controller's execute returned for this attempt.</param>
/// <param name="Failures">The failures of the attempt, by the name of the atom (or nested controller) that failed.</param>
public sealed record RetryAttempt(object? Value, IReadOnlyDictionary<string, Failure> Failures)
{
    /// <summary>The value as saved (JSON), when the run is persisted; computed once when the attempt is recorded.</summary>
    internal System.Text.Json.JsonElement? SavedValue { get; init; }
}

/// <summary>A retry controller's attempts so far (TaskFlow's <c>History</c>).</summary>
public sealed class RetryHistory : IReadOnlyList<RetryAttempt>
{
    private readonly IReadOnlyList<RetryAttempt> _attempts;

    /// <summary>Creates a history.</summary>
    public RetryHistory(IReadOnlyList<RetryAttempt> attempts, Failure? failure = null)
    {
        ArgumentNullException.ThrowIfNull(attempts);
        _attempts = attempts;
        Failure = failure;
    }

    /// <summary>An empty history.</summary>
    public static RetryHistory Empty { get; } = new([]);

    /// <summary>The failure of the controller's own execute, if it failed.</summary>
    public Failure? Failure { get; }

    /// <inheritdoc />
    public RetryAttempt this[int index] => _attempts[index];

    /// <inheritdoc />
    public int Count => _attempts.Count;

    /// <summary>The values provided by each attempt, in order.</summary>
    public IEnumerable<object?> ProvidedValues => _attempts.Select(a => a.Value);

    /// <inheritdoc />
    public IEnumerator<RetryAttempt> GetEnumerator() => _attempts.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>
/// A retry controller: an atom attached to a flow that decides what happens when an atom in that flow fails
/// (retry the flow, revert it, or revert everything). Derive from it for custom strategies.
/// </summary>
public abstract class RetryController : Atom
{
    /// <summary>Creates a controller; its name defaults to the type name.</summary>
    protected RetryController() { }

    /// <summary>Whether <see cref="RetryDecision.Revert"/> answers become <see cref="RetryDecision.RevertAll"/> when the controller gives up.</summary>
    public bool RevertAll { get; init; }

    /// <summary>Produces the value for the next attempt (published under <see cref="Atom.Provides"/>).</summary>
    public abstract object? Execute(RetryHistory history, TaskArguments arguments);

    /// <summary>Decides what to do about a failure in the controller's scope; the history already holds it.</summary>
    public abstract RetryDecision OnFailure(RetryHistory history, TaskArguments arguments);

    /// <summary>Called when the controller itself is reverted; does nothing by default.</summary>
    public virtual void Revert(RetryHistory history, TaskArguments arguments, IReadOnlyDictionary<string, Failure> flowFailures) { }

    /// <summary>The controller's parameters (none unless overridden).</summary>
    protected internal override IReadOnlyList<AtomParameter> GetExecuteParameters() => WithDeclaredExtras([]);

    /// <summary>The decision when the controller gives up: REVERT, or REVERT_ALL when <see cref="RevertAll"/> is set.</summary>
    protected RetryDecision GiveUp => RevertAll ? RetryDecision.RevertAll : RetryDecision.Revert;
}

/// <summary>Runs its flow up to <see cref="Attempts"/> times in total (TaskFlow's <c>retry.Times</c>; 0 behaves as 1).</summary>
public sealed class TimesRetry : RetryController
{
    /// <summary>Creates the controller.</summary>
    public TimesRetry(int attempts = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(attempts);
        Attempts = attempts;
    }

    /// <summary>The number of attempts.</summary>
    public int Attempts { get; }

    /// <summary>Returns the attempt number (1-based).</summary>
    public override object? Execute(RetryHistory history, TaskArguments arguments) => history.Count + 1;

    /// <inheritdoc />
    public override RetryDecision OnFailure(RetryHistory history, TaskArguments arguments) =>
        history.Count < Attempts ? RetryDecision.Retry : GiveUp;
}

/// <summary>Shared logic of the for-each controllers: try each value once per occurrence, in order.</summary>
public abstract class ForEachRetryBase : RetryController
{
    /// <summary>The values to try, as this attempt sees them.</summary>
    protected abstract IEnumerable<object?> GetValues(TaskArguments arguments);

    /// <summary>The next value not yet tried (multiset difference in list order).</summary>
    public override object? Execute(RetryHistory history, TaskArguments arguments)
    {
        var remaining = Remaining(history, arguments);
        if (remaining.Count == 0)
            throw new NotFoundException($"No elements left in collection of iterable retry controller '{Name}'.");
        return remaining[0];
    }

    /// <inheritdoc />
    public override RetryDecision OnFailure(RetryHistory history, TaskArguments arguments) =>
        Remaining(history, arguments).Count > 0 ? RetryDecision.Retry : GiveUp;

    private List<object?> Remaining(RetryHistory history, TaskArguments arguments)
    {
        var remaining = new List<object?>(GetValues(arguments));
        foreach (var tried in history.ProvidedValues)
        {
            int i = remaining.FindIndex(v => ValueEquals(v, tried));
            if (i >= 0) remaining.RemoveAt(i);
        }
        return remaining;
    }

    private static bool ValueEquals(object? a, object? b)
    {
        if (Equals(a, b)) return true;
        if (a is null || b is null) return false;
        // A resumed run holds the values it tried as saved JSON: compare them as JSON.
        if (a is System.Text.Json.JsonElement || b is System.Text.Json.JsonElement)
            return System.Text.Json.JsonElement.DeepEquals(AsJson(a), AsJson(b));
        // Integers of different widths (e.g. int vs long from JSON) compare by value, as Python's == does.
        if (IsNumber(a) && IsNumber(b))
            return Convert.ToDecimal(a, System.Globalization.CultureInfo.InvariantCulture) == Convert.ToDecimal(b, System.Globalization.CultureInfo.InvariantCulture);
        return false;
    }

    private static System.Text.Json.JsonElement AsJson(object value) =>
        value as System.Text.Json.JsonElement? ?? System.Text.Json.JsonSerializer.SerializeToElement(value, value.GetType(), Persistence.PersistenceJson.Options);

    private static bool IsNumber(object o) => o is sbyte or byte or short or ushort or int or uint or long or ulong or float or double or decimal;
}

/// <summary>Tries the flow once for each of the given values (TaskFlow's <c>retry.ForEach</c>).</summary>
public sealed class ForEachRetry : ForEachRetryBase
{
    private readonly object?[] _values;

    /// <summary>Creates the controller.</summary>
    public ForEachRetry(IEnumerable<object?> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        _values = values.ToArray();
    }

    /// <summary>The values to try.</summary>
    public IReadOnlyList<object?> Values => _values;

    /// <inheritdoc />
    protected override IEnumerable<object?> GetValues(TaskArguments arguments) => _values;
}

/// <summary>
/// Tries the flow once for each value of a collection read from the store at run time, from the symbol
/// <c>values</c> (rebind it to read another) — TaskFlow's <c>retry.ParameterizedForEach</c>.
/// </summary>
public sealed class ParameterizedForEachRetry : ForEachRetryBase
{
    /// <summary>The parameter the values are bound to.</summary>
    public const string ValuesParameter = "values";

    /// <inheritdoc />
    protected internal override IReadOnlyList<AtomParameter> GetExecuteParameters() => WithDeclaredExtras([new AtomParameter(ValuesParameter)]);

    /// <inheritdoc />
    protected override IEnumerable<object?> GetValues(TaskArguments arguments)
    {
        var values = arguments[ValuesParameter];
        return values switch
        {
            null => [],
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Array } je => je.EnumerateArray().Select(e => (object?)e.Clone()),
            System.Collections.IEnumerable e when values is not string => e.Cast<object?>(),
            _ => throw new ArgumentException($"Retry '{Name}' expects a collection in '{ValuesParameter}', got {values.GetType().Name}."),
        };
    }
}

/// <summary>Never retries: reverts its flow (TaskFlow's <c>retry.AlwaysRevert</c>).</summary>
public sealed class AlwaysRevertRetry : RetryController
{
    /// <inheritdoc />
    public override object? Execute(RetryHistory history, TaskArguments arguments) => null;

    /// <inheritdoc />
    public override RetryDecision OnFailure(RetryHistory history, TaskArguments arguments) => RetryDecision.Revert;
}

/// <summary>Never retries: reverts the whole flow (TaskFlow's <c>retry.AlwaysRevertAll</c>).</summary>
public sealed class AlwaysRevertAllRetry : RetryController
{
    /// <inheritdoc />
    public override object? Execute(RetryHistory history, TaskArguments arguments) => null;

    /// <inheritdoc />
    public override RetryDecision OnFailure(RetryHistory history, TaskArguments arguments) => RetryDecision.RevertAll;
}
