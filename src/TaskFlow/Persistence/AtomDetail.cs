using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using TaskFlow.Failures;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// The persisted state of one atom of a flow run (TaskFlow's <c>AtomDetail</c>): a <see cref="TaskDetail"/>
/// or a <see cref="RetryDetail"/>. Atoms are matched to the flow's atoms by <see cref="Name"/> on resumption.
/// Immutable: use the <c>With…</c> methods, which apply TaskFlow's rules for what each state keeps, or
/// <c>with</c> expressions.
/// </summary>
[JsonConverter(typeof(AtomDetailJsonConverter))]
public abstract record AtomDetail
{
    /// <summary>The version TaskFlow writes into atom details.</summary>
    public const string DefaultVersion = "1.0";

    private protected AtomDetail() { }

    /// <summary>The atom detail's id (unique within its flow detail; never <see cref="Guid.Empty"/> once saved).</summary>
    public required Guid Id { get; init; }

    /// <summary>The atom's name (unique within its flow detail).</summary>
    public required string Name
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Name));
    }

    /// <summary>The atom's state.</summary>
    public AtomState State { get; init; } = AtomState.Pending;

    /// <summary>What the engine intends to do with the atom next.</summary>
    public AtomIntention Intention { get; init; } = AtomIntention.Execute;

    /// <summary>The detail format version ("1.0", as TaskFlow writes).</summary>
    public string Version
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Version));
    } = DefaultVersion;

    /// <summary>Free-form metadata (TaskFlow keeps <c>progress</c>, <c>progress_details</c>, <c>injected</c> here); a read-only copy.</summary>
    public IReadOnlyDictionary<string, JsonElement> Metadata
    {
        get;
        init => field = ModelValues.FreezeMetadata(value);
    } = ModelValues.EmptyMetadata;

    /// <summary>"task" or "retry": the kind as stored.</summary>
    internal abstract string Kind { get; }

    /// <inheritdoc />
    public virtual bool Equals(AtomDetail? other) =>
        other is not null
        && EqualityContract == other.EqualityContract
        && Id == other.Id
        && Name == other.Name
        && State == other.State
        && Intention == other.Intention
        && Version == other.Version
        && ModelValues.MetadataEquals(Metadata, other.Metadata);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(EqualityContract, Id, Name, State);

    /// <summary>Prints identity and state only: results can be large or sensitive and stay out of logs.</summary>
    protected virtual bool PrintMembers(StringBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Append($"Id = {Id}, Name = {Name}, State = {State.ToTaskFlowName()}, Intention = {Intention.ToTaskFlowName()}");
        return true;
    }
}

/// <summary>The persisted state of a task (TaskFlow's <c>TaskDetail</c>).</summary>
[JsonConverter(typeof(TaskDetailJsonConverter))]
public sealed record TaskDetail : AtomDetail
{
    /// <summary>The execute result; <see langword="null"/> when there is none (a JSON null is a result).</summary>
    public JsonElement? Result
    {
        get;
        init => field = ModelValues.Detach(value, $"The result of task '{Name}'");
    }

    /// <summary>The execute failure, when the task failed.</summary>
    public Failure? Failure { get; init; }

    /// <summary>The revert result; <see langword="null"/> when there is none.</summary>
    public JsonElement? RevertResult
    {
        get;
        init => field = ModelValues.Detach(value, $"The revert result of task '{Name}'");
    }

    /// <summary>The revert failure, when the revert failed.</summary>
    public Failure? RevertFailure { get; init; }

    internal override string Kind => "task";

    /// <summary>Prints identity and state only, never results.</summary>
    protected override bool PrintMembers(StringBuilder builder) => base.PrintMembers(builder);

