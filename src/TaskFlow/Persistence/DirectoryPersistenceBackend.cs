using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using TaskFlow.States;

namespace TaskFlow.Persistence;

/// <summary>
/// A persistence backend that keeps JSON files in a directory (TaskFlow's <c>dir</c> backend): easy to inspect, no
/// server, fine for one host and modest flow sizes. Layout: <c>schema.json</c>, <c>logbooks/{id}.json</c>,
/// <c>flows/{logbook id}/{flow detail id}.json</c> (a flow detail with its atoms), <c>owners/{flow detail id}.json</c>
/// (the owner of a flow detail taken with <see cref="TakeOwnershipAsync"/>: <c>{"owner":…,"epoch":…}</c>, since schema
/// version 2). Every file is replaced atomically
/// (write a temporary file, fsync it, rename it over the old one, fsync the directory), so a crash leaves either
/// the old or the new file, never a half-written one. Writers serialize on an exclusive lock file
/// (<c>.lock</c>), which also covers other processes and other instances on the same directory.
/// </summary>
/// <remarks>Each atom save rewrites its flow detail's file, so the cost of a save grows with the flow's size. Fenced
/// writes check the owner's file under the same lock as the write. Version 1 stores (no owners) are upgraded in place.</remarks>
public sealed class DirectoryPersistenceBackend : IFencedPersistenceBackend, IFencedStore
{
    /// <summary>The schema version this code writes and the newest it reads (2: flow detail owners).</summary>
    public const int SchemaVersion = 2;

    private const string TempSuffix = ".tmp";
    private const string TrashPrefix = ".deleting-";

    private readonly string _root;
    private readonly string _logBooksDir;
    private readonly string _flowsDir;
    private readonly string _ownersDir;
    private readonly string _schemaPath;
    private readonly string _lockPath;
    private readonly int _maxBytes;
    private readonly TimeSpan _lockTimeout;
    private readonly TimeProvider _timeProvider;
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private readonly SchemaGate _schema;
    private readonly ConcurrentDictionary<Guid, Guid> _flowLogBooks = new();
    private readonly DirectorySync _sync;
    private readonly bool _readOnly;
    private volatile bool _disposed;

    /// <summary>Creates a backend on the directory at <paramref name="path"/>.</summary>
    public DirectoryPersistenceBackend(string path)
        : this(new DirectoryPersistenceOptions { Path = path })
    {
    }

    /// <summary>Creates a backend with the given options.</summary>
    public DirectoryPersistenceBackend(DirectoryPersistenceOptions options)
        : this(options, DirectorySync.Posix)
    {
    }

