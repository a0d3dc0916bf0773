using System.Text.RegularExpressions;
using Npgsql;
using TaskFlow.Persistence;

namespace TaskFlow.Persistence.PostgreSql;

/// <summary>Options of <see cref="PostgreSqlPersistenceBackend"/>. <see cref="ToString"/> never shows the password.</summary>
public sealed partial class PostgreSqlPersistenceOptions
{
    /// <summary>The default schema that holds TaskFlow's tables.</summary>
    public const string DefaultSchema = "taskflow";

    /// <summary>An Npgsql connection string, e.g. <c>Host=db;Username=app;Password=…;Database=app</c>.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>
    /// The schema that holds the tables (created when missing): lower-case letters, digits and underscores, starting
    /// with a letter or underscore, at most 63 characters. Default <see cref="DefaultSchema"/>.
    /// </summary>
    public string Schema { get; init; } = DefaultSchema;

    /// <summary>
    /// Opens the store for reading only: the schema must already hold TaskFlow's tables at a version this code reads;
    /// nothing is created or migrated (no DDL), every save throws <see cref="PersistenceException"/>, and the sessions
    /// run with <c>default_transaction_read_only</c> so the server refuses writes too. For tools that inspect a store,
    /// such as <c>taskflow books</c>.
    /// </summary>
    public bool ReadOnly { get; init; }

    /// <summary>Documents (an atom, or metadata) larger than this are refused when written or read. Default 64 MiB.</summary>
    public int MaxDocumentBytes { get; init; } = PersistenceJson.DefaultMaxDocumentBytes;

    /// <summary>The clock for <c>UpdatedAt</c> stamps; <see cref="System.TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>The options with the password removed.</summary>
    public override string ToString() =>
        $"PostgreSqlPersistenceOptions {{ ConnectionString = {RedactedConnectionString(ConnectionString)}, Schema = {Schema}, ReadOnly = {ReadOnly}, MaxDocumentBytes = {MaxDocumentBytes} }}";

    internal static string RedactedConnectionString(string? connectionString)
    {
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString);
            if (!string.IsNullOrEmpty(builder.Password)) builder.Password = "***";
            return builder.ConnectionString;
        }
        catch (ArgumentException)
        {
            return "(unparsable connection string)";
        }
    }

    internal static bool IsValidSchemaName(string? name) => name is not null && SchemaName().IsMatch(name);

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex SchemaName();
}
