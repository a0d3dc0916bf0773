using Npgsql;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Tests.Infrastructure;

namespace TaskFlow.Cli.Tests.Console;

/// <summary>No password from a connection string is ever printed: in errors, with --verbose, or in normal output.</summary>
public sealed class PasswordMaskingTests
{
    /// <summary>
    /// TASKFLOW_POSTGRES (set by scripts/test.sh); null on a developer machine without a server, where the tests that
    /// need one return early (xunit 2 cannot skip at run time). Under CI=true a missing server is a failure.
    /// </summary>
    private static string? PostgresConnectionString
    {
        get
        {
            var value = Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES");
            if (!string.IsNullOrWhiteSpace(value)) return value;
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                throw new InvalidOperationException("TASKFLOW_POSTGRES is not set but CI=true: the PostgreSQL tests of the CLI need a server (scripts/services.sh).");
            return null;
        }
    }

    [Fact]
    public async Task WrongPassword_StoreErrorNeverShowsThePassword()
    {
        if (PostgresConnectionString is not { } connection) return;
        var builder = new NpgsqlConnectionStringBuilder(connection) { Password = "Wr0ng-S3cret-" + Guid.NewGuid().ToString("N")[..8], Timeout = 5 };

        var result = await CliRunner.RunAsync("books", "list", "--verbose", "--db", builder.ConnectionString);

        Assert.Equal(ExitCodes.StoreError, result.ExitCode);
        // First the warning that the password is on the command line, then the error.
        Assert.StartsWith("warning: --db holds a password on the command line", result.Error, StringComparison.Ordinal);
        Assert.StartsWith("error: ", result.Error.Split('\n')[1], StringComparison.Ordinal);
        Assert.DoesNotContain(builder.Password, result.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnparsableConnectionString_IsAUsageErrorThatDoesNotEchoIt()
    {
        const string secret = "pa55-in-a-broken-string";
        var result = await CliRunner.RunAsync("books", "list", "--db", $"Host=db;Password='{secret};Username=x");

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.DoesNotContain(secret, result.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PersistedRunOnPostgreSql_OutputNamesTheStoreWithoutThePassword()
    {
        if (PostgresConnectionString is not { } connection) return;
        var schema = "cli_test_" + Guid.NewGuid().ToString("N")[..12];
        var password = new NpgsqlConnectionStringBuilder(connection).Password!;
        try
        {
            var run = await CliRunner.RunAsync("run", "--assembly", Repo.FlowsDll, "--factory", "Calculator.Create", "--store", "x=3", "--store", "y=4",
                "--db", connection, "--schema", schema);
            Assert.True(run.ExitCode == 0, run.ToString());
            var list = await CliRunner.RunAsync("books", "list", "--db", connection, "--schema", schema);
            Assert.True(list.ExitCode == 0, list.ToString());

            var builder = new NpgsqlConnectionStringBuilder(connection);
            Assert.StartsWith($"PostgreSQL {builder.Host}:{builder.Port}/", list.Output, StringComparison.Ordinal);
            Assert.Contains($"(schema {schema}): 1 logbook, 1 flow detail", list.Output, StringComparison.Ordinal);
            Assert.Contains("| calculate ", list.Output, StringComparison.Ordinal);
            // Not even where the password happens to equal another word (here the test server's password is its database name).
            foreach (var output in new[] { run.All, list.All })
                Assert.DoesNotContain(password, output, StringComparison.Ordinal);
        }
        finally
        {
            await using var db = new NpgsqlConnection(connection);
            await db.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP SCHEMA IF EXISTS {schema} CASCADE", db);
            await drop.ExecuteNonQueryAsync();
        }
    }

    [Theory]
    [InlineData("connect to Host=db;Username=app;Password=hunter2;Database=x failed", "connect to Host=db;Username=app;Password=***;Database=x failed")]
    [InlineData("pwd = 'quoted secret' ; next", "pwd=*** ; next")]
    [InlineData("PASSWORD=abc", "PASSWORD=***")]
    [InlineData("no secrets here", "no secrets here")]
    public void Redactor_MasksPasswordPairs(string text, string expected) => Assert.Equal(expected, new Redactor().Redact(text));

    [Fact]
    public void Redactor_MasksAKnownSecretAnywhere()
    {
        var redactor = new Redactor();
        redactor.AddSecret("s3cr3t");
        Assert.Equal("the server said: user x with *** was refused", redactor.Redact("the server said: user x with s3cr3t was refused"));
    }
}