    /// <summary>A new pending task detail with a fresh id.</summary>
    public static TaskDetail Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return new TaskDetail { Id = Guid.CreateVersion7(), Name = name };
    }

    /// <summary>SUCCESS with the result; clears the failure and any revert result or failure (TaskFlow's <c>put(SUCCESS)</c>).</summary>
    public TaskDetail WithSuccess(JsonElement? result) =>
        this with { State = AtomState.Success, Result = result, Failure = null, RevertResult = null, RevertFailure = null };

    /// <summary>FAILURE with the failure; clears the result and any revert result or failure (TaskFlow's <c>put(FAILURE)</c>).</summary>
    public TaskDetail WithFailure(Failure failure)
    {
        ArgumentNullException.ThrowIfNull(failure);
        return this with { State = AtomState.Failure, Failure = failure, Result = null, RevertResult = null, RevertFailure = null };
    }

    /// <summary>REVERTED with the revert result; clears any revert failure (TaskFlow's <c>put(REVERTED)</c>). The execute failure is kept.</summary>
    public TaskDetail WithReverted(JsonElement? revertResult) =>
        this with { State = AtomState.Reverted, RevertResult = revertResult, RevertFailure = null };

    /// <summary>REVERT_FAILURE with the revert failure; clears the result and revert result (TaskFlow's <c>put(REVERT_FAILURE)</c>). The execute failure is kept.</summary>
    public TaskDetail WithRevertFailure(Failure revertFailure)
    {
        ArgumentNullException.ThrowIfNull(revertFailure);
        return this with { State = AtomState.RevertFailure, RevertFailure = revertFailure, Result = null, RevertResult = null };
    }

    /// <summary>Back to the given state with intention EXECUTE and no results or failures (TaskFlow's <c>reset</c>).</summary>
    public TaskDetail WithReset(AtomState state = AtomState.Pending) =>
        this with { State = state, Intention = AtomIntention.Execute, Result = null, Failure = null, RevertResult = null, RevertFailure = null };

    /// <inheritdoc />
    public bool Equals(TaskDetail? other) =>
        base.Equals(other)
        && ModelValues.JsonEquals(Result, other.Result)
        && Equals(Failure, other.Failure)
        && ModelValues.JsonEquals(RevertResult, other.RevertResult)
        && Equals(RevertFailure, other.RevertFailure);

    /// <inheritdoc />
    public override int GetHashCode() => base.GetHashCode();
}

/// <summary>One execution of a retry controller: the value it returned and the failures of atoms in its scope during that attempt.</summary>
[JsonConverter(typeof(RetryAttemptJsonConverter))]
public sealed record RetryAttempt
{
    /// <summary>Creates an attempt.</summary>
    /// <param name="value">What the retry's execute returned (<see langword="null"/> when nothing was recorded).</param>
    /// <param name="failures">Failures by atom name (first failure per name); empty when omitted.</param>
    public RetryAttempt(JsonElement? value, IReadOnlyDictionary<string, Failure>? failures = null)
    {
        Value = value;
        Failures = failures ?? ModelValues.EmptyFailures;
    }

    /// <summary>What the retry's execute returned.</summary>
    public JsonElement? Value
    {
        get;
        init => field = ModelValues.Detach(value, "A retry attempt's value");
    }

    /// <summary>Failures of atoms in the retry's scope during this attempt, by atom name; a read-only copy.</summary>
    public IReadOnlyDictionary<string, Failure> Failures
    {
        get;
        init => field = ModelValues.FreezeFailures(value);
    }

    /// <inheritdoc />
    public bool Equals(RetryAttempt? other) =>
        other is not null && ModelValues.JsonEquals(Value, other.Value) && ModelValues.FailuresEqual(Failures, other.Failures);

    /// <inheritdoc />
    public override int GetHashCode() => Failures.Count;

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Failures = [{string.Join(", ", Failures.Keys)}]");
        return true;
    }
}

