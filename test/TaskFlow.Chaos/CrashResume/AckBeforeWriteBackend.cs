using System.Threading.Channels;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>
/// A deliberately broken store for the crash-resume self-test: it acknowledges atom and flow-state saves at once and
/// writes them a little later, in order, from a background loop (write-behind). A kill after the acknowledgement and
/// before the write loses a save the engine was told had happened; the chaos must notice.
/// </summary>
internal sealed class AckBeforeWriteBackend : DelegatingBackend
{
    private readonly Channel<Func<Task>> _writes = Channel.CreateUnbounded<Func<Task>>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;
    private readonly TimeSpan _lag;

    public AckBeforeWriteBackend(IPersistenceBackend inner, TimeSpan lag) : base(inner)
    {
        _lag = lag;
        _writer = Task.Run(async () =>
        {
            await foreach (var write in _writes.Reader.ReadAllAsync())
            {
                await Task.Delay(_lag).ConfigureAwait(false);
                await write().ConfigureAwait(false);
            }
        });
    }

    public override Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default)
    {
        var copy = atomDetails.ToArray();
        _writes.Writer.TryWrite(() => Inner.SaveAtomDetailsAsync(flowDetailId, copy, CancellationToken.None));
        return Task.CompletedTask;
    }

    public override Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default)
    {
        _writes.Writer.TryWrite(() => Inner.UpdateFlowStateAsync(flowDetailId, state, CancellationToken.None));
        return Task.CompletedTask;
    }

    public override async ValueTask DisposeAsync()
    {
        _writes.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
        await Inner.DisposeAsync().ConfigureAwait(false);
    }
}
