using Npgsql;

namespace TaskFlow.TestUtilities;

/// <summary>
/// The PostgreSQL server for the test projects that need one (persistence, job boards), from TASKFLOW_POSTGRES (an
/// Npgsql connection string; scripts/services.sh sets it). Each test gets its own schema, dropped afterwards, so runs
/// never collide with each other or with other users of the database.
/// </summary>
public static class PostgresTestServer
{
    public const string Variable = "TASKFLOW_POSTGRES";

    /// <summary>
    /// The connection string, or null when no server is configured on a developer machine: the tests then return early,
    /// because xunit 2 cannot skip at run time and a missing local server should not fail a quick build. Under CI=true a
    /// missing server is a failure, never a silent pass.
    /// </summary>
    public static string? ConnectionString
    {
        get
        {
            var value = Environment.GetEnvironmentVariable(Variable);
            if (!string.IsNullOrWhiteSpace(value)) return value;
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
                throw new InvalidOperationException(
                    $"{Variable} is not set but CI=true: these tests need a PostgreSQL server. Start one with scripts/services.sh and export {Variable}.");
            return null;
        }
    }

    public static string NewSchemaName() => "tf_test_" + Guid.NewGuid().ToString("N");

    public static async Task ExecuteAsync(string connectionString, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
        await cmd.ExecuteNonQueryAsync();
    }

    public static async Task<T> ScalarAsync<T>(string connectionString, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters) cmd.Parameters.AddWithValue(name, value);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }

    public static Task DropSchemaAsync(string connectionString, string schema) =>
        ExecuteAsync(connectionString, $"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
}
