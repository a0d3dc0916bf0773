using System.Text.Json;
using TaskFlow.Failures;

namespace TaskFlow.Flows;

/// <summary>
/// Builds a flow by name: what a job posting or a resumed run names, so that a process which did not define the flow
/// (a conductor, a new process after a crash) can build the same definition again. <paramref name="services"/> is the
/// registry's service provider (null outside dependency injection); <paramref name="arguments"/> are the factory
/// arguments stored with the job, or null.
/// </summary>
public delegate Flow FlowFactory(IServiceProvider? services, IReadOnlyDictionary<string, JsonElement>? arguments);

/// <summary>Named flow factories: resolve a flow definition from its factory name.</summary>
public interface IFlowFactoryRegistry
{
    /// <summary>The registered factory names, in ordinal order.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>Whether a factory named <paramref name="name"/> is registered.</summary>
    bool Contains(string name);

    /// <summary>
    /// Builds a new flow with the factory named <paramref name="name"/>. Throws <see cref="NotFoundException"/> naming
    /// the factory and the registered ones when there is no such factory.
    /// </summary>
    Flow Create(string name, IReadOnlyDictionary<string, JsonElement>? arguments = null);
}

/// <summary>
/// The default <see cref="IFlowFactoryRegistry"/>: a thread-safe map from names to <see cref="FlowFactory"/> delegates.
/// Names are case-sensitive. Every <see cref="Create"/> calls the factory again, so each run gets its own flow objects
/// (a flow is frozen by the engine that compiles it and may be used by one engine at a time).
/// </summary>
public sealed class FlowFactoryRegistry : IFlowFactoryRegistry
{
    private readonly IServiceProvider? _services;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, FlowFactory> _factories = new(StringComparer.Ordinal);

    /// <summary>A registry whose factories get <paramref name="services"/> (null when there is no container).</summary>
    public FlowFactoryRegistry(IServiceProvider? services = null) => _services = services;

    /// <inheritdoc />
    public IReadOnlyList<string> Names
    {
        get { lock (_gate) return _factories.Keys.Order(StringComparer.Ordinal).ToArray(); }
    }

    /// <summary>Registers <paramref name="factory"/> under <paramref name="name"/>; a name can be registered once.</summary>
    /// <exception cref="ArgumentException">The name is empty or whitespace, or already registered.</exception>
    public FlowFactoryRegistry Register(string name, FlowFactory factory)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("A flow factory name must not be empty or whitespace.", nameof(name));
        lock (_gate)
        {
            if (!_factories.TryAdd(name, factory))
                throw new ArgumentException($"A flow factory named '{name}' is already registered; each name can be registered once.", nameof(name));
        }
        return this;
    }

    /// <summary>Registers a factory that needs neither services nor arguments.</summary>
    public FlowFactoryRegistry Register(string name, Func<Flow> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        return Register(name, (_, _) => factory());
    }

    /// <inheritdoc />
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_gate) return _factories.ContainsKey(name);
    }

    /// <inheritdoc />
    public Flow Create(string name, IReadOnlyDictionary<string, JsonElement>? arguments = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        FlowFactory? factory;
        lock (_gate) _factories.TryGetValue(name, out factory);
        if (factory is null)
        {
            var known = Names;
            throw new NotFoundException(known.Count == 0
                ? $"No flow factory named '{name}' is registered; no flow factories are registered at all (register one with FlowFactoryRegistry.Register or AddFlowFactory)."
                : $"No flow factory named '{name}' is registered; registered: {string.Join(", ", known.Select(k => $"'{k}'"))}.");
        }
        return factory(_services, arguments)
            ?? throw new InvalidOperationException($"Flow factory '{name}' returned null; a factory must return a new flow.");
    }
}
