using System.Text;
using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Persistence;
using TaskFlow.States;
using TaskFlow.TestUtilities;
using static TaskFlow.TestUtilities.PersistenceSamples;

namespace TaskFlow.Tests.Persistence;

public sealed class PersistenceJsonTests
{
    private readonly ManualClock _clock = new();

    [Fact]
    public void Failure_WithCausesAndStacks_RoundTripsExactly()
    {
        var failure = NestedFailure();

        var json = PersistenceJson.Serialize(failure);
        var back = PersistenceJson.DeserializeFailure(json);

        Assert.Equal(failure, back);
        AssertSameFailure(failure, back);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("TaskFlow.Tests.PaymentException", doc.RootElement.GetProperty("types")[0].GetString());
        Assert.Equal("503 from gateway", doc.RootElement.GetProperty("cause").GetProperty("message").GetString());
        Assert.False(doc.RootElement.GetProperty("cause").GetProperty("cause").TryGetProperty("stack", out _));
    }

    [Fact]
    public void Failure_FromALiveException_KeepsTypesMessageStackAndInnerException()
    {
        Failure captured;
        try
        {
            try { throw new TimeoutException("inner"); }
            catch (Exception inner) { throw new InvalidOperationException("outer", inner); }
        }
        catch (Exception ex) { captured = Failure.FromException(ex); }

        var back = PersistenceJson.DeserializeFailure(PersistenceJson.SerializeToUtf8Bytes(captured));

        AssertSameFailure(captured, back);
        Assert.True(back.Check<InvalidOperationException>());
        Assert.True(back.Cause!.Check<TimeoutException>());
        Assert.Null(back.Exception);
    }

    [Fact]
    public void Failure_CauseChainDeeperThanTheLimit_IsRefusedOnWriteAndOnRead()
    {
        Failure deep = SimpleFailure("root");
        for (var i = 0; i < PersistenceJson.MaxFailureCauseDepth; i++) deep = new Failure(["E"], $"l{i}", null, deep);

        Assert.Throws<ArgumentException>(() => PersistenceJson.Serialize(deep));

        var json = new StringBuilder();
        for (var i = 0; i <= PersistenceJson.MaxFailureCauseDepth; i++) json.Append("{\"types\":[\"E\"],\"message\":\"m\",\"cause\":");
        json.Append("null");
        json.Append('}', PersistenceJson.MaxFailureCauseDepth + 1);
        var ex = Assert.Throws<PersistenceException>(() => PersistenceJson.DeserializeFailure(json.ToString()));
        Assert.Contains("deeper than", ex.Message);
    }

    [Fact]
    public void FlowDetail_RoundTripsThroughBytesStringAndJsonSerializer()
    {
        var flow = RichFlow(Guid.NewGuid(), _clock);

        AssertSameFlow(flow, PersistenceJson.DeserializeFlowDetail(PersistenceJson.SerializeToUtf8Bytes(flow)));
        AssertSameFlow(flow, PersistenceJson.DeserializeFlowDetail(PersistenceJson.Serialize(flow)));
        AssertSameFlow(flow, JsonSerializer.Deserialize<FlowDetail>(JsonSerializer.Serialize(flow)));
        Assert.Equal(PersistenceJson.Serialize(flow), JsonSerializer.Serialize(flow, PersistenceJson.Options));
    }

    [Fact]
    public void AtomDetail_StatesAreStoredAsTaskFlowNames_AndAbsentDiffersFromJsonNull()
    {
        var atom = TaskDetail.Create("t").WithFailure(SimpleFailure("x")).WithRevertFailure(SimpleFailure("y")) with { Intention = AtomIntention.Revert };
        var withNull = TaskDetail.Create("n").WithSuccess(Json("null"));
        var without = TaskDetail.Create("w").WithSuccess(null);

        using var doc = JsonDocument.Parse(PersistenceJson.Serialize(atom));
        Assert.Equal("REVERT_FAILURE", doc.RootElement.GetProperty("state").GetString());
        Assert.Equal("REVERT", doc.RootElement.GetProperty("intention").GetString());
        Assert.Equal("task", doc.RootElement.GetProperty("kind").GetString());
        Assert.Contains("\"result\":null", PersistenceJson.Serialize(withNull));
        Assert.DoesNotContain("\"result\"", PersistenceJson.Serialize(without));
        Assert.Equal(JsonValueKind.Null, ((TaskDetail)PersistenceJson.DeserializeAtomDetail(PersistenceJson.Serialize(withNull))).Result!.Value.ValueKind);
        Assert.Null(((TaskDetail)PersistenceJson.DeserializeAtomDetail(PersistenceJson.Serialize(without))).Result);
        Assert.NotEqual<AtomDetail>(withNull with { Id = without.Id, Name = "w" }, without);
    }

