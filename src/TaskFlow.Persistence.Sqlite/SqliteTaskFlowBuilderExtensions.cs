using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using TaskFlow.Persistence.Sqlite;

namespace TaskFlow.Hosting;

/// <summary>Registers <see cref="SqlitePersistenceBackend"/> on a <see cref="TaskFlowBuilder"/>.</summary>
public static class SqliteTaskFlowBuilderExtensions
{
    /// <summary>Persists runs in the SQLite database file named by <paramref name="connectionString"/> (e.g. <c>Data Source=taskflow.db</c>).</summary>
    public static TaskFlowBuilder AddSqlitePersistence(this TaskFlowBuilder builder, string connectionString, bool ensureSchema = true)
    {
        ArgumentNullException.ThrowIfNull(connectionString);
        return builder.AddSqlitePersistence(_ => new SqlitePersistenceOptions { ConnectionString = connectionString }, ensureSchema);
    }

    /// <summary>
    /// Persists runs in SQLite with options built from the container (e.g. from configuration). The options are
    /// validated when the host starts (<c>ValidateOnStart</c>): a bad connection string, an in-memory database or a
    /// negative timeout fail the start with an <see cref="OptionsValidationException"/> naming the problem. With
    /// <paramref name="ensureSchema"/> the tables are created at start.
    /// </summary>
    public static TaskFlowBuilder AddSqlitePersistence(this TaskFlowBuilder builder, Func<IServiceProvider, SqlitePersistenceOptions> options, bool ensureSchema = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        builder.AddValidatedOptions(options).ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<SqlitePersistenceOptions>, Validator>());
        return builder.AddPersistence(sp => new SqlitePersistenceBackend(sp.GetRequiredService<IOptions<SqlitePersistenceOptions>>().Value), ensureSchema);
    }

    // The backend's constructor holds the rules (it checks without opening a connection), so the validator asks it.
    private static string? Problem(SqlitePersistenceOptions options)
    {
        try
        {
            new SqlitePersistenceBackend(options).DisposeAsync().AsTask().GetAwaiter().GetResult();
            return null;
        }
        catch (ArgumentException ex)
        {
            return $"TaskFlow SQLite persistence options are invalid ({options}): {ex.Message}";
        }
    }

    private sealed class Validator : IValidateOptions<SqlitePersistenceOptions>
    {
        public ValidateOptionsResult Validate(string? name, SqlitePersistenceOptions options) =>
            Problem(options) is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
    }
}
