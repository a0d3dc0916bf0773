using System.CommandLine;
using TaskFlow.Persistence.PostgreSql;

namespace TaskFlow.Cli;

/// <summary>Options several commands share, one instance each so a command's parse result finds them.</summary>
internal sealed class CommonOptions
{
    public Option<string> Db { get; } = new("--db")
    {
        Description = "The persistence store: a SQLite file path (or \"Data Source=FILE\"), or a PostgreSQL connection string (\"Host=…;Username=…;Password=…;Database=…\").",
        Required = true,
    };

    /// <summary>The same store option, for commands that can run without persistence.</summary>
    public Option<string?> OptionalDb { get; } = new("--db")
    {
        Description = "Save the run to this store (a SQLite file path, created when missing, or a PostgreSQL connection string) so it can be resumed and inspected.",
    };

    public Option<string> Schema { get; } = new("--schema")
    {
        Description = "PostgreSQL only: the schema holding TaskFlow's tables.",
        DefaultValueFactory = _ => PostgreSqlPersistenceOptions.DefaultSchema,
    };

    public Option<string> Assembly { get; } = new("--assembly")
    {
        Description = "The .dll that holds the flow factory (built with a reference to TaskFlow).",
        Required = true,
    };

    public Option<string> Factory { get; } = new("--factory")
    {
        Description = "The factory: a public static method that takes no arguments and returns a Flow (or Task<Flow>), as Namespace.Type.Method.",
        Required = true,
    };
}
