using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Retries;

namespace TaskFlow.Tests.Retries;

/// <summary>
/// The run's log of retry attempts hands controllers snapshots without copying: a history a controller was given
/// must never change afterwards, whatever the log does next.
/// </summary>
public sealed class RetryAttemptLogTests
{
    private static readonly IReadOnlyDictionary<string, Failure> NoFailures = new Dictionary<string, Failure>();

    private static RetryAttempt Attempt(object? value, string? failed = null) =>
        new(value, failed is null ? NoFailures : new Dictionary<string, Failure> { [failed] = Failure.FromException(new InvalidOperationException(failed)) });

    [Fact]
    public void A_snapshot_keeps_its_attempts_when_the_log_appends_replaces_and_clears()
    {
        var log = new RetryAttemptLog();
        log.Add(Attempt(1));
        log.Add(Attempt(2));
        var first = log.Snapshot(null);

        log.ReplaceLast(Attempt(2, failed: "t"));
        log.Add(Attempt(3));
        var second = log.Snapshot(null);
        log.Clear();
        log.Add(Attempt(10));

        Assert.Equal([1, 2], first.Select(a => (int)a.Value!));
        Assert.Empty(first[1].Failures);
        Assert.Equal([1, 2, 3], second.Select(a => (int)a.Value!));
        Assert.Equal(["t"], second[1].Failures.Keys);
        Assert.Equal(10, log.Snapshot(null)[0].Value);
        Assert.Equal(1, log.Count);
    }

    [Fact]
    public void A_snapshot_survives_the_log_growing_past_its_capacity()
    {
        var log = new RetryAttemptLog();
        var snapshots = new List<RetryHistory>();
        for (int i = 0; i < 100; i++)
        {
            log.Add(Attempt(i));
            snapshots.Add(log.Snapshot(null));
            log.ReplaceLast(Attempt(i, failed: $"t{i}"));
        }
        for (int i = 0; i < snapshots.Count; i++)
        {
            Assert.Equal(i + 1, snapshots[i].Count);
            Assert.Equal(Enumerable.Range(0, i + 1), snapshots[i].Select(a => (int)a.Value!));
            Assert.Empty(snapshots[i][i].Failures); // its last attempt as it was when taken
            if (i > 0) Assert.Equal([$"t{i - 1}"], snapshots[i][i - 1].Failures.Keys);
        }
    }

    [Fact]
    public void Reading_outside_the_log_or_a_snapshot_names_the_count()
    {
        var log = new RetryAttemptLog();
        log.Add(Attempt(1));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => log[1]);
        Assert.Contains("1 attempt(s)", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Snapshot(null)[-1]);
        Assert.Throws<InvalidOperationException>(() => new RetryAttemptLog().ReplaceLast(Attempt(1)));
    }

    /// <summary>Keeps every history it is given, to check later that none of them changed.</summary>
    private sealed class KeepingRetry(int attempts) : RetryController
    {
        public List<(RetryHistory History, int Count, int Failures)> Seen { get; } = [];

        public override object? Execute(RetryHistory history, TaskArguments arguments)
        {
            Seen.Add((history, history.Count, history.Sum(a => a.Failures.Count)));
            return history.Count;
        }

        public override RetryDecision OnFailure(RetryHistory history, TaskArguments arguments)
        {
            Seen.Add((history, history.Count, history.Sum(a => a.Failures.Count)));
            return history.Count < attempts ? RetryDecision.Retry : RetryDecision.Revert;
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Histories_given_to_a_controller_do_not_change_as_the_run_goes_on(bool parallel)
    {
        var retry = new KeepingRetry(5) { Name = "r" };
        int calls = 0;
        var flow = new LinearFlow("f", retry) { FlowTask.Create("t", () => { if (++calls < 4) throw new InvalidOperationException("not yet"); }) };
        var engine = parallel ? FlowEngine.CreateParallel(flow) : FlowEngine.CreateSerial(flow);
        await engine.RunAsync();

        Assert.Equal(4, calls);
        Assert.Equal(7, retry.Seen.Count); // four executes, three failures
        foreach (var (history, count, failures) in retry.Seen)
        {
            Assert.Equal(count, history.Count);
            Assert.Equal(failures, history.Sum(a => a.Failures.Count));
        }
        Assert.Equal(4, engine.Storage.GetRetryHistory("r").Count);
    }
}
