using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;
using TaskFlow.Cli.Console;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;

namespace TaskFlow.Cli.Stores;

/// <summary>An opened persistence store and how to name it in messages (never with its password).</summary>
internal sealed record StoreTarget(IPersistenceBackend Backend, string DisplayName) : IAsyncDisposable
{
    public ValueTask DisposeAsync() => Backend.DisposeAsync();
}

/// <summary>
/// Turns a <c>--db</c> value into a backend: a PostgreSQL connection string (it names <c>Host</c> or <c>Server</c>),
/// a SQLite connection string (<c>Data Source=…</c>), or else the path of a SQLite file.
/// </summary>
internal static class StoreLocator
{
    public static StoreTarget Open(string db, string schema, bool mustExist, Redactor redactor)
    {
        if (string.IsNullOrWhiteSpace(db))
            throw new CliException(ExitCodes.Usage, "--db is empty.", "Give a SQLite file path or a PostgreSQL connection string, e.g. --db taskflow.db");
        if (!File.Exists(db) && db.Contains('=', StringComparison.Ordinal))
        {
            var pairs = ParsePairs(db);
            if (pairs.ContainsKey("host") || pairs.ContainsKey("server"))
                return OpenPostgreSql(db, schema, pairs, redactor);
            if (pairs.ContainsKey("data source") || pairs.ContainsKey("datasource") || pairs.ContainsKey("filename"))
                return OpenSqlite(db, mustExist, redactor);
            throw new CliException(ExitCodes.Usage,
                "--db looks like a connection string but names neither a PostgreSQL host (Host=…) nor a SQLite file (Data Source=…).",
                "Give a SQLite file path, \"Data Source=FILE\", or \"Host=…;Username=…;Password=…;Database=…\".");
        }
        return OpenSqlite(new SqliteConnectionStringBuilder { DataSource = db }.ConnectionString, mustExist, redactor);
    }

    private static Dictionary<string, string> ParsePairs(string connectionString)
    {
        var builder = new DbConnectionStringBuilder();
        try
        {
            builder.ConnectionString = connectionString;
        }
        catch (ArgumentException)
        {
            // The message of the parser can quote the string, password included: say what is wrong without it.
            throw new CliException(ExitCodes.Usage, "--db is not a valid connection string (expected key=value pairs separated by ';').",
                "Quote the whole value in the shell, e.g. --db \"Host=db;Username=app;Password=…;Database=app\".");
        }
        var pairs = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string key in builder.Keys) pairs[key] = builder[key]?.ToString() ?? "";
        return pairs;
    }

    private static StoreTarget OpenPostgreSql(string connectionString, string schema, Dictionary<string, string> pairs, Redactor redactor)
    {
        if (pairs.TryGetValue("password", out var password)) redactor.AddSecret(password);
        if (pairs.TryGetValue("pwd", out var pwd)) redactor.AddSecret(pwd);
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new CliException(ExitCodes.Usage, $"--db is not a valid PostgreSQL connection string: {e.Message}",
                "Keys Npgsql knows: Host, Port, Username, Password, Database, …");
        }
        redactor.AddSecret(builder.Password);
        var display = $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database} (schema {schema})";
        try
        {
            return new StoreTarget(new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connectionString, Schema = schema }), display);
        }
        catch (ArgumentException e)
        {
            throw new CliException(ExitCodes.Usage, $"Cannot use {display}: {e.Message}", "Check --db and --schema (lower-case letters, digits and underscores).");
        }
    }

    private static StoreTarget OpenSqlite(string connectionString, bool mustExist, Redactor redactor)
    {
        SqliteConnectionStringBuilder builder;
        try
        {
            builder = new SqliteConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new CliException(ExitCodes.Usage, $"--db is not a valid SQLite connection string: {e.Message}", "Give the path of a SQLite file, e.g. --db taskflow.db");
        }
        redactor.AddSecret(builder.Password);
        var path = builder.DataSource;
        var display = $"SQLite {path}";
        if (mustExist && !File.Exists(path))
            throw new CliException(ExitCodes.NotFound, $"There is no SQLite database at '{Path.GetFullPath(path)}'.",
                "Check the path; a persisted run (taskflow run --db FILE, or a sample) creates it.");
        try
        {
            return new StoreTarget(new SqlitePersistenceBackend(connectionString), display);
        }
        catch (ArgumentException e)
        {
            throw new CliException(ExitCodes.Usage, $"Cannot use {display}: {e.Message}", "Give the path of a SQLite file, e.g. --db taskflow.db");
        }
    }
}
