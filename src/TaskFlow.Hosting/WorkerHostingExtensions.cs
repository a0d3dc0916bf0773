using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TaskFlow.Atoms;
using TaskFlow.Workers;

namespace TaskFlow.Hosting;

/// <summary>
/// What a hosted worker runs and how it connects; configured in <see cref="WorkerHostingExtensions.AddWorker"/>.
/// Tasks registered by type are created through dependency injection for each request, so their constructor
/// dependencies and configuration survive the trip (TaskFlow's workers could only build a task from its class name).
/// </summary>
public sealed class HostedWorkerBuilder
{
    private readonly List<(string Name, Func<IServiceProvider, FlowTask> Factory)> _tasks = [];

    internal HostedWorkerBuilder() { }

    /// <summary>The worker's options (topic, concurrency, heartbeat); the defaults when not set.</summary>
    public TaskWorkerOptions Options { get; set; } = new();

    /// <summary>
    /// The transport the worker uses; by default the <see cref="IWorkerTransport"/> registered in the container (a
    /// RabbitMQ transport, or an in-memory one in tests).
    /// </summary>
    public Func<IServiceProvider, IWorkerTransport> Transport { get; set; } = static sp => sp.GetRequiredService<IWorkerTransport>();

    internal IReadOnlyList<(string Name, Func<IServiceProvider, FlowTask> Factory)> Tasks => _tasks;

    /// <summary>Runs <typeparamref name="TTask"/> under its type's full name, created per request with its constructor dependencies from the container.</summary>
    public HostedWorkerBuilder AddTask<TTask>() where TTask : FlowTask =>
        AddTask(typeof(TTask).FullName ?? typeof(TTask).Name, static sp => ActivatorUtilities.CreateInstance<TTask>(sp));

    /// <summary>Runs the task <paramref name="factory"/> makes (per request) under <paramref name="name"/>.</summary>
    public HostedWorkerBuilder AddTask(string name, Func<IServiceProvider, FlowTask> factory)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (_tasks.Exists(t => t.Name == name)) throw new InvalidOperationException($"The hosted worker already has a task named '{name}'.");
        _tasks.Add((name, factory));
        return this;
    }
}

/// <summary>Hosts a <see cref="TaskWorker"/> for the application's lifetime: started with the host, stopped gracefully with it.</summary>
internal sealed class TaskWorkerService(IServiceProvider services, HostedWorkerBuilder configuration) : BackgroundService
{
    private TaskWorker? _worker;

    /// <summary>The running worker (null before start).</summary>
    public TaskWorker? Worker => _worker;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        var worker = new TaskWorker(configuration.Transport(services), configuration.Options, services.GetService<ILogger<TaskWorker>>());
        foreach (var (name, factory) in configuration.Tasks) worker.AddTask(name, () => factory(services));
        await worker.StartAsync(cancellationToken).ConfigureAwait(false);
        _worker = worker;
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    // The worker was started in StartAsync (so a broken configuration fails the host's start) and runs on the
    // transport's threads; there is nothing to loop over here.
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.CompletedTask;

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        // Running tasks get until the host's shutdown timeout to finish; then they are cancelled.
        if (_worker is not null) await _worker.StopAsync(cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>Hosts remote workers in an application (see <see cref="AddWorker"/>).</summary>
public static class WorkerHostingExtensions
{
    /// <summary>
    /// Adds a hosted <see cref="TaskWorker"/> that runs the tasks <paramref name="configure"/> registers for remote
    /// engines, e.g.
    /// <c>services.AddTaskFlow().AddWorker(w =&gt; { w.Options = new() { Topic = "volumes" }; w.AddTask&lt;CreateDbRecord&gt;(); })</c>.
    /// Call it again for more workers (other topics). The transport defaults to the registered <see cref="IWorkerTransport"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The configuration registers no task.</exception>
    public static TaskFlowBuilder AddWorker(this TaskFlowBuilder builder, Action<HostedWorkerBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var configuration = new HostedWorkerBuilder();
        configure(configuration);
        if (configuration.Tasks.Count == 0)
            throw new InvalidOperationException("AddWorker: the worker has no tasks; register some with AddTask in the configure callback.");
        ArgumentNullException.ThrowIfNull(configuration.Options, "HostedWorkerBuilder.Options");
        ArgumentNullException.ThrowIfNull(configuration.Transport, "HostedWorkerBuilder.Transport");
        builder.Services.AddSingleton<IHostedService>(sp => new TaskWorkerService(sp, configuration));
        return builder;
    }
}
