namespace TaskFlow.Atoms;

/// <summary>
/// Marks a task type as meant to be served to remote engines: <c>taskflow worker</c> serves the task types of an
/// assembly that carry it when no <c>--task</c> is named, and no others. A worker runs whatever its callers ask of
/// the types it serves, so serving is opt-in: mark only tasks that are safe to run on request from any engine that can
/// reach the broker. (A host that builds its own <c>TaskWorker</c> chooses its tasks in code and needs no attribute.)
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class RemoteTaskAttribute : Attribute
{
}
