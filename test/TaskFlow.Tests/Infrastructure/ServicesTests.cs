using System.Globalization;
using System.Net.Sockets;

namespace TaskFlow.Tests.Infrastructure;

/// <summary>
/// Smoke tests for the servers that scripts/services.sh starts (scripts/test.sh exports
/// TASKFLOW_POSTGRES and TASKFLOW_AMQP). Raw sockets only: this project takes no client library
/// dependency just to check that the servers answer.
/// </summary>
public sealed class ServicesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task PostgresAnswersOnTheConfiguredPort()
    {
        var connectionString = ServerVariable("TASKFLOW_POSTGRES");
        if (connectionString is null)
        {
            // xunit 2.9.3 has no dynamic skip: outside CI a missing server means there is nothing to check.
            return;
        }

        var (host, port) = ParsePostgresEndpoint(connectionString);
        using var cts = new CancellationTokenSource(Timeout);
        using var client = await ConnectAsync("TASKFLOW_POSTGRES", host, port, cts.Token);

        // SSLRequest (length 8, code 80877103): a PostgreSQL server answers with one byte, 'S' or 'N'.
        byte[] sslRequest = [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F];
        var stream = client.GetStream();
        await stream.WriteAsync(sslRequest, cts.Token);
        var reply = new byte[1];
        await stream.ReadExactlyAsync(reply, cts.Token);
        Assert.True(reply[0] is (byte)'S' or (byte)'N', $"{host}:{port} answered 0x{reply[0]:X2} to an SSLRequest; not PostgreSQL?");
    }

    [Fact]
    public async Task AmqpBrokerAnswersOnTheConfiguredPort()
    {
        var url = ServerVariable("TASKFLOW_AMQP");
        if (url is null)
        {
            // xunit 2.9.3 has no dynamic skip: outside CI a missing server means there is nothing to check.
            return;
        }

        var uri = new Uri(url);
        var port = uri.IsDefaultPort ? 5672 : uri.Port;
        using var cts = new CancellationTokenSource(Timeout);
        using var client = await ConnectAsync("TASKFLOW_AMQP", uri.Host, port, cts.Token);

        // AMQP 0-9-1 protocol header: the broker replies with a method frame (type 1, Connection.Start).
        byte[] header = [(byte)'A', (byte)'M', (byte)'Q', (byte)'P', 0, 0, 9, 1];
        var stream = client.GetStream();
        await stream.WriteAsync(header, cts.Token);
        var reply = new byte[1];
        await stream.ReadExactlyAsync(reply, cts.Token);
        Assert.True(reply[0] == 1, $"{uri.Host}:{port} answered 0x{reply[0]:X2} to the AMQP header; not an AMQP 0-9-1 broker?");
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Port=5440;Username=taskflow;Password=taskflow;Database=taskflow", "127.0.0.1", 5440)]
    [InlineData("server = db.local ; PORT=6543", "db.local", 6543)]
    [InlineData("Host=db.local", "db.local", 5432)]
    public void ParsesHostAndPortFromAConnectionString(string connectionString, string host, int port)
    {
        Assert.Equal((host, port), ParsePostgresEndpoint(connectionString));
    }

    /// <summary>The variable's value; null when unset outside CI; a failed test when unset under CI=true.</summary>
    private static string? ServerVariable(string name)
    {
        var value = Environment.GetEnvironmentVariable(name);
        if (!string.IsNullOrWhiteSpace(value))
        {
            return value;
        }

        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Fail($"{name} is not set, and under CI=true the server tests must run. "
                + "Run the tests with scripts/test.sh (it starts the servers), or eval \"$(scripts/services.sh start)\" first.");
        }

        return null;
    }

    /// <summary>Host and port of an Npgsql-style "Key=Value;..." connection string (keys case-insensitive).</summary>
    private static (string Host, int Port) ParsePostgresEndpoint(string connectionString)
    {
        var host = "localhost";
        var port = 5432;
        foreach (var part in connectionString.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                continue;
            }

            var key = part[..eq].Trim();
            var value = part[(eq + 1)..].Trim();
            if (key.Equals("Host", StringComparison.OrdinalIgnoreCase) || key.Equals("Server", StringComparison.OrdinalIgnoreCase))
            {
                host = value;
            }
            else if (key.Equals("Port", StringComparison.OrdinalIgnoreCase))
            {
                port = int.Parse(value, NumberStyles.Integer, CultureInfo.InvariantCulture);
            }
        }

        return (host, port);
    }

    private static async Task<TcpClient> ConnectAsync(string variable, string host, int port, CancellationToken cancellationToken)
    {
        var client = new TcpClient();
        try
        {
            await client.ConnectAsync(host, port, cancellationToken);
            return client;
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            client.Dispose();
            Assert.Fail($"{variable}: cannot connect to {host}:{port} ({ex.GetType().Name}: {ex.Message}). Is the server running? See scripts/services.sh status.");
            throw; // not reached: Assert.Fail throws
        }
    }
}
