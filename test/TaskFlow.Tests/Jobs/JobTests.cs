using System.Text.Json;
using TaskFlow.Jobs;

namespace TaskFlow.Tests.Jobs;

public sealed class JobTests
{
    private static Job Sample() => new JobPosting
    {
        Name = "nightly",
        FlowFactory = "reports.nightly",
        FactoryArguments = JsonSerializer.SerializeToElement(new { day = "2025-01-02" }),
        Store = new Dictionary<string, JsonElement> { ["password"] = JsonSerializer.SerializeToElement("hunter2") },
        Priority = JobPriority.Low,
    }.ToJob(Guid.NewGuid(), new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.FromHours(2)).AddTicks(7)) with { State = JobState.Claimed, Owner = "c1", ClaimCount = 2 };

    [Fact]
    public void ToJson_ThenFromJson_RoundTripsEveryField()
    {
        var job = Sample();

        var json = job.ToJson();
        var back = Job.FromJson(json);

        Assert.Equal(job, back);
        Assert.Contains("\"flow_factory\":\"reports.nightly\"", json);
        Assert.Contains("\"state\":\"Claimed\"", json);
        Assert.Contains("\"priority\":\"Low\"", json);
        Assert.Equal(TimeSpan.Zero, back.CreatedAt.Offset);
        Assert.Equal(job.CreatedAt.UtcTicks - job.CreatedAt.UtcTicks % 10, back.CreatedAt.UtcTicks);
    }

    [Theory]
    [InlineData("""{"id":"00000000-0000-0000-0000-000000000001","name":"x","flow_factory":"f","logbook_id":"00000000-0000-0000-0000-000000000001","created_at":"2025-01-01T00:00:00Z"}""", "flow_detail_id")]
    [InlineData("""{"id":"00000000-0000-0000-0000-000000000001","name":"","flow_factory":"f","logbook_id":"00000000-0000-0000-0000-000000000001","flow_detail_id":"00000000-0000-0000-0000-000000000001","created_at":"2025-01-01T00:00:00Z"}""", "Name")]
    [InlineData("""{"id":"00000000-0000-0000-0000-000000000001","name":"x","flow_factory":"f","logbook_id":"00000000-0000-0000-0000-000000000001","flow_detail_id":"00000000-0000-0000-0000-000000000001","created_at":"2025-01-01T00:00:00Z","$type":"System.IO.FileInfo"}""", "$type")]
    public void FromJson_InvalidDocument_NamesTheFieldAtFault(string json, string field)
    {
        var ex = Assert.Throws<ArgumentException>(() => Job.FromJson(json));

        Assert.Contains(field, ex.Message);
    }

    [Fact]
    public void ToString_LeavesStoreAndArgumentsOut()
    {
        var text = Sample().ToString();

        Assert.DoesNotContain("hunter2", text);
        Assert.Contains("nightly", text);
        Assert.Contains("c1", text);
    }

    [Fact]
    public void Posting_InvalidPriority_IsRefused()
    {
        var posting = new JobPosting { Name = "x", FlowFactory = "f", Priority = (JobPriority)7 };

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => posting.ToJob(Guid.NewGuid(), DateTimeOffset.UtcNow));
        Assert.Contains("priority 7", ex.Message);
    }

    [Fact]
    public void PostingCreate_SerializesPlainValues()
    {
        var posting = JobPosting.Create("x", "f", new { a = 1 }, new Dictionary<string, object?> { ["n"] = 42, ["s"] = "t" });

        Assert.Equal(1, posting.FactoryArguments!.Value.GetProperty("a").GetInt32());
        Assert.Equal(42, posting.Store["n"].GetInt32());
        Assert.Equal("t", posting.Store["s"].GetString());
    }
}
