using System.Diagnostics;
using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Jobs;

namespace TaskFlow.TestUtilities;

/// <summary>
/// The behaviour every <see cref="IJobBoard"/> must have (TaskFlow's jobboard contract), written once. A derived class in
/// each board's test project supplies a fresh, empty board per test (xunit makes one instance per test).
/// </summary>
public abstract partial class JobBoardContract : IAsyncLifetime
{
    private readonly List<IJobBoard> _others = [];

    /// <summary>The board under test; null when a server-backed board has no server here (see <see cref="RunAsync"/>).</summary>
    protected IJobBoard? Board { get; private set; }

    /// <summary>A board on a fresh, empty store, or null when its server is not available outside CI.</summary>
    protected abstract Task<IJobBoard?> CreateBoardAsync();

    /// <summary>
    /// Another handle on the same board, as another host would open it (a board that lives in one process returns
    /// <see cref="Board"/> itself).
    /// </summary>
    protected abstract Task<IJobBoard> OpenSameBoardAsync();

    /// <summary>Deletes the store created by <see cref="CreateBoardAsync"/> (after the boards are disposed).</summary>
    protected virtual Task DestroyStoreAsync() => Task.CompletedTask;

    public async Task InitializeAsync() => Board = await CreateBoardAsync();

    public async Task DisposeAsync()
    {
        foreach (var other in _others)
            if (!ReferenceEquals(other, Board)) await other.DisposeAsync();
        if (Board is not null) await Board.DisposeAsync();
        await DestroyStoreAsync();
    }

    /// <summary>Runs a test body against the board; returns early when a server-backed suite has no server outside CI.</summary>
    protected async Task RunAsync(Func<IJobBoard, Task> test)
    {
        if (Board is null) return;
        await test(Board);
    }

    protected async Task<IJobBoard> OtherHostAsync()
    {
        var other = await OpenSameBoardAsync();
        _others.Add(other);
        return other;
    }

    protected static JobPosting Posting(string name = "job", JobPriority priority = JobPriority.Normal) => new()
    {
        Name = name,
        FlowFactory = "factory-" + name,
        Priority = priority,
    };

    // ------------------------------------------------------------------ post and read

    [Fact]
    public Task PostAsync_FullPosting_IsUnclaimedAndRoundTripsEveryField() => RunAsync(async board =>
    {
        var posting = new JobPosting
        {
            Name = "resize volume ü",
            FlowFactory = "volumes.resize",
            FactoryArguments = JsonSerializer.SerializeToElement(new { size = 10, tags = new[] { "a", "b" }, nested = new { x = 1.5 } }),
            Store = new Dictionary<string, JsonElement>
            {
                ["volume_id"] = JsonSerializer.SerializeToElement("vol-1"),
                ["count"] = JsonSerializer.SerializeToElement(3),
                ["nothing"] = JsonSerializer.SerializeToElement<object?>(null),
            },
            LogBookId = Guid.NewGuid(),
            FlowDetailId = Guid.NewGuid(),
            Priority = JobPriority.High,
        };

        var posted = await board.PostAsync(posting);
        var read = await board.GetJobAsync(posted.Id);

        Assert.NotNull(read);
        Assert.Equal(posted, read);
        Assert.Equal(JobState.Unclaimed, read.State);
        Assert.Null(read.Owner);
        Assert.Equal(0, read.ClaimCount);
        Assert.Equal(posting.Name, read.Name);
        Assert.Equal(posting.FlowFactory, read.FlowFactory);
        Assert.True(JsonElement.DeepEquals(posting.FactoryArguments!.Value, read.FactoryArguments!.Value));
        Assert.Equal(posting.Store.Keys.Order(), read.Store.Keys.Order());
        foreach (var (key, value) in posting.Store) Assert.True(JsonElement.DeepEquals(value, read.Store[key]), key);
        Assert.Equal(posting.LogBookId, read.LogBookId);
        Assert.Equal(posting.FlowDetailId, read.FlowDetailId);
        Assert.Equal(JobPriority.High, read.Priority);
        Assert.Equal(TimeSpan.Zero, read.CreatedAt.Offset);
        Assert.Equal([posted], await board.GetJobsAsync(JobState.Unclaimed));
    });