/// <summary>The persisted state of a retry controller (TaskFlow's <c>RetryDetail</c>), including its history.</summary>
[JsonConverter(typeof(RetryDetailJsonConverter))]
public sealed record RetryDetail : AtomDetail
{
    /// <summary>One entry per execution of the retry, oldest first; a read-only copy.</summary>
    public IReadOnlyList<RetryAttempt> History
    {
        get;
        init => field = ModelValues.FreezeList(value, "Retry attempt");
    } = [];

    /// <summary>The failure of the retry's own execute, when it failed.</summary>
    public Failure? Failure { get; init; }

    /// <summary>The failure of the retry's revert, when it failed.</summary>
    public Failure? RevertFailure { get; init; }

    internal override string Kind => "retry";

    /// <summary>Prints identity, state and the number of attempts, never values.</summary>
    protected override bool PrintMembers(StringBuilder builder)
    {
        base.PrintMembers(builder);
        builder.Append($", Attempts = {History.Count}");
        return true;
    }

    /// <summary>A new pending retry detail with a fresh id.</summary>
    public static RetryDetail Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return new RetryDetail { Id = Guid.CreateVersion7(), Name = name };
    }

    /// <summary>SUCCESS: appends an attempt with the value and clears the failures (TaskFlow's <c>put(SUCCESS)</c>).</summary>
    public RetryDetail WithSuccess(JsonElement? value) =>
        this with { State = AtomState.Success, History = [.. History, new RetryAttempt(value)], Failure = null, RevertFailure = null };

    /// <summary>FAILURE with the failure of the retry's own execute; clears any revert failure. History is kept.</summary>
    public RetryDetail WithFailure(Failure failure)
    {
        ArgumentNullException.ThrowIfNull(failure);
        return this with { State = AtomState.Failure, Failure = failure, RevertFailure = null };
    }

    /// <summary>REVERTED: clears the revert failure and empties the history (TaskFlow clears a retry's history once it is reverted).</summary>
    public RetryDetail WithReverted() =>
        this with { State = AtomState.Reverted, RevertFailure = null, History = [] };

    /// <summary>REVERT_FAILURE with the revert failure. History is kept.</summary>
    public RetryDetail WithRevertFailure(Failure revertFailure)
    {
        ArgumentNullException.ThrowIfNull(revertFailure);
        return this with { State = AtomState.RevertFailure, RevertFailure = revertFailure };
    }

    /// <summary>
    /// Records an atom's failure in the latest attempt; the first failure per atom name is kept, later ones are ignored
    /// (TaskFlow's <c>save_retry_failure</c>).
    /// </summary>
    /// <exception cref="NotFoundException">The history is empty: the retry has not executed yet.</exception>
    public RetryDetail WithAttemptFailure(string atomName, Failure failure)
    {
        ArgumentNullException.ThrowIfNull(atomName);
        ArgumentNullException.ThrowIfNull(failure);
        if (History.Count == 0)
            throw new NotFoundException($"Retry '{Name}' has no attempt to record the failure of atom '{atomName}' in; it must execute (SUCCESS) first.");
        var last = History[^1];
        if (last.Failures.ContainsKey(atomName)) return this;
        var failures = new Dictionary<string, Failure>(last.Failures, StringComparer.Ordinal) { [atomName] = failure };
        return this with { History = [.. History.Take(History.Count - 1), last with { Failures = failures }] };
    }

    /// <summary>Back to the given state with intention EXECUTE, no failures and an empty history (TaskFlow's <c>reset</c>).</summary>
    public RetryDetail WithReset(AtomState state = AtomState.Pending) =>
        this with { State = state, Intention = AtomIntention.Execute, History = [], Failure = null, RevertFailure = null };

    /// <inheritdoc />
    public bool Equals(RetryDetail? other) =>
        base.Equals(other)
        && History.SequenceEqual(other.History)
        && Equals(Failure, other.Failure)
        && Equals(RevertFailure, other.RevertFailure);

    /// <inheritdoc />
    public override int GetHashCode() => base.GetHashCode();
}
