using System.CommandLine;
using System.Reflection;
using TaskFlow.Atoms;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Running;
using TaskFlow.Workers;
using TaskFlow.Workers.RabbitMQ;

namespace TaskFlow.Cli.Workers;

/// <summary>
/// <c>taskflow worker</c>: serves the task types of an assembly to distributed engines over RabbitMQ until stopped
/// (Ctrl+C stops it gracefully: requests in progress finish and are answered).
/// </summary>
internal static class WorkerCommand
{
    public static Command Create(CommonOptions common, Func<CliConsole> console)
    {
        var amqp = new Option<string?>("--amqp")
        {
            Description = "The broker, as an AMQP URI (amqp://user:password@host:5672/vhost; amqps:// for TLS). Default: $TASKFLOW_AMQP. " +
                "Keep the password off the command line: use --amqp-file or $TASKFLOW_AMQP.",
        };
        var amqpFile = new Option<string?>("--amqp-file")
        {
            Description = "Read --amqp from the first line of this file (lines starting with # are skipped), so the password is not on the command line.",
        };
        var topic = new Option<string>("--topic") { Description = "The topic to serve; engines send requests for these tasks to it.", DefaultValueFactory = _ => "taskflow" };
        var concurrency = new Option<int>("--concurrency") { Description = "How many requests run at once.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var tasks = new Option<string[]>("--task", "--tasks")
        {
            Description = "A task type to serve, by full or short name (repeatable). Default: the task types marked [RemoteTask]; " +
                "with neither, the worker refuses to start (it serves nothing it was not told to).",
            AllowMultipleArgumentsPerToken = false,
        };
        var command = new Command("worker", "Serve an assembly's task types to distributed engines over RabbitMQ until stopped.")
        {
            common.Assembly, amqp, amqpFile, topic, concurrency, tasks,
        };
        command.SetAction(async (parse, ct) =>
        {
            var c = console();
            var uri = Secrets.SecretSource.Resolve(parse.GetValue(amqp), parse.GetValue(amqpFile), "--amqp", "TASKFLOW_AMQP", c);
            if (string.IsNullOrWhiteSpace(uri))
                throw new CliException(ExitCodes.Usage, "No broker given.", "Pass --amqp amqp://host:5672/ (credentials in --amqp-file FILE or $TASKFLOW_AMQP).");
            // The password in the URI is never printed, even when the client library echoes it in an error.
            if (System.Uri.TryCreate(uri, UriKind.Absolute, out var parsed) && parsed.UserInfo.Split(':', 2) is [_, var password])
            {
                c.Redactor.AddSecret(password);
                c.Redactor.AddSecret(System.Uri.UnescapeDataString(password));
            }
            int limit = parse.GetValue(concurrency);
            if (limit < 1) throw new CliException(ExitCodes.Usage, $"--concurrency {limit} is not a number of requests.", "Give a positive number.");
            var named = parse.GetValue(tasks) ?? [];
            var served = FindTaskTypes(FlowFactoryLoader.LoadAssembly(parse.GetValue(common.Assembly)!), named);

            RabbitMqWorkerTransport transport;
            try
            {
                transport = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = uri }, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new CliException(ExitCodes.StoreError, $"Cannot connect to the broker: {e.Message}", "Check --amqp (host, port, credentials) and that RabbitMQ runs.", e);
            }
            await using (transport)
            {
                await using var worker = new TaskWorker(transport, new TaskWorkerOptions { Topic = parse.GetValue(topic)!, MaxConcurrency = limit });
                foreach (var type in served)
                    worker.AddTask(type.FullName!, () => (FlowTask)Activator.CreateInstance(type)!);
                await worker.StartAsync(ct);
                c.Line($"Worker {worker.WorkerId} serves {served.Count} task type(s) on topic '{worker.Topic}' ({(named.Length > 0 ? "named with --task" : "marked [RemoteTask]")}): {string.Join(", ", served.Select(t => t.FullName))}");
                c.Line("Ctrl+C stops it; requests in progress finish first.");
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (OperationCanceledException)
                {
                    // Stopping is this command's normal end.
                }
                await worker.StopAsync(CancellationToken.None);
                c.Line($"Worker {worker.WorkerId} stopped after {worker.CompletedRequests} request(s).");
            }
            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>
    /// The task types to serve: the named ones, or those marked <see cref="RemoteTaskAttribute"/>; never every task of the
    /// assembly by default, since a worker runs whatever its callers ask of the types it serves.
    /// </summary>
    internal static IReadOnlyList<Type> FindTaskTypes(Assembly assembly, IReadOnlyList<string> names)
    {
        var candidates = FlowFactoryLoader.LoadableTypes(assembly)
            .Where(t => t.IsPublic && !t.IsAbstract && typeof(FlowTask).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .ToList();
        if (names.Count == 0)
        {
            var marked = candidates.Where(t => t.IsDefined(typeof(RemoteTaskAttribute), inherit: false)).ToList();
            if (marked.Count > 0) return marked;
            throw new CliException(ExitCodes.Usage,
                $"No task types to serve: none was named with --task, and no task type of assembly {assembly.GetName().Name} is marked [RemoteTask].",
                candidates.Count == 0
                    ? "A worker builds a fresh task for each request: give your FlowTask subclasses a public constructor without parameters."
                    : $"Name them (--task {candidates[0].Name} …) or mark them [RemoteTask]; servable types: {string.Join(", ", candidates.Select(t => t.FullName))}.");
        }
        var chosen = new List<Type>();
        foreach (var name in names)
        {
            var matches = candidates.Where(t => t.FullName == name || t.Name == name).ToList();
            chosen.Add(matches.Count switch
            {
                1 => matches[0],
                0 => throw new CliException(ExitCodes.NotFound, $"Assembly {assembly.GetName().Name} has no servable task type '{name}'.",
                    candidates.Count == 0 ? "It has no public FlowTask subclass with a public parameterless constructor."
                    : $"Servable types: {string.Join(", ", candidates.Select(t => t.FullName))}."),
                _ => throw new CliException(ExitCodes.Usage, $"'{name}' matches several task types: {string.Join(", ", matches.Select(t => t.FullName))}.", "Give the full name."),
            });
        }
        return chosen.Distinct().ToList();
    }
}
