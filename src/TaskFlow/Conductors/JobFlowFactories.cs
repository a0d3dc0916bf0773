using System.Collections.Concurrent;
using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Jobs;

namespace TaskFlow.Conductors;

/// <summary>Builds the flow a job names. A conductor asks it once per claimed job.</summary>
public interface IJobFlowFactory
{
    /// <summary>The flow for <paramref name="job"/>; the same flow (same atom names) every time, so a reclaimed job resumes.</summary>
    /// <exception cref="NotFoundException">No factory has the job's <see cref="Job.FlowFactory"/> name.</exception>
    Flow CreateFlow(Job job);
}

/// <summary>
/// Flow factories by name: a job's <see cref="Job.FlowFactory"/> picks one, and its
/// <see cref="Job.FactoryArguments"/> are passed in. Thread-safe.
/// </summary>
public sealed class JobFlowFactoryRegistry : IJobFlowFactory
{
    private readonly ConcurrentDictionary<string, Func<JsonElement?, Flow>> _factories = new(StringComparer.Ordinal);

    /// <summary>Registers a factory under <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">The name is empty or already registered.</exception>
    public JobFlowFactoryRegistry Register(string name, Func<JsonElement?, Flow> factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (!_factories.TryAdd(name, factory))
            throw new ArgumentException($"A flow factory named '{name}' is already registered.", nameof(name));
        return this;
    }

    /// <summary>Registers a factory that takes no arguments.</summary>
    public JobFlowFactoryRegistry Register(string name, Func<Flow> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        return Register(name, _ => factory());
    }

    /// <summary>The registered names, sorted.</summary>
    public IReadOnlyList<string> Names => _factories.Keys.Order(StringComparer.Ordinal).ToArray();

    /// <inheritdoc />
    public Flow CreateFlow(Job job)
    {
        ArgumentNullException.ThrowIfNull(job);
        if (!_factories.TryGetValue(job.FlowFactory, out var factory))
            throw new NotFoundException(
                $"{job} names the flow factory '{job.FlowFactory}', which is not registered; registered: " +
                (_factories.IsEmpty ? "none" : string.Join(", ", Names.Select(n => $"'{n}'"))) + ".");
        return factory(job.FactoryArguments)
            ?? throw new InvalidOperationException($"The flow factory '{job.FlowFactory}' returned null for {job}.");
    }
}
