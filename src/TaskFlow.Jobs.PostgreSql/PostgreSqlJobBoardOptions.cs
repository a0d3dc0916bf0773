using System.Text.RegularExpressions;
using Npgsql;

namespace TaskFlow.Jobs.PostgreSql;

/// <summary>Options of <see cref="PostgreSqlJobBoard"/>. <see cref="ToString"/> never shows the password.</summary>
public sealed partial class PostgreSqlJobBoardOptions
{
    /// <summary>The default schema of the board's tables (the persistence backend's default too; their tables do not clash).</summary>
    public const string DefaultSchema = "taskflow";

    /// <summary>An Npgsql connection string, e.g. <c>Host=db;Username=app;Password=…;Database=app</c>.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>
    /// The schema that holds the tables (created when missing): lower-case letters, digits and underscores, starting
    /// with a letter or underscore, at most 63 characters. Default <see cref="DefaultSchema"/>.
    /// </summary>
    public string Schema { get; init; } = DefaultSchema;

    /// <summary>The board's name: several boards can share one schema, each seeing only its own jobs. Default "default".</summary>
    public string BoardName { get; init; } = "default";

    /// <summary>
    /// How long a claim lasts without renewal. A claimer that dies (killed, partitioned) loses its claims this long after
    /// its last heartbeat, and the jobs become claimable again. Default 30 seconds.
    /// </summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How often the board renews the leases of the claims it holds; must be well below <see cref="LeaseDuration"/>
    /// (a third or less leaves room for a slow round trip). Default 10 seconds.
    /// </summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The options with the password removed.</summary>
    public override string ToString() =>
        $"PostgreSqlJobBoardOptions {{ ConnectionString = {RedactedConnectionString(ConnectionString)}, Schema = {Schema}, BoardName = {BoardName}, LeaseDuration = {LeaseDuration}, HeartbeatInterval = {HeartbeatInterval} }}";

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(ConnectionString, nameof(ConnectionString));
        if (Schema is null || !SchemaName().IsMatch(Schema))
            throw new ArgumentException(
                $"The schema name '{Schema}' is not allowed; use lower-case letters, digits and underscores, starting with a letter or underscore (at most 63 characters).",
                nameof(Schema));
        if (string.IsNullOrWhiteSpace(BoardName) || BoardName.Contains('\0') || BoardName.Length > 200)
            throw new ArgumentException("The board name must be 1 to 200 characters, not blank, without NUL.", nameof(BoardName));
        if (LeaseDuration < TimeSpan.FromMilliseconds(100))
            throw new ArgumentOutOfRangeException(nameof(LeaseDuration), LeaseDuration, "LeaseDuration must be at least 100 ms.");
        if (HeartbeatInterval <= TimeSpan.Zero || HeartbeatInterval >= LeaseDuration)
            throw new ArgumentOutOfRangeException(nameof(HeartbeatInterval), HeartbeatInterval,
                $"HeartbeatInterval must be positive and shorter than LeaseDuration ({LeaseDuration}); a third of it or less is safe.");
    }

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

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex SchemaName();
}
