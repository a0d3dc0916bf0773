using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.TestUtilities;

/// <summary>Model values for persistence tests: awkward JSON shapes, failures with causes and stacks, retry history.</summary>
public static class PersistenceSamples
{
    public static JsonElement Json(string json) => JsonDocument.Parse(json).RootElement.Clone();

    /// <summary>Results of every JSON shape, keyed by a label.</summary>
    public static IReadOnlyDictionary<string, JsonElement> ResultShapes { get; } = new Dictionary<string, JsonElement>
    {
        ["object"] = Json("""{"invoice":"INV-001","amount":"12.50","currency":"EUR","lines":[{"sku":"a","qty":2}],"paid":false}"""),
        ["array"] = Json("""[1,"two",null,true,{"x":[]},[[]]]"""),
        ["string"] = Json("\"naïve ☃ \\\"quoted\\\" \\n line2 😀 <tag> & 'apos'\""),
        ["big-number"] = Json("12345678901234567890.123456789"),
        ["negative-exponent"] = Json("-1.5e-7"),
        ["integer"] = Json("42"),
        ["true"] = Json("true"),
        ["json-null"] = Json("null"),
        ["empty-object"] = Json("{}"),
        ["deep"] = Json(string.Concat(Enumerable.Repeat("[", 60)) + "1" + string.Concat(Enumerable.Repeat("]", 60))),
    };

    /// <summary>A failure with a stack, caused by another with a stack, caused by one without.</summary>
    public static Failure NestedFailure(string message = "charge declined") =>
        new(["TaskFlow.Tests.PaymentException", "System.InvalidOperationException", "System.SystemException", "System.Exception"],
            message,
            "   at Billing.Charge(Invoice invoice) in /src/Billing.cs:line 42\n   at TaskFlow.Run()",
            new Failure(["System.Net.Http.HttpRequestException", "System.Exception"], "503 from gateway",
                "   at Gateway.Post()",
                new Failure(["System.TimeoutException", "System.SystemException", "System.Exception"], "timed out after 30 s")));

    public static Failure SimpleFailure(string message) => new(["System.InvalidOperationException", "System.SystemException", "System.Exception"], message);

    public static IReadOnlyDictionary<string, JsonElement> Metadata(double progress = 0.5) => new Dictionary<string, JsonElement>
    {
        ["progress"] = Json(progress.ToString("R", System.Globalization.CultureInfo.InvariantCulture)),
        ["progress_details"] = Json("""{"at_progress":0.5,"details":{"step":"charging"}}"""),
        ["ünïcode key"] = Json("\"value\""),
    };

    /// <summary>A flow detail exercising the whole model: tasks in every state, a retry with history.</summary>
    public static FlowDetail RichFlow(Guid logBookId, TimeProvider clock, string name = "billing-flow")
    {
        var flow = FlowDetail.Create(logBookId, name, clock) with
        {
            State = FlowState.Running,
            Metadata = new Dictionary<string, JsonElement>
            {
                ["factory"] = Json("""{"name":"Billing.Flows.Create","args":[1,2],"kwargs":{"k":"v"}}"""),
                ["store"] = Json("""{"customer_id":"C-1"}"""),
            },
        };
        var atoms = new List<AtomDetail>();
        foreach (var (label, value) in ResultShapes)
            atoms.Add(TaskDetail.Create($"ok-{label}").WithSuccess(value) with { Metadata = Metadata(1.0) });
        atoms.Add(TaskDetail.Create("pending"));
        atoms.Add(TaskDetail.Create("no-result").WithSuccess(null));
        atoms.Add(TaskDetail.Create("failed").WithFailure(NestedFailure()) with { Intention = AtomIntention.Revert });
        atoms.Add(TaskDetail.Create("reverted").WithSuccess(Json("1")).WithReverted(Json("""{"refund":"R-9"}""")));
        atoms.Add(TaskDetail.Create("revert-failed").WithFailure(SimpleFailure("boom")).WithRevertFailure(NestedFailure("refund failed")) with { Intention = AtomIntention.Revert });
        atoms.Add(TaskDetail.Create("ignored") with { State = AtomState.Ignore, Intention = AtomIntention.Ignore, Version = "1.1" });
        var retry = RetryDetail.Create("retry-charge")
            .WithSuccess(Json("1"))
            .WithAttemptFailure("charge", NestedFailure())
            .WithSuccess(Json("""{"attempt":2}"""))
            .WithAttemptFailure("charge", SimpleFailure("again"))
            .WithAttemptFailure("notify", SimpleFailure("smtp down"))
            .WithSuccess(null) with { Intention = AtomIntention.Retry, State = AtomState.Retrying };
        atoms.Add(retry);
        atoms.Add(RetryDetail.Create("retry-failed").WithFailure(NestedFailure("no more values")).WithRevertFailure(SimpleFailure("revert of retry")));
        return flow with { Atoms = atoms };
    }

    /// <summary>Asserts equality and, beyond <see cref="Failure.Equals(Failure?)"/>, that failure stacks match too.</summary>
    public static void AssertSameFlow(FlowDetail expected, FlowDetail? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(expected.Atoms.Select(a => a.Name), actual.Atoms.Select(a => a.Name));
        for (var i = 0; i < expected.Atoms.Count; i++)
            AssertSameAtom(expected.Atoms[i], actual.Atoms[i]);
        Assert.Equal(expected, actual);
    }

    public static void AssertSameAtom(AtomDetail expected, AtomDetail actual)
    {
        Assert.Equal(expected.GetType(), actual.GetType());
        switch (expected, actual)
        {
            case (TaskDetail e, TaskDetail a):
                AssertSameJson(e.Result, a.Result, $"{e.Name}.Result");
                AssertSameJson(e.RevertResult, a.RevertResult, $"{e.Name}.RevertResult");
                AssertSameFailure(e.Failure, a.Failure);
                AssertSameFailure(e.RevertFailure, a.RevertFailure);
                break;
            case (RetryDetail e, RetryDetail a):
                Assert.Equal(e.History.Count, a.History.Count);
                for (var i = 0; i < e.History.Count; i++)
                {
                    AssertSameJson(e.History[i].Value, a.History[i].Value, $"{e.Name}.History[{i}]");
                    Assert.Equal(e.History[i].Failures.Keys.Order(), a.History[i].Failures.Keys.Order());
                    foreach (var (atom, failure) in e.History[i].Failures)
                        AssertSameFailure(failure, a.History[i].Failures[atom]);
                }
                AssertSameFailure(e.Failure, a.Failure);
                AssertSameFailure(e.RevertFailure, a.RevertFailure);
                break;
        }
        Assert.Equal(expected, actual);
    }

    public static void AssertSameJson(JsonElement? expected, JsonElement? actual, string what)
    {
        if (expected is null)
        {
            Assert.True(actual is null, $"{what}: expected no value, got {actual}");
            return;
        }
        Assert.True(actual is not null, $"{what}: expected {expected}, got no value");
        Assert.True(JsonElement.DeepEquals(expected.Value, actual.Value), $"{what}: expected {expected}, got {actual}");
    }

    public static void AssertSameFailure(Failure? expected, Failure? actual)
    {
        while (expected is not null)
        {
            Assert.NotNull(actual);
            Assert.Equal(expected.ExceptionTypeNames, actual.ExceptionTypeNames);
            Assert.Equal(expected.Message, actual.Message);
            Assert.Equal(expected.StackTrace, actual.StackTrace);
            expected = expected.Cause;
            actual = actual.Cause;
        }
        Assert.Null(actual);
    }
}
