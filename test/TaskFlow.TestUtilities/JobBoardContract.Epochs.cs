using TaskFlow.Failures;
using TaskFlow.Jobs;

namespace TaskFlow.TestUtilities;

/// <summary>Claim epochs: a snapshot of a claim names that claim, and a later claim of the job fences it out.</summary>
public abstract partial class JobBoardContract
{
    [Fact]
    public Task ClaimEpoch_ASnapshotOfAnEarlierClaim_CannotFinishTheJob_EvenForTheSameOwner() => RunAsync(async board =>
    {
        var posted = await board.PostAsync(Posting());
        var first = await board.ClaimAsync(posted, "conductor-1");
        await board.AbandonAsync(first, "conductor-1");
        var second = (await board.ClaimNextAsync("conductor-1"))!;
        Assert.Equal((1, 2), (first.ClaimCount, second.ClaimCount));

        foreach (var finish in new Func<Job, string, CancellationToken, Task>[] { board.ConsumeAsync, board.AbandonAsync, board.TrashAsync })
        {
            var ex = await Assert.ThrowsAsync<JobFailureException>(() => finish(first, "conductor-1", default));
            Assert.Contains("epoch 1", ex.Message);
            Assert.Contains("epoch 2", ex.Message);
        }
        Assert.True(board.GetClaimLostToken(first, "conductor-1").IsCancellationRequested);
        Assert.False(board.GetClaimLostToken(second, "conductor-1").IsCancellationRequested);

        // The later claim is untouched and finishes the job.
        var read = (await board.GetJobAsync(posted.Id))!;
        Assert.Equal((JobState.Claimed, "conductor-1", 2), (read.State, read.Owner, read.ClaimCount));
        await board.ConsumeAsync(second, "conductor-1");
        Assert.Equal(JobState.Complete, (await board.GetJobAsync(posted.Id))!.State);
        // After the job finished, the old claim is still refused as an old claim.
        await Assert.ThrowsAsync<JobFailureException>(() => board.ConsumeAsync(first, "conductor-1"));
    });

    [Fact]
    public Task ClaimEpoch_ASnapshotOfAnotherOwnersLaterClaim_IsRefusedNamingTheNewOwner() => RunAsync(async board =>
    {
        var first = await board.ClaimAsync(await board.PostAsync(Posting()), "conductor-1");
        await board.AbandonAsync(first, "conductor-1");
        var second = await board.ClaimAsync(first, "conductor-2");

        var ex = await Assert.ThrowsAsync<JobFailureException>(() => board.ConsumeAsync(first, "conductor-1"));

        Assert.Contains("conductor-2", ex.Message);
        await board.ConsumeAsync(second, "conductor-2");
    });

    [Fact]
    public Task ClaimEpoch_SnapshotsThatShowNoClaim_AreCheckedByOwnerOnly_AndAFreshReadOfTheClaimWorks() => RunAsync(async board =>
    {
        var posted = await board.PostAsync(Posting());
        var claimed = await board.ClaimAsync(posted, "conductor-1");
        await board.AbandonAsync(posted, "conductor-1"); // the snapshot as posted: owner check only
        var unclaimed = (await board.GetJobAsync(posted.Id))!;
        await board.ClaimAsync(unclaimed, "conductor-1");
        await board.AbandonAsync(unclaimed, "conductor-1"); // read while unclaimed: owner check only
        await board.ClaimAsync(posted, "conductor-1");

        var reread = (await board.GetJobAsync(posted.Id))!;
        Assert.Equal(3, reread.ClaimCount);
        await Assert.ThrowsAsync<JobFailureException>(() => board.ConsumeAsync(claimed, "conductor-1"));
        await board.ConsumeAsync(reread, "conductor-1");
    });
}
