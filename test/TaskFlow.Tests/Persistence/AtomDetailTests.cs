using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.Tests.Persistence;

public sealed class AtomDetailTests
{
    private static readonly Failure Boom = SimpleFailure("boom");
    private static readonly Failure RevertBoom = SimpleFailure("revert boom");

    [Fact]
    public void TaskWithSuccess_StoresTheResultAndClearsFailureAndRevertData()
    {
        var task = TaskDetail.Create("t").WithFailure(Boom).WithRevertFailure(RevertBoom) with { RevertResult = Json("1") };

        var done = task.WithSuccess(Json("42"));

        Assert.Equal(AtomState.Success, done.State);
        Assert.Equal(42, done.Result!.Value.GetInt32());
        Assert.Null(done.Failure);
        Assert.Null(done.RevertResult);
        Assert.Null(done.RevertFailure);
    }

    [Fact]
    public void TaskWithFailure_StoresTheFailureAndClearsResultAndRevertData()
    {
        var task = TaskDetail.Create("t").WithSuccess(Json("42")) with { RevertResult = Json("1"), RevertFailure = RevertBoom };

        var failed = task.WithFailure(Boom);

        Assert.Equal(AtomState.Failure, failed.State);
        Assert.Equal(Boom, failed.Failure);
        Assert.Null(failed.Result);
        Assert.Null(failed.RevertResult);
        Assert.Null(failed.RevertFailure);
    }

    [Fact]
    public void TaskWithReverted_StoresTheRevertResult_KeepsTheExecuteOutcome()
    {
        var task = TaskDetail.Create("t").WithFailure(Boom) with { RevertFailure = RevertBoom };

        var reverted = task.WithReverted(Json("\"undone\""));

        Assert.Equal(AtomState.Reverted, reverted.State);
        Assert.Equal("undone", reverted.RevertResult!.Value.GetString());
        Assert.Null(reverted.RevertFailure);
        Assert.Equal(Boom, reverted.Failure);
    }

    [Fact]
    public void TaskWithRevertFailure_StoresItAndClearsResultAndRevertResult()
    {
        var task = TaskDetail.Create("t").WithSuccess(Json("42")) with { RevertResult = Json("1") };

        var broken = task.WithRevertFailure(RevertBoom);

        Assert.Equal(AtomState.RevertFailure, broken.State);
        Assert.Equal(RevertBoom, broken.RevertFailure);
        Assert.Null(broken.Result);
        Assert.Null(broken.RevertResult);
    }

    [Fact]
    public void TaskWithReset_ClearsEverythingAndIntendsToExecute()
    {
        var task = TaskDetail.Create("t").WithFailure(Boom).WithRevertFailure(RevertBoom) with { Intention = AtomIntention.Revert };

        var reset = task.WithReset();

        Assert.Equal(TaskDetail.Create("t") with { Id = task.Id }, reset);
    }

    [Fact]
    public void RetryWithSuccess_AppendsAnAttempt_AndWithRevertedEmptiesTheHistory()
    {
        var retry = RetryDetail.Create("r").WithFailure(Boom).WithSuccess(Json("1")).WithSuccess(Json("2"));

        Assert.Equal(AtomState.Success, retry.State);
        Assert.Null(retry.Failure);
        Assert.Equal([1, 2], retry.History.Select(a => a.Value!.Value.GetInt32()));

        var reverted = retry.WithRevertFailure(RevertBoom).WithReverted();
        Assert.Equal(AtomState.Reverted, reverted.State);
        Assert.Empty(reverted.History);
        Assert.Null(reverted.RevertFailure);
    }

    [Fact]
    public void RetryWithAttemptFailure_RecordsTheFirstFailurePerAtomInTheLatestAttempt()
    {
        var retry = RetryDetail.Create("r").WithSuccess(Json("1")).WithSuccess(Json("2"));

        var recorded = retry.WithAttemptFailure("a", Boom).WithAttemptFailure("a", RevertBoom).WithAttemptFailure("b", RevertBoom);

        Assert.Empty(recorded.History[0].Failures);
        Assert.Equal(Boom, recorded.History[1].Failures["a"]);
        Assert.Equal(RevertBoom, recorded.History[1].Failures["b"]);
        var ex = Assert.Throws<NotFoundException>(() => RetryDetail.Create("empty").WithAttemptFailure("a", Boom));
        Assert.Contains("'empty'", ex.Message);
    }

    [Fact]
    public void Records_CopyWhatTheyAreGiven_SoCallersCannotChangeThemLater()
    {
        var failures = new Dictionary<string, Failure> { ["a"] = Boom };
        var attempt = new RetryAttempt(Json("1"), failures);
        var atoms = new List<AtomDetail> { TaskDetail.Create("a") };
        var flow = FlowDetail.Create(Guid.NewGuid(), "f") with { Atoms = atoms };

        failures["b"] = Boom;
        atoms.Add(TaskDetail.Create("b"));

        Assert.Single(attempt.Failures);
        Assert.Single(flow.Atoms);
        Assert.Throws<NotSupportedException>(() => ((IDictionary<string, Failure>)attempt.Failures).Add("c", Boom));
    }

    [Fact]
    public void Records_DetachResultsFromTheCallersJsonDocument()
    {
        TaskDetail task;
        using (var doc = JsonDocument.Parse("""{"x":[1,2,3]}"""))
            task = TaskDetail.Create("t").WithSuccess(doc.RootElement);

        Assert.Equal(3, task.Result!.Value.GetProperty("x").GetArrayLength());
        Assert.Throws<ArgumentException>(() => TaskDetail.Create("t").WithSuccess(default(JsonElement)));
    }

    [Fact]
    public void FlowDetail_DuplicateAtomNamesOrIds_AreRejected()
    {
        var a = TaskDetail.Create("a");
        var flow = FlowDetail.Create(Guid.NewGuid(), "f");

        Assert.Contains("'a'", Assert.Throws<ArgumentException>(() => flow with { Atoms = [a, TaskDetail.Create("a")] }).Message);
        Assert.Contains(a.Id.ToString(), Assert.Throws<ArgumentException>(() => flow with { Atoms = [a, a with { Name = "b" }] }).Message);
    }

    [Fact]
    public void Equality_IsByValue_IncludingJsonAndFailures()
    {
        var a = TaskDetail.Create("t").WithSuccess(Json("""{"x":1,"y":[1,2]}""")).WithFailure(NestedFailure());
        var b = a with { Failure = NestedFailure() };

        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, a with { Failure = NestedFailure("other") });
        Assert.Equal(
            TaskDetail.Create("t").WithSuccess(Json("""{"x":1,"y":2}""")) with { Id = a.Id },
            TaskDetail.Create("t").WithSuccess(Json("""{"y":2,"x":1.0}""")) with { Id = a.Id });
        Assert.NotEqual<AtomDetail>(new TaskDetail { Id = a.Id, Name = "t" }, new RetryDetail { Id = a.Id, Name = "t" });
    }

    [Fact]
    public void ToString_ShowsIdentityAndState_NotResults()
    {
        var task = TaskDetail.Create("charge").WithSuccess(Json("""{"card":"4111111111111111"}"""));

        var text = task.ToString();

        Assert.Contains("charge", text);
        Assert.Contains("SUCCESS", text);
        Assert.DoesNotContain("4111", text);
    }
}
