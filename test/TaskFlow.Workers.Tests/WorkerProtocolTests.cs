using System.Text;
using System.Text.Json;
using TaskFlow.Failures;

namespace TaskFlow.Workers.Tests;

public sealed class WorkerProtocolTests
{
    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static WorkerProtocolException Rejects(string json, int max = WorkerProtocol.DefaultMaxMessageBytes) =>
        Assert.Throws<WorkerProtocolException>(() => WorkerProtocol.Parse(Utf8(json), max));

    [Fact]
    public void RevertRequest_RoundTrips_WithArgumentsResultFailureAndFlowFailures()
    {
        var failure = Failure.FromException(new InvalidOperationException("boom", new IOException("disk")));
        var request = new TaskRequest("r1", "My.Task", "atom", TaskAction.Revert,
            new Dictionary<string, JsonElement> { ["x"] = JsonSerializer.SerializeToElement(new { a = 1, b = new[] { "z" } }) }, "reply.1")
        {
            ResultFailure = failure,
            FlowFailures = new Dictionary<string, Failure> { ["other"] = failure },
            Timeout = TimeSpan.FromSeconds(3),
        };
        var parsed = Assert.IsType<TaskRequest>(WorkerProtocol.Parse(WorkerProtocol.Serialize(request)));
        Assert.Equal(("r1", "My.Task", "atom", TaskAction.Revert, "reply.1"), (parsed.Id, parsed.TaskName, parsed.AtomName, parsed.Action, parsed.ReplyTo));
        Assert.Equal("""{"a":1,"b":["z"]}""", parsed.Arguments["x"].GetRawText());
        Assert.Equal(failure, parsed.ResultFailure);
        Assert.True(parsed.ResultFailure!.Check<InvalidOperationException>());
        Assert.Equal("disk", parsed.ResultFailure.Cause!.Message);
        Assert.Equal(failure, parsed.FlowFailures["other"]);
        Assert.Equal(TimeSpan.FromSeconds(3), parsed.Timeout);
    }

    [Fact]
    public void Responses_RoundTrip_ForEveryState()
    {
        var success = new TaskResponse("r", ResponseState.Success, "w") { Result = JsonSerializer.SerializeToElement(42) };
        Assert.Equal(42, Assert.IsType<TaskResponse>(WorkerProtocol.Parse(WorkerProtocol.Serialize(success))).Result!.Value.GetInt32());
        var progress = new TaskResponse("r", ResponseState.Progress, "w") { Progress = 0.25, Details = JsonSerializer.SerializeToElement("quarter") };
        var p = Assert.IsType<TaskResponse>(WorkerProtocol.Parse(WorkerProtocol.Serialize(progress)));
        Assert.Equal((0.25, "quarter"), (p.Progress, p.Details!.Value.GetString()));
        var failure = new TaskResponse("r", ResponseState.Failure, "w") { Failure = new Failure(["X.Error", "System.Exception"], "bad") };
        Assert.True(Assert.IsType<TaskResponse>(WorkerProtocol.Parse(WorkerProtocol.Serialize(failure))).Failure!.Check<Exception>());
        var running = Assert.IsType<TaskResponse>(WorkerProtocol.Parse(WorkerProtocol.Serialize(new TaskResponse("r", ResponseState.Running, "w"))));
        Assert.Equal(ResponseState.Running, running.State);
    }

    [Fact]
    public void Notification_RoundTrips_AndCarriesVersion()
    {
        var bytes = WorkerProtocol.Serialize(new WorkerNotification("w1", "topic", ["a", "b"], TimeSpan.FromSeconds(2)) { Leaving = true });
        Assert.Contains("\"version\":1", Encoding.UTF8.GetString(bytes));
        var n = Assert.IsType<WorkerNotification>(WorkerProtocol.Parse(bytes));
        Assert.Equal(("w1", "topic", TimeSpan.FromSeconds(2), true), (n.WorkerId, n.Topic, n.HeartbeatInterval, n.Leaving));
        Assert.Equal(["a", "b"], n.Tasks);
    }

    [Fact]
    public void Deadline_RefusalAndWithdrawal_RoundTrip()
    {
        var deadline = DateTimeOffset.FromUnixTimeMilliseconds(1_760_000_000_123);
        var request = new TaskRequest("r1", "t", "a", TaskAction.Execute, new Dictionary<string, JsonElement>(), "taskflow.reply.x") { Deadline = deadline };
        var bytes = WorkerProtocol.Serialize(request);
        Assert.Contains("\"deadline_ms\":1760000000123", Encoding.UTF8.GetString(bytes));
        Assert.Equal(deadline, Assert.IsType<TaskRequest>(WorkerProtocol.Parse(bytes)).Deadline);
        // Requests of older engines carry none.
        Assert.Null(Assert.IsType<TaskRequest>(WorkerProtocol.Parse(WorkerProtocol.Serialize(request with { Deadline = null }))).Deadline);

        var refusal = new TaskResponse("r1", ResponseState.Failure, "w") { Failure = new Failure(["X"], "no"), Refused = Refusals.Expired };
        Assert.Equal(Refusals.Expired, Assert.IsType<TaskResponse>(WorkerProtocol.Parse(WorkerProtocol.Serialize(refusal))).Refused);
        Assert.Null(Assert.IsType<TaskResponse>(WorkerProtocol.Parse(WorkerProtocol.Serialize(refusal with { Refused = null }))).Refused);

        var cancel = Assert.IsType<CancelRequest>(WorkerProtocol.Parse(WorkerProtocol.Serialize(new CancelRequest("r1") { Deadline = deadline })));
        Assert.Equal(("r1", deadline), (cancel.Id, cancel.Deadline));
    }

