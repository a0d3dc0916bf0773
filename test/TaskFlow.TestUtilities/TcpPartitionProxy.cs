using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace TaskFlow.TestUtilities;

/// <summary>
/// A TCP proxy on loopback that can partition everything going through it: while partitioned, what either side sends is
/// accepted and buffered here, not delivered; <see cref="Heal"/> delivers it all, in order. Put it in front of one
/// host's database connections to reproduce a network partition in the middle of a save: <see cref="ArmOnMarker"/>
/// partitions at the first chunk a client sends that contains a marker, before that chunk reaches the server.
/// </summary>
/// <remarks>Shared by the test projects and the chaos harness (linked into it as source). Test code only.</remarks>
public sealed class TcpPartitionProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly string _upstreamHost;
    private readonly int _upstreamPort;
    private readonly CancellationTokenSource _closing = new();
    private readonly Lock _gate = new();
    private readonly List<TcpClient> _sockets = [];
    private readonly Task _acceptLoop;
    private TaskCompletionSource _open = Opened();
    private byte[]? _marker;
    private int _skip;
    private TaskCompletionSource _partitioned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _heldBytes;

    /// <summary>Starts a proxy to <paramref name="upstreamHost"/>:<paramref name="upstreamPort"/> on a free loopback port.</summary>
    public TcpPartitionProxy(string upstreamHost, int upstreamPort)
    {
        _upstreamHost = upstreamHost;
        _upstreamPort = upstreamPort;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>The proxy's port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>Whether the proxy is partitioned now.</summary>
    public bool IsPartitioned { get { lock (_gate) return !_open.Task.IsCompleted; } }

    /// <summary>How many partitions began so far.</summary>
    public int Partitions { get; private set; }

    /// <summary>Bytes held back during the current (or last) partition, both directions.</summary>
    public long HeldBytes => Interlocked.Read(ref _heldBytes);

    /// <summary>Completes when the next partition begins (by <see cref="Partition"/> or a marker).</summary>
    public Task Partitioned { get { lock (_gate) return _partitioned.Task; } }

    /// <summary>An Npgsql connection string like <paramref name="connectionString"/> that goes through the proxy (no pooling surprises: pooling stays as given).</summary>
    public string Rewrite(string connectionString)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { Host = "127.0.0.1", Port = Port };
        return builder.ConnectionString;
    }

    /// <summary>
    /// Partitions at the first chunk a client sends that contains <paramref name="marker"/> (UTF-8) after
    /// <paramref name="skip"/> such chunks went through, holding that chunk back.
    /// </summary>
    public void ArmOnMarker(string marker, int skip = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        lock (_gate)
        {
            _marker = System.Text.Encoding.UTF8.GetBytes(marker);
            _skip = skip;
        }
    }

    /// <summary>Forgets a marker given to <see cref="ArmOnMarker"/> that has not matched yet.</summary>
    public void Disarm()
    {
        lock (_gate) _marker = null;
    }

    /// <summary>Partitions now.</summary>
    public void Partition()
    {
        lock (_gate) PartitionLocked();
    }

    /// <summary>Ends the partition: everything held back is delivered, in order, and traffic flows again.</summary>
    public void Heal()
    {
        lock (_gate) _open.TrySetResult();
    }

    private void PartitionLocked()
    {
        _marker = null;
        if (!_open.Task.IsCompleted) return;
        _open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Exchange(ref _heldBytes, 0);
        Partitions++;
        _partitioned.TrySetResult();
        _partitioned = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private static TaskCompletionSource Opened()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }

    private async Task AcceptLoopAsync()
    {
        var token = _closing.Token;
        while (!token.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(token);
            }
            catch (Exception) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            _ = Task.Run(() => ServeAsync(client, token));
        }
    }

    private async Task ServeAsync(TcpClient client, CancellationToken token)
    {
        using var upstream = new TcpClient();
        using (client)
        {
            try
            {
                client.NoDelay = true;
                upstream.NoDelay = true;
                await upstream.ConnectAsync(_upstreamHost, _upstreamPort, token);
                lock (_gate)
                {
                    _sockets.Add(client);
                    _sockets.Add(upstream);
                }
                using var done = CancellationTokenSource.CreateLinkedTokenSource(token);
                var toServer = PumpAsync(client.GetStream(), upstream.GetStream(), fromClient: true, done);
                var toClient = PumpAsync(upstream.GetStream(), client.GetStream(), fromClient: false, done);
                await Task.WhenAny(toServer, toClient);
                done.Cancel();
                await Task.WhenAll(toServer, toClient);
            }
            catch (Exception) when (token.IsCancellationRequested)
            {
            }
            catch (SocketException)
            {
            }
            finally
            {
                lock (_gate)
                {
                    _sockets.Remove(client);
                    _sockets.Remove(upstream);
                }
            }
        }
    }

    /// <summary>Reads into a queue without pause (a partitioned peer's writes still succeed) and writes only while not partitioned.</summary>
    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool fromClient, CancellationTokenSource done)
    {
        var chunks = Channel.CreateUnbounded<(byte[] Data, int Length)>();
        var reader = Task.Run(async () =>
        {
            var tail = Array.Empty<byte>();
            try
            {
                while (true)
                {
                    var buffer = new byte[16 * 1024];
                    var n = await from.ReadAsync(buffer, done.Token);
                    if (n == 0) break;
                    lock (_gate)
                    {
                        if (fromClient && _marker is { } marker && Contains(tail, buffer.AsSpan(0, n), marker) && _skip-- == 0) PartitionLocked();
                        if (!_open.Task.IsCompleted) Interlocked.Add(ref _heldBytes, n);
                        if (fromClient && _marker is { } m) tail = buffer.AsSpan(Math.Max(0, n - m.Length + 1), Math.Min(n, m.Length - 1)).ToArray();
                        chunks.Writer.TryWrite((buffer, n));
                    }
                }
            }
            catch (Exception) when (done.IsCancellationRequested)
            {
            }
            catch (IOException)
            {
            }
            finally
            {
                chunks.Writer.TryComplete();
            }
        });
        try
        {
            await foreach (var (data, length) in chunks.Reader.ReadAllAsync(done.Token))
            {
                Task open;
                lock (_gate) open = _open.Task;
                await open.WaitAsync(done.Token);
                await to.WriteAsync(data.AsMemory(0, length), done.Token);
            }
        }
        catch (Exception) when (done.IsCancellationRequested)
        {
        }
        catch (IOException)
        {
        }
        finally
        {
            // A side that closed (or failed) ends the connection; the other pump then ends too.
            done.Cancel();
        }
        await reader;
    }

    private static bool Contains(byte[] tail, ReadOnlySpan<byte> chunk, byte[] marker)
    {
        if (chunk.IndexOf(marker) >= 0) return true;
        if (tail.Length == 0) return false;
        var joined = new byte[tail.Length + Math.Min(chunk.Length, marker.Length - 1)];
        tail.CopyTo(joined, 0);
        chunk[..(joined.Length - tail.Length)].CopyTo(joined.AsSpan(tail.Length));
        return joined.AsSpan().IndexOf(marker) >= 0;
    }

    /// <summary>Heals (so nothing waits forever), stops accepting and closes every connection.</summary>
    public async ValueTask DisposeAsync()
    {
        Heal();
        await _closing.CancelAsync();
        _listener.Stop();
        TcpClient[] open;
        lock (_gate) open = [.. _sockets];
        foreach (var socket in open) socket.Dispose();
        try { await _acceptLoop; } catch (Exception) { }
        _closing.Dispose();
    }
}
