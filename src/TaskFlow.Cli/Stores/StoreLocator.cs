using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;
using TaskFlow.Cli.Console;
using TaskFlow.Persistence;
using TaskFlow.Persistence.PostgreSql;
using TaskFlow.Persistence.Sqlite;

namespace TaskFlow.Cli.Stores;

/// <summary>
/// An opened persistence store and how to name it in messages (never with its password). <paramref name="Checker"/>,
/// for a store about to be changed, is a read-only view of it that <see cref="CheckAsync"/> uses first: a file or schema
/// that is not a TaskFlow store is refused before the writing backend could create its tables there.
/// </summary>
internal sealed record StoreTarget(IPersistenceBackend Backend, string DisplayName, IPersistenceBackend? Checker = null) : IAsyncDisposable
{
    /// <summary>Refuses (with <see cref="PersistenceException"/>) an existing store that is not TaskFlow's.</summary>
    public async Task CheckAsync(CancellationToken cancellationToken)
    {
        if (Checker is not null) await Checker.EnsureSchemaAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (Checker is not null) await Checker.DisposeAsync();
        await Backend.DisposeAsync();
    }
}

/// <summary>How a command uses its store.</summary>
internal enum StoreAccess
{
    /// <summary>Inspect only (books list/show, graph --flow-detail): the store must exist and be TaskFlow's; nothing is created or written.</summary>
    ReadOnly,

    /// <summary>Change an existing store (books delete, run --resume): it must exist and be TaskFlow's.</summary>
    Existing,

    /// <summary>Save into it, creating it when missing (run --db).</summary>
    Create,
}

/// <summary>
/// Turns a <c>--db</c> value into a backend: a PostgreSQL connection string (it names <c>Host</c> or <c>Server</c>),
/// a SQLite connection string (<c>Data Source=…</c>), an existing directory (or, to create one, a path ending with
/// '/') for a directory store, or else the path of a SQLite file.
/// </summary>
internal static class StoreLocator
{
    /// <summary>
    /// The store a command names with <paramref name="db"/> or <see cref="CommonOptions.DbFile"/>, or (when
    /// <paramref name="useEnvironment"/>) <c>$TASKFLOW_DB</c>; null when none is given.
    /// </summary>
    public static string? Resolve(System.CommandLine.ParseResult parse, System.CommandLine.Option<string?> db, CommonOptions common, bool useEnvironment, CliConsole console) =>
        Secrets.SecretSource.Resolve(parse.GetValue(db), parse.GetValue(common.DbFile), "--db", useEnvironment ? CommonOptions.DbVariable : null, console);

    /// <summary>As <see cref="Resolve"/>, for commands that cannot run without a store.</summary>
    public static string Require(System.CommandLine.ParseResult parse, System.CommandLine.Option<string?> db, CommonOptions common, CliConsole console) =>
        Resolve(parse, db, common, useEnvironment: true, console)
        ?? throw new CliException(ExitCodes.Usage, "No store given.", $"Give --db (or --db-file FILE, or set {CommonOptions.DbVariable}), e.g. --db taskflow.db");

    public static StoreTarget Open(string db, string schema, StoreAccess access, Redactor redactor)
    {
        if (string.IsNullOrWhiteSpace(db))
            throw new CliException(ExitCodes.Usage, "--db is empty.", "Give a SQLite file path or a PostgreSQL connection string, e.g. --db taskflow.db");
        if (Directory.Exists(db) || access == StoreAccess.Create && db.EndsWith('/'))
            return OpenDirectory(db, access);
        bool mustExist = access != StoreAccess.Create;
        if (!File.Exists(db) && db.Contains('=', StringComparison.Ordinal))
        {
            var pairs = ParsePairs(db);
            if (pairs.ContainsKey("host") || pairs.ContainsKey("server"))
                return OpenPostgreSql(db, schema, pairs, access, redactor);
            if (pairs.ContainsKey("data source") || pairs.ContainsKey("datasource") || pairs.ContainsKey("filename"))
                return OpenSqlite(db, access, redactor);
            throw new CliException(ExitCodes.Usage,
                "--db looks like a connection string but names neither a PostgreSQL host (Host=…) nor a SQLite file (Data Source=…).",
                "Give a SQLite file path, \"Data Source=FILE\", or \"Host=…;Username=…;Password=…;Database=…\".");
        }
        return OpenSqlite(new SqliteConnectionStringBuilder { DataSource = db }.ConnectionString, access, redactor);
    }

    private static StoreTarget OpenDirectory(string path, StoreAccess access)
    {
        var display = $"directory store {Path.TrimEndingDirectorySeparator(path)}";
        return new StoreTarget(new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = path, ReadOnly = access == StoreAccess.ReadOnly }), display,
            access == StoreAccess.Existing ? new DirectoryPersistenceBackend(new DirectoryPersistenceOptions { Path = path, ReadOnly = true }) : null);
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

    private static StoreTarget OpenPostgreSql(string connectionString, string schema, Dictionary<string, string> pairs, StoreAccess access, Redactor redactor)
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
            // Changing a store needs it to be TaskFlow's: a read-only look first refuses anything else without DDL.
            return new StoreTarget(new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connectionString, Schema = schema, ReadOnly = access == StoreAccess.ReadOnly }), display,
                access == StoreAccess.Existing ? new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connectionString, Schema = schema, ReadOnly = true }) : null);
        }
        catch (ArgumentException e)
        {
            throw new CliException(ExitCodes.Usage, $"Cannot use {display}: {e.Message}", "Check --db and --schema (lower-case letters, digits and underscores).");
        }
    }

    private static StoreTarget OpenSqlite(string connectionString, StoreAccess access, Redactor redactor)
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
        if (access != StoreAccess.Create && !File.Exists(path))
            throw new CliException(ExitCodes.NotFound, $"There is no SQLite database at '{Path.GetFullPath(path)}'.",
                "Check the path; a persisted run (taskflow run --db FILE, or a sample) creates it.");
        try
        {
            // An existing file must already be a TaskFlow store before anything writes to it (an empty file may become one).
            bool check = access == StoreAccess.Existing || access == StoreAccess.Create && File.Exists(path) && new FileInfo(path).Length > 0;
            return new StoreTarget(new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = connectionString, ReadOnly = access == StoreAccess.ReadOnly }), display,
                check ? new SqlitePersistenceBackend(new SqlitePersistenceOptions { ConnectionString = connectionString, ReadOnly = true }) : null);
        }
        catch (ArgumentException e)
        {
            throw new CliException(ExitCodes.Usage, $"Cannot use {display}: {e.Message}", "Give the path of a SQLite file, e.g. --db taskflow.db");
        }
    }
}
