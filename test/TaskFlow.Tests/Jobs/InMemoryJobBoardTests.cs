using TaskFlow.Jobs;
using TaskFlow.TestUtilities;

namespace TaskFlow.Tests.Jobs;

public sealed class InMemoryJobBoardTests : JobBoardContract
{
    protected override Task<IJobBoard?> CreateBoardAsync() => Task.FromResult<IJobBoard?>(new InMemoryJobBoard("tests"));

    protected override Task<IJobBoard> OpenSameBoardAsync() => Task.FromResult(Board!);

    [Fact]
    public async Task DisposeAsync_WakesWaitersAndRefusesFurtherUse()
    {
        var board = new InMemoryJobBoard();
        var waiting = board.WaitForJobsAsync(TimeSpan.FromSeconds(30));

        await board.DisposeAsync();

        Assert.False(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => board.PostAsync(Posting()));
    }
}
