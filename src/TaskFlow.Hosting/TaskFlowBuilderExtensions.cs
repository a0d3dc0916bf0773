using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using TaskFlow.Flows;
using TaskFlow.Persistence;

namespace TaskFlow.Hosting;

/// <summary>Registrations on a <see cref="TaskFlowBuilder"/>: flow factories, persistence and options.</summary>
public static class TaskFlowBuilderExtensions
{
    /// <summary>
    /// Registers a named flow factory, resolvable through <see cref="IFlowFactoryRegistry"/>: what a conductor uses to
    /// build the flow a job names. The factory gets the application's service provider.
    /// </summary>
    /// <exception cref="ArgumentException">The name is empty, or a factory with this name is already registered.</exception>
    public static TaskFlowBuilder AddFlowFactory(this TaskFlowBuilder builder, string name, Func<IServiceProvider, Flow> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        return builder.AddFlowFactory(name, (services, _) => factory(services
            ?? throw new InvalidOperationException($"Flow factory '{name}' needs a service provider; create flows through the registry from the container.")));
    }

    /// <summary>
    /// Registers a named <see cref="FlowFactory"/>, which also gets the job's factory arguments (JSON values by name,
    /// or null). Created through the container's registry, its service provider is never null.
    /// </summary>
    /// <exception cref="ArgumentException">The name is empty, or a factory with this name is already registered.</exception>
    public static TaskFlowBuilder AddFlowFactory(this TaskFlowBuilder builder, string name, FlowFactory factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("A flow factory name must not be empty or whitespace.", nameof(name));
        // Duplicates are refused here, where the mistake is made, not later when the registry is first resolved.
        foreach (var d in builder.Services)
            if (d.ServiceType == typeof(FlowFactoryRegistration) && d.ImplementationInstance is FlowFactoryRegistration r && r.Name == name)
                throw new ArgumentException($"A flow factory named '{name}' is already registered; each name can be registered once.", nameof(name));
        builder.Services.AddSingleton(new FlowFactoryRegistration(name, factory));
        return builder;
    }

    /// <summary>
    /// Registers the persistence backend every engine built from the container uses. With
    /// <paramref name="ensureSchema"/> (the default), a hosted service creates or upgrades the backend's schema when
    /// the host starts, so a misconfigured store fails the start rather than the first run. Persistence packages call
    /// this from their own <c>Add…Persistence</c> methods; call it directly for the in-memory or directory backends.
    /// </summary>
    /// <exception cref="InvalidOperationException">A persistence backend is already registered.</exception>
    public static TaskFlowBuilder AddPersistence(this TaskFlowBuilder builder, Func<IServiceProvider, IPersistenceBackend> factory, bool ensureSchema = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        var existing = builder.Services.FirstOrDefault(d => d.ServiceType == typeof(IPersistenceBackend));
        if (existing is not null)
            throw new InvalidOperationException(
                $"A TaskFlow persistence backend is already registered ({Describe(existing)}); register one backend per container.");
        builder.Services.AddSingleton(factory);
        if (ensureSchema) builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, PersistenceSchemaInitializer>());
        return builder;
    }

    /// <summary>
    /// Registers options of type <typeparamref name="TOptions"/> that are built whole by <paramref name="create"/>
    /// (for options with init-only properties, like the persistence options) and validated, whenever they are built,
    /// by the returned builder's <c>Validate</c> rules; add <c>ValidateOnStart()</c> to check them when the host starts.
    /// </summary>
    public static OptionsBuilder<TOptions> AddValidatedOptions<TOptions>(this TaskFlowBuilder builder, Func<IServiceProvider, TOptions> create)
        where TOptions : class
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(create);
        builder.Services.AddSingleton<IOptionsFactory<TOptions>>(sp => new CreatedOptionsFactory<TOptions>(sp, create, sp.GetServices<IValidateOptions<TOptions>>()));
        return builder.Services.AddOptions<TOptions>();
    }

    private static string Describe(ServiceDescriptor d) =>
        d.ImplementationType?.Name ?? d.ImplementationInstance?.GetType().Name ?? "a factory registration";

    /// <summary>Options built by a delegate, then validated like any options (failures throw <see cref="OptionsValidationException"/>).</summary>
    private sealed class CreatedOptionsFactory<TOptions>(
        IServiceProvider services, Func<IServiceProvider, TOptions> create, IEnumerable<IValidateOptions<TOptions>> validators) : IOptionsFactory<TOptions>
        where TOptions : class
    {
        public TOptions Create(string name)
        {
            var options = create(services) ?? throw new InvalidOperationException($"The factory of {typeof(TOptions).Name} returned null.");
            var failures = new List<string>();
            foreach (var validator in validators)
            {
                var result = validator.Validate(name, options);
                if (result.Failed) failures.AddRange(result.Failures);
            }
            if (failures.Count > 0) throw new OptionsValidationException(name, typeof(TOptions), failures);
            return options;
        }
    }
}

/// <summary>Creates or upgrades the registered persistence backend's schema when the host starts.</summary>
internal sealed class PersistenceSchemaInitializer(IPersistenceBackend backend) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => backend.EnsureSchemaAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