    [Fact]
    public void Parse_Oversized_IsRejectedBeforeParsing()
    {
        var big = "{\"version\":1,\"type\":\"discover\",\"pad\":\"" + new string('x', 5000) + "\"}";
        Assert.Contains("exceeds the 2048-byte limit", Rejects(big, 2048).Message);
        Assert.IsType<DiscoveryRequest>(WorkerProtocol.Parse(Utf8(big), 10_000));
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("{not json", "not valid JSON")]
    [InlineData("[1,2]", "not an object")]
    [InlineData("{\"type\":\"discover\"}", "no numeric \"version\"")]
    [InlineData("{\"version\":\"1\",\"type\":\"discover\"}", "no numeric \"version\"")]
    [InlineData("{\"version\":2,\"type\":\"discover\"}", "protocol version 2")]
    [InlineData("{\"version\":1.5,\"type\":\"discover\"}", "protocol version 1.5")]
    [InlineData("{\"version\":1,\"type\":\"System.Diagnostics.Process\"}", "unknown type")]
    [InlineData("{\"version\":1,\"type\":7}", "\"type\" that is a JSON number")]
    public void Parse_MalformedOrWrongVersion_IsRejectedWithReason(string json, string reason) =>
        Assert.Contains(reason, Rejects(json).Message);

    [Theory]
    [InlineData("""{"version":1,"type":"request","id":5,"task":"t","atom":"a","action":"execute","reply_to":"r","arguments":{}}""", "\"id\" that is a JSON number")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"delete","reply_to":"r","arguments":{}}""", "unknown action 'delete'")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"execute","reply_to":"r","arguments":[1]}""", "no \"arguments\" object")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"","atom":"a","action":"execute","reply_to":"r","arguments":{}}""", "empty \"task\"")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"execute","arguments":{}}""", "no \"reply_to\"")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"execute","reply_to":"r","arguments":{},"timeout_ms":-5}""", "invalid \"timeout_ms\"")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"execute","reply_to":"r","arguments":{},"deadline_ms":"soon"}""", "invalid \"deadline_ms\"")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"execute","reply_to":"r","arguments":{},"deadline_ms":-1}""", "invalid \"deadline_ms\"")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"execute","reply_to":"r","arguments":{},"deadline_ms":1e300}""", "invalid \"deadline_ms\"")]
    [InlineData("""{"version":1,"type":"response","id":"1","worker":"w","state":"FAILURE","failure":{"types":["X"],"message":"m"},"refused":7}""", "\"refused\" that is not")]
    [InlineData("""{"version":1,"type":"cancel"}""", "cancel request has no \"id\"")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"revert","reply_to":"r","arguments":{}}""", "no \"result\" object")]
    [InlineData("""{"version":1,"type":"request","id":"1","task":"t","atom":"a","action":"revert","reply_to":"r","arguments":{},"result":{"outcome":"failure","failure":{"types":"x"}}}""", "invalid failure")]
    [InlineData("""{"version":1,"type":"response","id":"1","worker":"w","state":"DONE"}""", "unknown state 'DONE'")]
    [InlineData("""{"version":1,"type":"response","id":"1","worker":"w","state":"PROGRESS","progress":"half"}""", "no numeric \"progress\"")]
    [InlineData("""{"version":1,"type":"response","id":"1","worker":"w","state":"SUCCESS"}""", "has no \"result\"")]
    [InlineData("""{"version":1,"type":"response","id":"1","worker":"w","state":"FAILURE","failure":"oops"}""", "no \"failure\" failure object")]
    [InlineData("""{"version":1,"type":"notify","worker":"w","topic":"t","tasks":[1],"heartbeat_ms":100}""", "task name that is not a non-empty string")]
    [InlineData("""{"version":1,"type":"notify","worker":"w","topic":"t","tasks":["a"],"heartbeat_ms":0}""", "valid \"heartbeat_ms\"")]
    [InlineData("""{"version":1,"type":"notify","worker":"w","topic":"t","tasks":["a"],"heartbeat_ms":10,"leaving":"yes"}""", "\"leaving\" that is not a boolean")]
    public void Parse_WrongShapeOrTypes_IsRejectedWithReason(string json, string reason) =>
        Assert.Contains(reason, Rejects(json).Message);

    [Fact]
    public void Parse_TooDeep_IsRejected()
    {
        var deep = "{\"version\":1,\"type\":\"discover\",\"x\":" + new string('[', 400) + new string(']', 400) + "}";
        Assert.Contains("not valid JSON", Rejects(deep).Message);
    }
}
