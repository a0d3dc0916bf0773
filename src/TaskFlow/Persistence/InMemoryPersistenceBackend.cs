using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// A persistence backend that keeps everything in this process (TaskFlow's <c>memory</c> backend): for tests, and
/// for runs that need resumption within one process only. It stores serialized copies, so it applies exactly the
/// validation and JSON contract of the durable backends and callers can never alter what is stored.
/// Thread-safe. The data is lost when the instance is dropped. Fenced writes (<see cref="IFencedPersistenceBackend"/>)
/// check the owner under the same lock as the write.
/// </summary>
public sealed class InMemoryPersistenceBackend : IFencedPersistenceBackend, IFencedStore
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _timeProvider;
    private readonly Dictionary<Guid, byte[]> _logBooks = [];
    private readonly Dictionary<Guid, StoredFlow> _flows = [];
    // The owner of each flow detail that was ever taken (kept before the flow detail exists, deleted with it).
    private readonly Dictionary<Guid, FencingToken> _owners = [];
    private bool _disposed;

    /// <summary>Creates an empty backend.</summary>
    /// <param name="timeProvider">The clock for <c>UpdatedAt</c> stamps; <see cref="TimeProvider.System"/> when null.</param>
    public InMemoryPersistenceBackend(TimeProvider? timeProvider = null)
    {
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    private const int MaxBytes = PersistenceJson.DefaultMaxDocumentBytes;

    /// <inheritdoc />
    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate) ThrowIfDisposed();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) => Writes.SaveLogBookAsync(logBook, null, cancellationToken);

    Task IFencedStore.SaveLogBookAsync(LogBook logBook, Fence? fence, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var data = BackendSupport.EncodeLogBook(logBook, MaxBytes);
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckLocked(fence, OwnedPersistence.SaveLogBook);
            _logBooks[logBook.Id] = data;
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        byte[]? data;
        lock (_gate)
        {
            ThrowIfDisposed();
            _logBooks.TryGetValue(logBookId, out data);
        }
        return Task.FromResult(data is null ? null : ReadLogBook(data));
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        byte[][] all;
        lock (_gate)
        {
            ThrowIfDisposed();
            all = [.. _logBooks.Values];
        }
        var books = all.Select(ReadLogBook).ToList();
        books.Sort((a, b) => BackendSupport.CompareCreated(a.CreatedAt, a.Id, b.CreatedAt, b.Id));
        return Task.FromResult<IReadOnlyList<LogBook>>(books);
    }

    /// <inheritdoc />
    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!_logBooks.Remove(logBookId)) return Task.FromResult(false);
            foreach (var flowId in _flows.Where(f => f.Value.LogBookId == logBookId).Select(f => f.Key).ToList())
            {
                _flows.Remove(flowId);
                _owners.Remove(flowId);
            }
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) => Writes.SaveFlowDetailAsync(flowDetail, null, cancellationToken);

    Task IFencedStore.SaveFlowDetailAsync(FlowDetail flowDetail, Fence? fence, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        BackendSupport.EncodeFlowHeaderMetadata(flowDetail, MaxBytes);
        var header = flowDetail with { Atoms = [] };
        var atoms = BackendSupport.EncodeAtoms(flowDetail.Id, flowDetail.Atoms, MaxBytes);
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckLocked(fence, OwnedPersistence.SaveFlowDetail);
            if (!_logBooks.ContainsKey(flowDetail.LogBookId))
                throw BackendSupport.LogBookNotFound(flowDetail.LogBookId, $"saving flow detail '{flowDetail.Name}' ({flowDetail.Id}) in it");
            if (_flows.TryGetValue(flowDetail.Id, out var stored))
            {
                if (stored.LogBookId != flowDetail.LogBookId)
                    throw BackendSupport.FlowInOtherLogBook(flowDetail, stored.LogBookId);
                stored.CheckAndApply(atoms);
                stored.Header = header;
            }
            else
            {
                var flow = new StoredFlow(header);
                flow.CheckAndApply(atoms);
                _flows[flowDetail.Id] = flow;
            }
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Snapshot? snapshot;
        lock (_gate)
        {
            ThrowIfDisposed();
            snapshot = _flows.TryGetValue(flowDetailId, out var flow) ? flow.Snapshot() : null;
        }
        return Task.FromResult(snapshot?.Read());
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        List<Snapshot> snapshots;
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!_logBooks.ContainsKey(logBookId))
                throw BackendSupport.LogBookNotFound(logBookId, "listing its flow details");
            snapshots = _flows.Values.Where(f => f.LogBookId == logBookId).Select(f => f.Snapshot()).ToList();
        }
        var flows = snapshots.Select(s => s.Read()).ToList();
        flows.Sort((a, b) => BackendSupport.CompareCreated(a.CreatedAt, a.Id, b.CreatedAt, b.Id));
        return Task.FromResult<IReadOnlyList<FlowDetail>>(flows);
    }

    /// <inheritdoc />
    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => Writes.DeleteFlowDetailAsync(flowDetailId, null, cancellationToken);

    Task<bool> IFencedStore.DeleteFlowDetailAsync(Guid flowDetailId, Fence? fence, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckLocked(fence, OwnedPersistence.DeleteFlowDetail);
            _owners.Remove(flowDetailId);
            return Task.FromResult(_flows.Remove(flowDetailId));
        }
    }

    /// <inheritdoc />
    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) => Writes.UpdateFlowStateAsync(flowDetailId, state, null, cancellationToken);

    Task IFencedStore.UpdateFlowStateAsync(Guid flowDetailId, FlowState state, Fence? fence, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        BackendSupport.ValidateState(state);
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckLocked(fence, OwnedPersistence.UpdateFlowState);
            if (!_flows.TryGetValue(flowDetailId, out var flow)) throw BackendSupport.FlowNotFound(flowDetailId);
            flow.Header = flow.Header with { State = state, UpdatedAt = _timeProvider.GetUtcNow() };
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        Writes.SaveAtomDetailsAsync(flowDetailId, atomDetails, null, cancellationToken);

    Task IFencedStore.SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, Fence? fence, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var atoms = BackendSupport.EncodeAtoms(flowDetailId, atomDetails, MaxBytes);
        lock (_gate)
        {
            ThrowIfDisposed();
            CheckLocked(fence, OwnedPersistence.SaveAtomDetails);
            if (!_flows.TryGetValue(flowDetailId, out var flow)) throw BackendSupport.FlowNotFound(flowDetailId);
            flow.CheckAndApply(atoms);
            flow.Header = flow.Header with { UpdatedAt = _timeProvider.GetUtcNow() };
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task ClearAllAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            _logBooks.Clear();
            _flows.Clear();
            _owners.Clear();
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<IPersistenceBackend> TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken = default) =>
        OwnedPersistence.TakeAsync(this, this, flowDetailId, token, cancellationToken);

    Task IFencedStore.TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfDisposed();
            if (_owners.TryGetValue(flowDetailId, out var stored) && stored.Epoch >= token.Epoch)
                throw new StaleOwnerException(flowDetailId, OwnedPersistence.TakeOwnership, token, stored);
            _owners[flowDetailId] = token;
        }
        return Task.CompletedTask;
    }

    /// <summary>Every write, with or without a fence.</summary>
    private IFencedStore Writes => this;

    /// <summary>Refuses a fenced write whose owner is no longer the stored one (the lock is held).</summary>
    private void CheckLocked(Fence? fence, string operation)
    {
        if (fence is not null) fence.Check(operation, _owners.GetValueOrDefault(fence.FlowDetailId));
    }

    /// <summary>Drops the stored data; the instance cannot be used afterwards.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _disposed = true;
            _logBooks.Clear();
            _flows.Clear();
            _owners.Clear();
        }
        return ValueTask.CompletedTask;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private static LogBook ReadLogBook(byte[] data) => ModelCodec.Parse(data, MaxBytes, "logbook", ModelCodec.ReadLogBook);

    private sealed record Snapshot(FlowDetail Header, EncodedAtom[] Atoms)
    {
        public FlowDetail Read()
        {
            var subject = ModelCodec.Subject(Header);
            var atoms = Atoms.Select(a => BackendSupport.ReadAtomColumn(a.Data, ModelValues.Describe("atom", a.Name, a.Id), subject, MaxBytes)).ToList();
            return Header with { Atoms = atoms };
        }
    }

    /// <summary>A flow detail: header record (immutable, no atoms) plus serialized atoms in first-save order.</summary>
    private sealed class StoredFlow(FlowDetail header)
    {
        private readonly List<EncodedAtom> _atoms = [];
        private readonly Dictionary<Guid, int> _index = [];
        private readonly Dictionary<string, int> _byName = new(StringComparer.Ordinal);

        private static StoredAtomKey Key(EncodedAtom a) => new(a.Id, a.Name, a.Kind);

        public FlowDetail Header { get; set; } = header;

        public Guid LogBookId => Header.LogBookId;

        public Snapshot Snapshot() => new(Header, [.. _atoms]);

        public void CheckAndApply(IReadOnlyList<EncodedAtom> batch)
        {
            // Only the stored atoms the batch touches (same id or same name) can conflict: looking just those up keeps
            // a save proportional to the batch, not to the flow (a save per task would otherwise make runs quadratic).
            var touched = new List<StoredAtomKey>(batch.Count);
            foreach (var atom in batch)
            {
                if (_index.TryGetValue(atom.Id, out var i)) touched.Add(Key(_atoms[i]));
                if (_byName.TryGetValue(atom.Name, out var j)) touched.Add(Key(_atoms[j]));
            }
            BackendSupport.CheckAgainstStored(Header.Id, batch, touched);
            foreach (var atom in batch)
            {
                if (_index.TryGetValue(atom.Id, out var position)) _atoms[position] = atom;
                else
                {
                    _index[atom.Id] = _atoms.Count;
                    _byName[atom.Name] = _atoms.Count;
                    _atoms.Add(atom);
                }
            }
        }
    }
}