    /// <summary>Creates a backend whose directory syncs go through <paramref name="sync"/> (tests inject failures or record the calls).</summary>
    internal DirectoryPersistenceBackend(DirectoryPersistenceOptions options, DirectorySync sync)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sync);
        _sync = sync;
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Path, nameof(options.Path));
        BackendSupport.CheckMaxDocumentBytes(options.MaxDocumentBytes);
        if (options.LockTimeout < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(options), options.LockTimeout, "LockTimeout must not be negative.");
        _root = System.IO.Path.GetFullPath(options.Path);
        _logBooksDir = System.IO.Path.Combine(_root, "logbooks");
        _flowsDir = System.IO.Path.Combine(_root, "flows");
        _ownersDir = System.IO.Path.Combine(_root, "owners");
        _schemaPath = System.IO.Path.Combine(_root, "schema.json");
        _lockPath = System.IO.Path.Combine(_root, ".lock");
        _maxBytes = options.MaxDocumentBytes;
        _lockTimeout = options.LockTimeout;
        _timeProvider = options.TimeProvider ?? TimeProvider.System;
        _readOnly = options.ReadOnly;
        _schema = new SchemaGate(_readOnly ? CheckSchemaAsync : EnsureSchemaCoreAsync);
    }

    /// <summary>The full path of the store's directory.</summary>
    public string Path => _root;

    /// <inheritdoc />
    public Task EnsureSchemaAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return _schema.RunAsync(cancellationToken);
    }

    private Task EnsureSchemaCoreAsync(CancellationToken cancellationToken) =>
        WithWriteLockAsync(async () =>
        {
            var version = await ReadSchemaVersionAsync(cancellationToken).ConfigureAwait(false);
            if (version > SchemaVersion)
                throw BackendSupport.SchemaTooNew($"directory store '{_root}'", version, SchemaVersion);
            CreateDirectoryDurably(_logBooksDir);
            CreateDirectoryDurably(_flowsDir);
            CreateDirectoryDurably(_ownersDir);
            if (version < SchemaVersion)
            {
                // Version 0 is an empty or new directory; version 1 had no owners directory, which is all version 2 adds.
                var marker = Encoding.UTF8.GetBytes($"{{\"version\":{SchemaVersion.ToString(CultureInfo.InvariantCulture)}}}");
                await WriteAtomicAsync(_schemaPath, marker, cancellationToken).ConfigureAwait(false);
            }
            RemoveLeftovers();
            return true;
        }, cancellationToken, ensureSchema: false);

    /// <summary>A read-only store is checked, never created or cleaned up.</summary>
    private async Task CheckSchemaAsync(CancellationToken cancellationToken)
    {
        const string nothing = "It was opened read-only: nothing was changed.";
        if (!Directory.Exists(_root))
            throw new PersistenceException($"There is no directory store at '{_root}': the directory does not exist. {nothing}");
        var version = await ReadSchemaVersionAsync(cancellationToken).ConfigureAwait(false);
        if (version == 0)
            throw new PersistenceException($"The directory '{_root}' is not a TaskFlow store: it has no schema.json. {nothing}");
        if (version > SchemaVersion)
            throw BackendSupport.SchemaTooNew($"directory store '{_root}'", version, SchemaVersion);
    }

    private async Task<int> ReadSchemaVersionAsync(CancellationToken cancellationToken)
    {
        if (!File.Exists(_schemaPath)) return 0;
        var bytes = await File.ReadAllBytesAsync(_schemaPath, cancellationToken).ConfigureAwait(false);
        try
        {
            using var document = JsonDocument.Parse(bytes);
            if (document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("version", out var v)
                && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var version) && version >= 1)
                return version;
        }
        catch (JsonException ex)
        {
            throw new PersistenceException($"The schema marker '{_schemaPath}' is not valid JSON ({ex.Message}); expected {{\"version\":{SchemaVersion}}}.", ex);
        }
        throw new PersistenceException($"The schema marker '{_schemaPath}' is malformed; expected {{\"version\":{SchemaVersion}}}.");
    }

    /// <summary>Removes temporary files and half-deleted directories left by a crash (the lock is held).</summary>
    private void RemoveLeftovers()
    {
        foreach (var temp in Directory.EnumerateFiles(_root, "*" + TempSuffix, SearchOption.AllDirectories))
            TryDelete(temp);
        foreach (var trash in Directory.EnumerateDirectories(_flowsDir, TrashPrefix + "*"))
            Directory.Delete(trash, recursive: true);
    }

    /// <inheritdoc />
    public Task SaveLogBookAsync(LogBook logBook, CancellationToken cancellationToken = default) => Writes.SaveLogBookAsync(logBook, null, cancellationToken);

    async Task IFencedStore.SaveLogBookAsync(LogBook logBook, Fence? fence, CancellationToken cancellationToken)
    {
        var data = BackendSupport.EncodeLogBook(logBook, _maxBytes);
        await WithWriteLockAsync(async () =>
        {
            await CheckFenceAsync(fence, OwnedPersistence.SaveLogBook, cancellationToken).ConfigureAwait(false);
            await WriteAtomicAsync(LogBookPath(logBook.Id), data, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<LogBook?> GetLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default)
    {
        await EnsureReadyAsync(cancellationToken).ConfigureAwait(false);
        return await ReadLogBookAsync(LogBookPath(logBookId), logBookId, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<LogBook>> ListLogBooksAsync(CancellationToken cancellationToken = default)
    {
        await EnsureReadyAsync(cancellationToken).ConfigureAwait(false);
        var books = new List<LogBook>();
        foreach (var (id, path) in GuidFiles(_logBooksDir))
            if (await ReadLogBookAsync(path, id, cancellationToken).ConfigureAwait(false) is { } book)
                books.Add(book);
        books.Sort((a, b) => BackendSupport.CompareCreated(a.CreatedAt, a.Id, b.CreatedAt, b.Id));
        return books;
    }

    /// <inheritdoc />
    public Task<bool> DeleteLogBookAsync(Guid logBookId, CancellationToken cancellationToken = default) =>
        WithWriteLockAsync(() =>
        {
            var bookPath = LogBookPath(logBookId);
            var existed = File.Exists(bookPath);
            // Take the flow details out of sight in one rename, then drop the book, then the files.
            var flowsDir = FlowsDirOf(logBookId);
            string? trash = null;
            if (Directory.Exists(flowsDir))
            {
                trash = System.IO.Path.Combine(_flowsDir, $"{TrashPrefix}{logBookId:N}-{Guid.NewGuid():N}");
                Directory.Move(flowsDir, trash);
                // Durable before the book goes: a crash must never bring back flow details whose logbook is gone.
                _sync.Flush(_flowsDir, $"moving '{flowsDir}' aside to delete it");
            }
            if (existed)
            {
                File.Delete(bookPath);
                _sync.Flush(_logBooksDir, $"deleting the logbook file '{bookPath}'");
            }
            if (trash is not null)
            {
                foreach (var (flowId, _) in GuidFiles(trash)) TryDelete(OwnerPath(flowId));
                Directory.Delete(trash, recursive: true);
            }
            foreach (var entry in _flowLogBooks.Where(e => e.Value == logBookId).ToList())
                _flowLogBooks.TryRemove(entry.Key, out _);
            return Task.FromResult(existed);
        }, cancellationToken);

    /// <inheritdoc />
    public Task SaveFlowDetailAsync(FlowDetail flowDetail, CancellationToken cancellationToken = default) => Writes.SaveFlowDetailAsync(flowDetail, null, cancellationToken);

    async Task IFencedStore.SaveFlowDetailAsync(FlowDetail flowDetail, Fence? fence, CancellationToken cancellationToken)
    {
        BackendSupport.EncodeFlowHeaderMetadata(flowDetail, _maxBytes);
        var batch = BackendSupport.EncodeAtoms(flowDetail.Id, flowDetail.Atoms, _maxBytes);
        await WithWriteLockAsync(async () =>
        {
            await CheckFenceAsync(fence, OwnedPersistence.SaveFlowDetail, cancellationToken).ConfigureAwait(false);
            if (!File.Exists(LogBookPath(flowDetail.LogBookId)))
                throw BackendSupport.LogBookNotFound(flowDetail.LogBookId, $"saving flow detail '{flowDetail.Name}' ({flowDetail.Id}) in it");
            var located = LocateFlow(flowDetail.Id);
            FlowDetail toWrite;
            if (located is { } existing)
            {
                if (existing.LogBookId != flowDetail.LogBookId)
                    throw BackendSupport.FlowInOtherLogBook(flowDetail, existing.LogBookId);
                var stored = await ReadFlowAsync(existing.Path, flowDetail.Id, existing.LogBookId, cancellationToken).ConfigureAwait(false)
                    ?? throw BackendSupport.FlowNotFound(flowDetail.Id);
                toWrite = flowDetail with { Atoms = Merge(stored, batch, flowDetail.Atoms) };
            }
            else
            {
                toWrite = flowDetail;
            }
            await WriteFlowAsync(toWrite, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<FlowDetail?> GetFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default)
    {
        await EnsureReadyAsync(cancellationToken).ConfigureAwait(false);
        return LocateFlow(flowDetailId) is { } located
            ? await ReadFlowAsync(located.Path, flowDetailId, located.LogBookId, cancellationToken).ConfigureAwait(false)
            : null;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<FlowDetail>> ListFlowDetailsAsync(Guid logBookId, CancellationToken cancellationToken = default)
    {
        await EnsureReadyAsync(cancellationToken).ConfigureAwait(false);
        if (!File.Exists(LogBookPath(logBookId)))
            throw BackendSupport.LogBookNotFound(logBookId, "listing its flow details");
        var flows = new List<FlowDetail>();
        foreach (var (id, path) in GuidFiles(FlowsDirOf(logBookId)))
            if (await ReadFlowAsync(path, id, logBookId, cancellationToken).ConfigureAwait(false) is { } flow)
                flows.Add(flow);
        flows.Sort((a, b) => BackendSupport.CompareCreated(a.CreatedAt, a.Id, b.CreatedAt, b.Id));
        return flows;
    }

    /// <inheritdoc />
    public Task<bool> DeleteFlowDetailAsync(Guid flowDetailId, CancellationToken cancellationToken = default) => Writes.DeleteFlowDetailAsync(flowDetailId, null, cancellationToken);

    Task<bool> IFencedStore.DeleteFlowDetailAsync(Guid flowDetailId, Fence? fence, CancellationToken cancellationToken) =>
        WithWriteLockAsync(async () =>
        {
            await CheckFenceAsync(fence, OwnedPersistence.DeleteFlowDetail, cancellationToken).ConfigureAwait(false);
            TryDelete(OwnerPath(flowDetailId));
            if (LocateFlow(flowDetailId) is not { } located) return false;
            File.Delete(located.Path);
            _sync.Flush(System.IO.Path.GetDirectoryName(located.Path)!, $"deleting flow detail file '{located.Path}'");
            _flowLogBooks.TryRemove(flowDetailId, out _);
            return true;
        }, cancellationToken);

    /// <inheritdoc />
    public Task UpdateFlowStateAsync(Guid flowDetailId, FlowState state, CancellationToken cancellationToken = default) => Writes.UpdateFlowStateAsync(flowDetailId, state, null, cancellationToken);

    async Task IFencedStore.UpdateFlowStateAsync(Guid flowDetailId, FlowState state, Fence? fence, CancellationToken cancellationToken)
    {
        BackendSupport.ValidateState(state);
        await WithWriteLockAsync(async () =>
        {
            await CheckFenceAsync(fence, OwnedPersistence.UpdateFlowState, cancellationToken).ConfigureAwait(false);
            var stored = await ReadLocatedFlowAsync(flowDetailId, cancellationToken).ConfigureAwait(false);
            await WriteFlowAsync(stored with { State = state, UpdatedAt = _timeProvider.GetUtcNow() }, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, CancellationToken cancellationToken = default) =>
        Writes.SaveAtomDetailsAsync(flowDetailId, atomDetails, null, cancellationToken);

    async Task IFencedStore.SaveAtomDetailsAsync(Guid flowDetailId, IReadOnlyList<AtomDetail> atomDetails, Fence? fence, CancellationToken cancellationToken)
    {
        var batch = BackendSupport.EncodeAtoms(flowDetailId, atomDetails, _maxBytes);
        await WithWriteLockAsync(async () =>
        {
            await CheckFenceAsync(fence, OwnedPersistence.SaveAtomDetails, cancellationToken).ConfigureAwait(false);
            var stored = await ReadLocatedFlowAsync(flowDetailId, cancellationToken).ConfigureAwait(false);
            var merged = stored with { Atoms = Merge(stored, batch, atomDetails), UpdatedAt = _timeProvider.GetUtcNow() };
            await WriteFlowAsync(merged, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task ClearAllAsync(CancellationToken cancellationToken = default) =>
        WithWriteLockAsync(() =>
        {
            foreach (var (_, path) in GuidFiles(_logBooksDir))
                File.Delete(path);
            foreach (var (_, path) in GuidFiles(_ownersDir))
                File.Delete(path);
            foreach (var dir in Directory.EnumerateDirectories(_flowsDir))
            {
                var trash = System.IO.Path.Combine(_flowsDir, $"{TrashPrefix}{Guid.NewGuid():N}");
                Directory.Move(dir, trash);
                Directory.Delete(trash, recursive: true);
            }
            _sync.Flush(_logBooksDir, "clearing the store");
            _sync.Flush(_flowsDir, "clearing the store");
            _sync.Flush(_ownersDir, "clearing the store");
            _flowLogBooks.Clear();
            return Task.FromResult(true);
        }, cancellationToken);

    /// <inheritdoc />
    public Task<IPersistenceBackend> TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken = default) =>
        OwnedPersistence.TakeAsync(this, this, flowDetailId, token, cancellationToken);

    Task IFencedStore.TakeOwnershipAsync(Guid flowDetailId, FencingToken token, CancellationToken cancellationToken) =>
        WithWriteLockAsync(async () =>
        {
            var stored = await ReadOwnerAsync(flowDetailId, cancellationToken).ConfigureAwait(false);
            if (stored is not null && stored.Epoch >= token.Epoch)
                throw new StaleOwnerException(flowDetailId, OwnedPersistence.TakeOwnership, token, stored);
            await WriteAtomicAsync(OwnerPath(flowDetailId), OwnerCodec.Encode(token), cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    /// <summary>Every write, with or without a fence.</summary>
    private IFencedStore Writes => this;

    /// <summary>Refuses a fenced write whose owner is no longer the stored one (the write lock is held).</summary>
    private async Task CheckFenceAsync(Fence? fence, string operation, CancellationToken cancellationToken)
    {
        if (fence is null) return;
        fence.Check(operation, await ReadOwnerAsync(fence.FlowDetailId, cancellationToken).ConfigureAwait(false));
    }

    private async Task<FencingToken?> ReadOwnerAsync(Guid flowDetailId, CancellationToken cancellationToken)
    {
        var path = OwnerPath(flowDetailId);
        return await ReadFileAsync(path, cancellationToken).ConfigureAwait(false) is { } bytes ? OwnerCodec.Decode(bytes, $"file '{path}'") : null;
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        if (_disposed) return ValueTask.CompletedTask;
        _disposed = true;
        _schema.Dispose();
        _writeGate.Dispose();
        return ValueTask.CompletedTask;
    }

    // ------------------------------------------------------------------ helpers

    private string LogBookPath(Guid id) => System.IO.Path.Combine(_logBooksDir, ModelCodec.FormatId(id) + ".json");

    private string FlowsDirOf(Guid logBookId) => System.IO.Path.Combine(_flowsDir, ModelCodec.FormatId(logBookId));

    private string OwnerPath(Guid flowId) => System.IO.Path.Combine(_ownersDir, ModelCodec.FormatId(flowId) + ".json");

    private string FlowPath(Guid logBookId, Guid flowId) => System.IO.Path.Combine(FlowsDirOf(logBookId), ModelCodec.FormatId(flowId) + ".json");

    private async ValueTask EnsureReadyAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        await _schema.EnsureAsync(cancellationToken).ConfigureAwait(false);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Where a flow detail's file is, or null. Flow details never move, so the logbook is cached.</summary>
    private (string Path, Guid LogBookId)? LocateFlow(Guid flowId)
    {
        if (_flowLogBooks.TryGetValue(flowId, out var cached))
        {
            var path = FlowPath(cached, flowId);
            if (File.Exists(path)) return (path, cached);
            _flowLogBooks.TryRemove(flowId, out _);
        }
        if (!Directory.Exists(_flowsDir)) return null;
        var fileName = ModelCodec.FormatId(flowId) + ".json";
        foreach (var dir in Directory.EnumerateDirectories(_flowsDir))
        {
            if (!Guid.TryParseExact(System.IO.Path.GetFileName(dir), "D", out var logBookId)) continue;
            var path = System.IO.Path.Combine(dir, fileName);
            if (!File.Exists(path)) continue;
            _flowLogBooks[flowId] = logBookId;
            return (path, logBookId);
        }
        return null;
    }

    private async Task<FlowDetail> ReadLocatedFlowAsync(Guid flowDetailId, CancellationToken cancellationToken) =>
        LocateFlow(flowDetailId) is { } located
            ? await ReadFlowAsync(located.Path, flowDetailId, located.LogBookId, cancellationToken).ConfigureAwait(false)
              ?? throw BackendSupport.FlowNotFound(flowDetailId)
            : throw BackendSupport.FlowNotFound(flowDetailId);

    private static List<(Guid Id, string Path)> GuidFiles(string dir)
    {
        var result = new List<(Guid, string)>();
        string[] paths;
        try { paths = Directory.GetFiles(dir, "*.json"); }
        catch (DirectoryNotFoundException) { return result; }
        foreach (var path in paths)
            if (Guid.TryParseExact(System.IO.Path.GetFileNameWithoutExtension(path), "D", out var id))
                result.Add((id, path));
        return result;
    }

    private static IReadOnlyList<AtomDetail> Merge(FlowDetail stored, IReadOnlyList<EncodedAtom> batch, IReadOnlyList<AtomDetail> incoming)
    {
        BackendSupport.CheckAgainstStored(stored.Id, batch, stored.Atoms.Select(a => new StoredAtomKey(a.Id, a.Name, a.Kind)));
        var merged = stored.Atoms.ToList();
        var index = new Dictionary<Guid, int>(merged.Count);
        for (var i = 0; i < merged.Count; i++) index[merged[i].Id] = i;
        foreach (var atom in incoming)
        {
            if (index.TryGetValue(atom.Id, out var position)) merged[position] = atom;
            else
            {
                index[atom.Id] = merged.Count;
                merged.Add(atom);
            }
        }
        return merged;
    }

    private async Task WriteFlowAsync(FlowDetail flow, CancellationToken cancellationToken)
    {
        var data = ModelCodec.Serialize(flow, ModelCodec.WriteFlowDetail, ModelCodec.Subject(flow), _maxBytes);
        await WriteAtomicAsync(FlowPath(flow.LogBookId, flow.Id), data, cancellationToken).ConfigureAwait(false);
        _flowLogBooks[flow.Id] = flow.LogBookId;
    }

    private async Task<byte[]?> ReadFileAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            var length = new FileInfo(path).Length;
            if (length > _maxBytes)
                throw new PersistenceException(
                    $"The file '{path}' is {length} bytes, more than the limit of {_maxBytes} bytes (MaxDocumentBytes). If it is legitimate, raise the limit.");
            return await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
    }

    private async Task<LogBook?> ReadLogBookAsync(string path, Guid expectedId, CancellationToken cancellationToken)
    {
        if (await ReadFileAsync(path, cancellationToken).ConfigureAwait(false) is not { } bytes) return null;
        var book = ModelCodec.Parse(bytes, _maxBytes, $"logbook {expectedId}", ModelCodec.ReadLogBook, $"file '{path}'");
        if (book.Id != expectedId)
            throw new PersistenceException($"The file '{path}' holds logbook {book.Id}, not {expectedId} as its name says; it was renamed or copied by hand.");
        return book;
    }

    private async Task<FlowDetail?> ReadFlowAsync(string path, Guid expectedId, Guid expectedLogBookId, CancellationToken cancellationToken)
    {
        if (await ReadFileAsync(path, cancellationToken).ConfigureAwait(false) is not { } bytes) return null;
        var flow = ModelCodec.Parse(bytes, _maxBytes, $"flow detail {expectedId}", ModelCodec.ReadFlowDetail, $"file '{path}'");
        if (flow.Id != expectedId || flow.LogBookId != expectedLogBookId)
            throw new PersistenceException(
                $"The file '{path}' holds flow detail {flow.Id} of logbook {flow.LogBookId}, not {expectedId} of logbook {expectedLogBookId} as its path says; it was moved or copied by hand.");
        return flow;
    }

    /// <summary>
    /// Writes a file so that readers and crashes only ever see the old or the new content, and the new content is on
    /// disk when this returns: the temporary file is fsynced, renamed over the target, and the directory fsynced (with
    /// every directory created on the way, see <see cref="CreateDirectoryDurably"/>). A failure of any step is a
    /// <see cref="PersistenceException"/> naming the file and the step.
    /// </summary>
    private async Task WriteAtomicAsync(string path, byte[] data, CancellationToken cancellationToken)
    {
        var dir = System.IO.Path.GetDirectoryName(path)!;
        CreateDirectoryDurably(dir);
        var temp = $"{path}.{Guid.NewGuid():N}{TempSuffix}";
        var step = $"writing the temporary file '{temp}'";
        try
        {
            await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.Asynchronous))
            {
                await stream.WriteAsync(data, cancellationToken).ConfigureAwait(false);
                step = $"fsyncing the temporary file '{temp}'";
                stream.Flush(flushToDisk: true);
            }
            step = $"renaming '{temp}' to '{path}'";
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new PersistenceException($"Could not save '{path}': {step} failed: {ex.Message} The previous content of the file is unchanged.", ex);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        _sync.Flush(dir, $"renaming the new '{path}' into place");
    }

    /// <summary>
    /// Creates <paramref name="dir"/> and any missing parent, and makes each new one durable: a new directory's entry
    /// lives in its parent, so the parent is fsynced after each creation (and the new directory itself, so what is
    /// later renamed into it has a synced home). Without this a power loss can drop a new logbook's directory,
    /// and with it the first file saved in it, although the save returned.
    /// </summary>
    private void CreateDirectoryDurably(string dir)
    {
        if (Directory.Exists(dir)) return;
        var missing = new Stack<string>();
        for (var d = dir; !string.IsNullOrEmpty(d) && !Directory.Exists(d); d = System.IO.Path.GetDirectoryName(d))
            missing.Push(d);
        while (missing.TryPop(out var d))
        {
            try
            {
                Directory.CreateDirectory(d);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new PersistenceException($"Could not create the directory '{d}' of the directory store '{_root}': {ex.Message}", ex);
            }
            _sync.Flush(d, $"creating the directory '{d}'");
            if (System.IO.Path.GetDirectoryName(d) is { Length: > 0 } parent)
                _sync.Flush(parent, $"creating the directory '{d}'");
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private async Task<T> WithWriteLockAsync<T>(Func<Task<T>> action, CancellationToken cancellationToken, bool ensureSchema = true)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (_readOnly) throw new PersistenceException($"The directory store '{_root}' was opened read-only: it cannot be written.");
        if (ensureSchema) await _schema.EnsureAsync(cancellationToken).ConfigureAwait(false);
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CreateDirectoryDurably(_root);
            using var fileLock = await AcquireFileLockAsync(cancellationToken).ConfigureAwait(false);
            return await action().ConfigureAwait(false);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    private async Task<FileStream> AcquireFileLockAsync(CancellationToken cancellationToken)
    {
        // Real time, not the injected clock: a test clock that stands still must not make the wait endless.
        var started = TimeProvider.System.GetTimestamp();
        while (true)
        {
            try
            {
                // FileShare.None is an exclusive lock (flock on Unix) that other processes and instances respect.
                return new FileStream(_lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (TimeProvider.System.GetElapsedTime(started) < _lockTimeout)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(10), cancellationToken).ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                throw new PersistenceException(
                    $"Could not lock the directory store '{_root}' within {_lockTimeout.TotalSeconds:0.#} s: another process or backend instance holds '{_lockPath}'. " +
                    "If no other process uses the store, check that the file is not locked by a stuck process.", ex);
            }
        }
    }

}
