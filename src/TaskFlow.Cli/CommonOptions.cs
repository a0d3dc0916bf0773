using System.CommandLine;
using TaskFlow.Persistence.PostgreSql;

namespace TaskFlow.Cli;

/// <summary>Options several commands share, one instance each so a command's parse result finds them.</summary>
internal sealed class CommonOptions
{
    /// <summary>The store to read, for the commands that need one (books; graph --flow-detail; run --resume): --db, --db-file or $TASKFLOW_DB.</summary>
    public Option<string?> Db { get; } = new("--db")
    {
        Description = "The persistence store: a SQLite file path (or \"Data Source=FILE\"), a directory store's directory, or a PostgreSQL connection string " +
            "(\"Host=…;Username=…;Database=…\"). Default: $TASKFLOW_DB. Keep passwords off the command line: use --db-file, $TASKFLOW_DB or a PostgreSQL passfile.",
    };

    /// <summary>The same store option, for commands that can run without persistence.</summary>
    public Option<string?> OptionalDb { get; } = new("--db")
    {
        Description = "Save the run to this store (a SQLite file path, created when missing; a directory store's directory, created when the path ends with '/'; " +
            "or a PostgreSQL connection string) so it can be resumed and inspected. $TASKFLOW_DB is used only with --resume.",
    };

    /// <summary>A file whose first line is the store (so a password stays out of the command line).</summary>
    public Option<string?> DbFile { get; } = new("--db-file")
    {
        Description = "Read --db from the first line of this file (lines starting with # are skipped), so a password is not on the command line.",
    };

    /// <summary>The environment variable that names the store when neither --db nor --db-file is given.</summary>
    public const string DbVariable = "TASKFLOW_DB";

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