    [Theory]
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"BOGUS","intention":"EXECUTE","version":"1.0","meta":{}}""", "atom 'charge'", "'BOGUS'")]
    [InlineData("""{"kind":"job","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"SUCCESS","intention":"EXECUTE","version":"1.0","meta":{}}""", "atom 'charge'", "'job'")]
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"SUCCESS","intention":"EXECUTE","version":"1.0"}""", "atom 'charge'", "'meta' is missing")]
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"FAILURE","intention":"EXECUTE","version":"1.0","meta":{},"failure":{"types":[],"message":"m"}}""", "atom 'charge'", "failure.types")]
    [InlineData("""{"kind":"retry","id":"11111111-1111-1111-1111-111111111111","name":"r","state":"SUCCESS","intention":"EXECUTE","version":"1.0","meta":{},"history":[{"value":1}]}""", "atom 'r'", "history[0].failures")]
    [InlineData("""{"kind":"task","id":"not-a-guid","name":"charge"}""", "atom document", "'not-a-guid'")]
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"SUCCESS","intention":"EXECUTE","version":"1.0","meta":{"a":1,"a":2}}""", "atom 'charge'", "'a' twice")]
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"SUCCESS","intention":"EXECUTE","version":"1.0","meta":{}} trailing""", "atom document", "not valid JSON")]
    [InlineData("""[1,2]""", "atom document", "expected a JSON object")]
    // A renamed key would otherwise drop the result silently (the atom would load as SUCCESS without it).
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"SUCCESS","intention":"EXECUTE","version":"1.0","meta":{},"pesult":1}""", "atom 'charge'", "unknown property 'pesult'")]
    [InlineData("""{"kind":"task","id":"11111111-1111-1111-1111-111111111111","name":"charge","state":"FAILURE","intention":"EXECUTE","version":"1.0","meta":{},"failure":{"types":["E"],"message":"m","cuase":null}}""", "atom 'charge'", "'failure' has an unknown property 'cuase'")]
    [InlineData("""{"kind":"retry","id":"11111111-1111-1111-1111-111111111111","name":"r","state":"SUCCESS","intention":"EXECUTE","version":"1.0","meta":{},"history":[{"valeu":1,"failures":{}}]}""", "atom 'r'", "'history[0]' has an unknown property 'valeu'")]
    public void DeserializeAtomDetail_Malformed_ThrowsPersistenceExceptionNamingTheAtom(string json, string names, string detail)
    {
        var ex = Assert.Throws<PersistenceException>(() => PersistenceJson.DeserializeAtomDetail(json));

        Assert.Contains(names, ex.Message);
        Assert.Contains(detail, ex.Message);
    }

    [Fact]
    public void DeserializeFlowDetail_MalformedAtom_NamesTheAtomAndTheFlow()
    {
        var flow = FlowDetail.Create(Guid.NewGuid(), "billing", _clock) with { Atoms = [TaskDetail.Create("charge")] };
        var json = PersistenceJson.Serialize(flow).Replace("\"intention\":\"EXECUTE\"", "\"intention\":7");

        var ex = Assert.Throws<PersistenceException>(() => PersistenceJson.DeserializeFlowDetail(json));

        Assert.Contains("atom 'charge'", ex.Message);
        Assert.Contains($"flow detail 'billing' ({flow.Id})", ex.Message);
        Assert.Contains("'intention'", ex.Message);
    }

    [Fact]
    public void Deserialize_DocumentLargerThanTheBound_IsRefused()
    {
        var json = PersistenceJson.Serialize(LogBook.Create("book", _clock));

        var ex = Assert.Throws<PersistenceException>(() => PersistenceJson.DeserializeLogBook(json, maxDocumentBytes: 16));

        Assert.Contains("more than the limit of 16 bytes", ex.Message);
        Assert.Equal("book", PersistenceJson.DeserializeLogBook(json).Name);
    }

    [Fact]
    public void JsonSerializer_MalformedModelDocument_ThrowsJsonExceptionWithTheSameMessage()
    {
        var ex = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<TaskDetail>("""{"kind":"retry","id":"11111111-1111-1111-1111-111111111111","name":"r","state":"PENDING","intention":"EXECUTE","version":"1.0","meta":{},"history":[]}"""));
        Assert.Contains("atom 'r'", ex.Message);
    }

    [Fact]
    public void Timestamps_AreStoredInUtcToTheMicrosecond()
    {
        var local = new DateTimeOffset(2025, 3, 4, 5, 6, 7, TimeSpan.FromHours(-7)).AddTicks(1234567);
        var book = LogBook.Create("b", _clock) with { CreatedAt = local, UpdatedAt = local };

        Assert.Equal(TimeSpan.Zero, book.CreatedAt.Offset);
        Assert.Equal(local.UtcTicks - 7, book.CreatedAt.UtcTicks);
        Assert.Contains("\"created_at\":\"2025-03-04T12:06:07.123456Z\"", PersistenceJson.Serialize(book));
    }

    [Fact]
    public void Serialize_InvalidUtf16InAName_IsRejectedAsBadInput()
    {
        var atom = TaskDetail.Create("bad\ud800name");
        var ex = Assert.Throws<ArgumentException>(() => PersistenceJson.Serialize(atom));
        Assert.Contains("Cannot store atom", ex.Message);
    }
}
