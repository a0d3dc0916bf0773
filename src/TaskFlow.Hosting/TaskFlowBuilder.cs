using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TaskFlow.Flows;
using TaskFlow.Listeners;

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
    /// <summary>
    /// Adds TaskFlow's core services, each only when not registered yet (so calling this again, or after replacing a
    /// service, changes nothing): the <see cref="IFlowFactoryRegistry"/> (filled by
    /// <see cref="TaskFlowBuilderExtensions.AddFlowFactory(TaskFlowBuilder, string, Func{IServiceProvider, Flow})"/>),
    /// and the <see cref="LoggingListener"/>, also registered as a <see cref="FlowListener"/> so that whatever builds
    /// engines from the container (a conductor) attaches every registered listener.
    /// </summary>
    public static TaskFlowBuilder AddTaskFlow(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions();
        services.TryAddSingleton(sp =>
        {
            var registry = new FlowFactoryRegistry(sp);
            foreach (var registration in sp.GetServices<FlowFactoryRegistration>()) registry.Register(registration.Name, registration.Factory);
            return registry;
        });
        services.TryAddSingleton<IFlowFactoryRegistry>(sp => sp.GetRequiredService<FlowFactoryRegistry>());
        services.TryAddSingleton(sp => new LoggingListener(
            sp.GetService<ILoggerFactory>()?.CreateLogger<LoggingListener>() ?? NullLogger<LoggingListener>.Instance));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<FlowListener, LoggingListener>(sp => sp.GetRequiredService<LoggingListener>()));
        return new TaskFlowBuilder(services);
    }
}

/// <summary>A flow factory added with <c>AddFlowFactory</c>; the registry collects them when first resolved.</summary>
internal sealed record FlowFactoryRegistration(string Name, FlowFactory Factory);
