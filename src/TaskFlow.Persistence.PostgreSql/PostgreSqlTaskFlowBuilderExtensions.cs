using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using TaskFlow.Persistence.PostgreSql;

namespace TaskFlow.Hosting;

/// <summary>Registers <see cref="PostgreSqlPersistenceBackend"/> on a <see cref="TaskFlowBuilder"/>.</summary>
public static class PostgreSqlTaskFlowBuilderExtensions
{
    /// <summary>Persists runs in the PostgreSQL database named by the Npgsql <paramref name="connectionString"/>, in the default schema.</summary>
    public static TaskFlowBuilder AddPostgreSqlPersistence(this TaskFlowBuilder builder, string connectionString, bool ensureSchema = true)
    {
        ArgumentNullException.ThrowIfNull(connectionString);
        return builder.AddPostgreSqlPersistence(_ => new PostgreSqlPersistenceOptions { ConnectionString = connectionString }, ensureSchema);
    }

    /// <summary>
    /// Persists runs in PostgreSQL with options built from the container (e.g. from configuration). The options are
    /// validated when the host starts (<c>ValidateOnStart</c>): a connection string Npgsql cannot parse or an invalid
    /// schema name fail the start with an <see cref="OptionsValidationException"/> naming the problem. With
    /// <paramref name="ensureSchema"/> the schema and tables are created at start.
    /// </summary>
    public static TaskFlowBuilder AddPostgreSqlPersistence(this TaskFlowBuilder builder, Func<IServiceProvider, PostgreSqlPersistenceOptions> options, bool ensureSchema = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        builder.AddValidatedOptions(options).ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PostgreSqlPersistenceOptions>, Validator>());
        return builder.AddPersistence(sp => new PostgreSqlPersistenceBackend(sp.GetRequiredService<IOptions<PostgreSqlPersistenceOptions>>().Value), ensureSchema);
    }

    // The backend's constructor holds the rules (it checks without opening a connection), so the validator asks it.
    private static string? Problem(PostgreSqlPersistenceOptions options)
    {
        try
        {
            new PostgreSqlPersistenceBackend(options).DisposeAsync().AsTask().GetAwaiter().GetResult();
            return null;
        }
        catch (ArgumentException ex)
        {
            return $"TaskFlow PostgreSQL persistence options are invalid ({options}): {ex.Message}";
        }
    }

    private sealed class Validator : IValidateOptions<PostgreSqlPersistenceOptions>
    {
        public ValidateOptionsResult Validate(string? name, PostgreSqlPersistenceOptions options) =>
            Problem(options) is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
    }
}
