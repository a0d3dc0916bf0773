using Microsoft.Extensions.DependencyInjection;

namespace TaskFlow.Hosting;

/// <summary>
/// Configures TaskFlow in a service collection; returned by <see cref="TaskFlowServiceCollectionExtensions.AddTaskFlow"/>.
/// Packages add their registrations (persistence, conductors, workers) as extension methods on this builder.
/// </summary>
public sealed class TaskFlowBuilder
{
    internal TaskFlowBuilder(IServiceCollection services) => Services = services;

    /// <summary>The service collection being configured.</summary>
    public IServiceCollection Services { get; }
}

/// <summary>Registers TaskFlow in a <see cref="IServiceCollection"/>.</summary>
public static class TaskFlowServiceCollectionExtensions
{
    /// <summary>Adds TaskFlow's core services (once; calling again returns a builder over the same registrations).</summary>
    public static TaskFlowBuilder AddTaskFlow(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        return new TaskFlowBuilder(services);
    }
}
