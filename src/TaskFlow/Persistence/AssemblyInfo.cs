using System.Runtime.CompilerServices;

// The backend packages share the model codec and validation rules; they ship in lockstep with the core.
[assembly: InternalsVisibleTo("TaskFlow.Persistence.Sqlite")]
[assembly: InternalsVisibleTo("TaskFlow.Persistence.PostgreSql")]
