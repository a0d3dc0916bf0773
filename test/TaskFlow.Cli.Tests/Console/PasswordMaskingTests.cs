using Npgsql;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Tests.Infrastructure;

namespace TaskFlow.Cli.Tests.Console;

/// <summary>No password from a connection string is ever printed: in errors, with --verbose, or in normal output.</summary>
public sealed class PasswordMaskingTests
{
    private static string PostgresConnectionString =>
        Environment.GetEnvironmentVariable("TASKFLOW_POSTGRES") ?? "Host=127.0.0.1;Port=5440;Username=taskflow;Password=taskflow;Database=taskflow";

    [Fact]
    public async Task WrongPassword_StoreErrorNeverShowsThePassword()
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresConnectionString) { Password = "Wr0ng-S3cret-" + Guid.NewGuid().ToString("N")[..8], Timeout = 5 };

        var result = await CliRunner.RunAsync("books", "list", "--verbose", "--db", builder.ConnectionString);

        Assert.Equal(ExitCodes.StoreError, result.ExitCode);
        Assert.StartsWith("error: ", result.Error, StringComparison.Ordinal);
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
        var schema = "cli_test_" + Guid.NewGuid().ToString("N")[..12];
        var connection = PostgresConnectionString;
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