    [Fact]
    public Task PostAsync_WithoutIds_GivesEachJobItsOwnLogBookAndFlowDetail() => RunAsync(async board =>
    {
        var a = await board.PostAsync(Posting("a"));
        var b = await board.PostAsync(Posting("b"));

        Assert.NotEqual(Guid.Empty, a.FlowDetailId);
        Assert.NotEqual(Guid.Empty, a.LogBookId);
        Assert.NotEqual(a.FlowDetailId, b.FlowDetailId);
        Assert.NotEqual(a.Id, b.Id);
        Assert.Null(a.FactoryArguments);
        Assert.Empty(a.Store);
    });

    [Fact]
    public Task GetJobAsync_UnknownId_ReturnsNull() => RunAsync(async board =>
    {
        Assert.Null(await board.GetJobAsync(Guid.NewGuid()));
        Assert.Empty(await board.GetJobsAsync());
    });

    [Fact]
    public Task GetJobsAsync_OrdersByPriorityThenAge_AndClaimNextFollowsTheSameOrder() => RunAsync(async board =>
    {
        var low = await board.PostAsync(Posting("low", JobPriority.Low));
        var normal1 = await board.PostAsync(Posting("normal1"));
        var urgent = await board.PostAsync(Posting("urgent", JobPriority.VeryHigh));
        var normal2 = await board.PostAsync(Posting("normal2"));

        var listed = await board.GetJobsAsync();

        Assert.Equal(["urgent", "normal1", "normal2", "low"], listed.Select(j => j.Name));
        var claimed = new List<string>();
        while (await board.ClaimNextAsync("worker") is { } job) claimed.Add(job.Name);
        Assert.Equal(["urgent", "normal1", "normal2", "low"], claimed);
        _ = (low, normal1, urgent, normal2);
    });

    // ------------------------------------------------------------------ claim

    [Fact]
    public Task ClaimAsync_UnclaimedJob_MakesTheOwnerHoldIt() => RunAsync(async board =>
    {
        var job = await board.PostAsync(Posting());

        var claimed = await board.ClaimAsync(job, "conductor-1");

        Assert.Equal(JobState.Claimed, claimed.State);
        Assert.Equal("conductor-1", claimed.Owner);
        Assert.Equal(1, claimed.ClaimCount);
        Assert.Equal("conductor-1", await board.FindOwnerAsync(job));
        Assert.Empty(await board.GetJobsAsync(JobState.Unclaimed));
        Assert.Equal([job.Id], (await board.GetJobsAsync(JobState.Claimed)).Select(j => j.Id));
        Assert.Equal(JobState.Claimed, (await board.GetJobAsync(job.Id))!.State);
    });

    [Fact]
    public Task ClaimAsync_AlreadyClaimed_ThrowsUnclaimableForAnotherOwnerAndForTheSameOwner() => RunAsync(async board =>
    {
        var job = await board.PostAsync(Posting());
        await board.ClaimAsync(job, "conductor-1");
        var other = await OtherHostAsync();

        var byOther = await Assert.ThrowsAsync<UnclaimableJobException>(() => other.ClaimAsync(job, "conductor-2"));
        await Assert.ThrowsAsync<UnclaimableJobException>(() => board.ClaimAsync(job, "conductor-1"));

        Assert.Contains("conductor-1", byOther.Message);
        Assert.Equal("conductor-1", await board.FindOwnerAsync(job));
    });

