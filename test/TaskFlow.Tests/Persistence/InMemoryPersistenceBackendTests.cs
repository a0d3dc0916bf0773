using TaskFlow.Persistence;
using TaskFlow.TestUtilities;

namespace TaskFlow.Tests.Persistence;

public sealed class InMemoryPersistenceBackendTests : PersistenceBackendContract
{
    protected override Task<IPersistenceBackend?> CreateBackendAsync(TimeProvider clock) =>
        Task.FromResult<IPersistenceBackend?>(new InMemoryPersistenceBackend(clock));

    [Fact]
    public async Task AnyOperation_AfterDispose_ThrowsObjectDisposed()
    {
        var backend = new InMemoryPersistenceBackend();
        await backend.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => backend.ListLogBooksAsync());
    }
}