    [Fact]
    public Task ClaimAsync_UnknownJob_ThrowsNotFound() => RunAsync(async board =>
    {
        var job = await board.PostAsync(Posting());
        var ghost = job with { Id = Guid.NewGuid() };

        var ex = await Assert.ThrowsAsync<NotFoundException>(() => board.ClaimAsync(ghost, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.FindOwnerAsync(ghost));

        Assert.Contains(ghost.Id.ToString(), ex.Message);
    });

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public Task ClaimAsync_EmptyOwner_IsRefused(string owner) => RunAsync(async board =>
    {
        var job = await board.PostAsync(Posting());

        await Assert.ThrowsAsync<ArgumentException>(() => board.ClaimAsync(job, owner));
        await Assert.ThrowsAsync<ArgumentException>(() => board.ClaimNextAsync(owner));

        Assert.Equal(JobState.Unclaimed, (await board.GetJobAsync(job.Id))!.State);
    });

    [Fact]
    public Task ClaimNextAsync_NothingClaimable_ReturnsNull() => RunAsync(async board =>
    {
        Assert.Null(await board.ClaimNextAsync("conductor-1"));
        var job = await board.PostAsync(Posting());
        await board.ClaimAsync(job, "conductor-1");

        Assert.Null(await board.ClaimNextAsync("conductor-2"));
    });

    [Fact]
    public Task ClaimNextAsync_ManyClaimersAtOnce_HandEachJobToExactlyOneOfThem() => RunAsync(async board =>
    {
        const int jobs = 40, claimers = 6;
        var posted = new HashSet<Guid>();
        for (var i = 0; i < jobs; i++) posted.Add((await board.PostAsync(Posting($"job{i}"))).Id);
        var boards = new List<IJobBoard> { board };
        for (var i = 1; i < claimers; i++) boards.Add(await OtherHostAsync());

        var results = await Task.WhenAll(boards.Select((b, i) => Task.Run(async () =>
        {
            var mine = new List<Job>();
            while (await b.ClaimNextAsync($"claimer-{i}") is { } job) mine.Add(job);
            return mine;
        })));

        var all = results.SelectMany(r => r).ToList();
        Assert.Equal(jobs, all.Count);
        Assert.Equal(posted, all.Select(j => j.Id).ToHashSet());
        foreach (var (mine, i) in results.Select((r, i) => (r, i)))
            foreach (var job in mine) Assert.Equal($"claimer-{i}", await board.FindOwnerAsync(job));
    });

    // ------------------------------------------------------------------ consume, abandon, trash

    [Fact]
    public Task ConsumeAsync_ByTheOwner_CompletesTheJobForGood() => RunAsync(async board =>
    {
        var job = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");

        await board.ConsumeAsync(job, "conductor-1");

        var read = await board.GetJobAsync(job.Id);
        Assert.Equal(JobState.Complete, read!.State);
        Assert.Equal("conductor-1", read.Owner);
        Assert.Null(await board.FindOwnerAsync(job));
        Assert.Equal([job.Id], (await board.GetJobsAsync(JobState.Complete)).Select(j => j.Id));
        Assert.Empty(await board.GetJobsAsync(JobState.Claimed));
        await Assert.ThrowsAsync<NotFoundException>(() => board.ConsumeAsync(job, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.ClaimAsync(job, "conductor-2"));
        Assert.Null(await board.ClaimNextAsync("conductor-2"));
        Assert.False(await board.WaitForJobsAsync(TimeSpan.Zero));
    });

    [Fact]
    public Task ConsumeAsync_ByAnotherOwner_ThrowsJobFailureAndLeavesTheClaim() => RunAsync(async board =>
    {
        var job = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");

        var ex = await Assert.ThrowsAsync<JobFailureException>(() => board.ConsumeAsync(job, "conductor-2"));

        Assert.Contains("conductor-1", ex.Message);
        Assert.Contains("conductor-2", ex.Message);
        Assert.Equal("conductor-1", await board.FindOwnerAsync(job));
        await board.ConsumeAsync(job, "conductor-1");
    });

    [Fact]
    public Task ConsumeAbandonTrash_UnclaimedOrUnknownJob_ThrowNotFound() => RunAsync(async board =>
    {
        var job = await board.PostAsync(Posting());
        var ghost = job with { Id = Guid.NewGuid() };

        await Assert.ThrowsAsync<NotFoundException>(() => board.ConsumeAsync(job, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.AbandonAsync(job, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.TrashAsync(job, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.ConsumeAsync(ghost, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.AbandonAsync(ghost, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.TrashAsync(ghost, "conductor-1"));
        Assert.Equal(JobState.Unclaimed, (await board.GetJobAsync(job.Id))!.State);
    });

    [Fact]
    public Task AbandonAsync_ByTheOwner_MakesTheJobClaimableByAnyone() => RunAsync(async board =>
    {
        var job = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");

        await board.AbandonAsync(job, "conductor-1");

        Assert.Null(await board.FindOwnerAsync(job));
        Assert.Equal([job.Id], (await board.GetJobsAsync(JobState.Unclaimed)).Select(j => j.Id));
        var other = await OtherHostAsync();
        var reclaimed = await other.ClaimNextAsync("conductor-2");
        Assert.Equal(job.Id, reclaimed!.Id);
        Assert.Equal(2, reclaimed.ClaimCount);
        await Assert.ThrowsAsync<JobFailureException>(() => board.ConsumeAsync(job, "conductor-1"));
    });

    [Fact]
    public Task AbandonAndTrash_ByAnotherOwner_ThrowJobFailure() => RunAsync(async board =>
    {
        var job = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");

        await Assert.ThrowsAsync<JobFailureException>(() => board.AbandonAsync(job, "conductor-2"));
        await Assert.ThrowsAsync<JobFailureException>(() => board.TrashAsync(job, "conductor-2"));

        Assert.Equal("conductor-1", await board.FindOwnerAsync(job));
    });

    [Fact]
    public Task TrashAsync_ByTheOwner_PutsTheJobAsideForGood() => RunAsync(async board =>
    {
        var job = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");

        await board.TrashAsync(job, "conductor-1");

        Assert.Equal(JobState.Trashed, (await board.GetJobAsync(job.Id))!.State);
        Assert.Equal([job.Id], (await board.GetJobsAsync(JobState.Trashed)).Select(j => j.Id));
        Assert.Empty(await board.GetJobsAsync(JobState.Unclaimed));
        await Assert.ThrowsAsync<NotFoundException>(() => board.ClaimAsync(job, "conductor-1"));
        await Assert.ThrowsAsync<NotFoundException>(() => board.ConsumeAsync(job, "conductor-1"));
    });

    [Fact]
    public Task GetClaimLostToken_HeldClaim_IsNotCancelled_AndAnyoneElsesIs() => RunAsync(async board =>
    {
        var job = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");
        var unclaimed = await board.PostAsync(Posting("other"));

        Assert.False(board.GetClaimLostToken(job, "conductor-1").IsCancellationRequested);
        Assert.True(board.GetClaimLostToken(job, "conductor-2").IsCancellationRequested);
        Assert.True(board.GetClaimLostToken(unclaimed, "conductor-1").IsCancellationRequested);
        await board.ConsumeAsync(job, "conductor-1");
        Assert.True(board.GetClaimLostToken(job, "conductor-1").IsCancellationRequested);
    });

    // ------------------------------------------------------------------ waiting

    [Fact]
    public Task WaitForJobsAsync_ClaimableJobPresent_ReturnsTrueAtOnce() => RunAsync(async board =>
    {
        await board.PostAsync(Posting());
        var clock = Stopwatch.StartNew();

        Assert.True(await board.WaitForJobsAsync(TimeSpan.FromSeconds(30)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    });

    [Fact]
    public Task WaitForJobsAsync_NothingClaimable_ReturnsFalseWhenTheTimeoutPasses() => RunAsync(async board =>
    {
        var job = await board.PostAsync(Posting());
        await board.ClaimAsync(job, "conductor-1");
        var clock = Stopwatch.StartNew();

        Assert.False(await board.WaitForJobsAsync(TimeSpan.FromMilliseconds(300)));
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(250), $"returned after {clock.Elapsed}");
        Assert.False(await board.WaitForJobsAsync(TimeSpan.Zero));
    });

    [Fact]
    public Task WaitForJobsAsync_JobPostedElsewhereWhileWaiting_WakesLongBeforeTheTimeout() => RunAsync(async board =>
    {
        var other = await OtherHostAsync();
        await board.WaitForJobsAsync(TimeSpan.Zero); // get any listening set up before timing
        var clock = Stopwatch.StartNew();
        var waiting = board.WaitForJobsAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);

        await other.PostAsync(Posting());

        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
    });

    [Fact]
    public Task WaitForJobsAsync_JobAbandonedWhileWaiting_Wakes() => RunAsync(async board =>
    {
        var other = await OtherHostAsync();
        var job = await other.ClaimAsync(await other.PostAsync(Posting()), "conductor-1");
        await board.WaitForJobsAsync(TimeSpan.Zero);
        var waiting = board.WaitForJobsAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);

        await other.AbandonAsync(job, "conductor-1");

        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(20)));
    });

    [Fact]
    public Task WaitForJobsAsync_Cancelled_ThrowsOperationCanceled() => RunAsync(async board =>
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => board.WaitForJobsAsync(Timeout.InfiniteTimeSpan, cts.Token));
    });

    [Fact]
    public Task WaitForJobsAsync_NegativeTimeout_IsRefused() => RunAsync(async board =>
    {
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => board.WaitForJobsAsync(TimeSpan.FromSeconds(-2)));
    });
}
