using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TaskFlow.Conductors;
using TaskFlow.Flows;
using TaskFlow.Jobs;
using TaskFlow.Persistence;

namespace TaskFlow.Hosting;

/// <summary>Hosts conductors in a generic host.</summary>
public static class ConductorTaskFlowBuilderExtensions
{
    /// <summary>
    /// Runs a <see cref="Conductor"/> as a hosted service for the life of the host. It takes the
    /// <see cref="IJobBoard"/> and <see cref="IPersistenceBackend"/> registered in the container (register those too) and
    /// the flow factories added with <c>AddFlowFactory</c>. Call again to host several conductors (give each its own name). On host shutdown
    /// the conductor suspends its running flows and abandons their jobs, within the host's shutdown timeout.
    /// </summary>
    public static TaskFlowBuilder AddConductor(this TaskFlowBuilder builder, ConductorOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return builder.AddConductor(_ => options);
    }

    /// <summary>As <see cref="AddConductor(TaskFlowBuilder, ConductorOptions)"/>, with options built from the container.</summary>
    public static TaskFlowBuilder AddConductor(this TaskFlowBuilder builder, Func<IServiceProvider, ConductorOptions> options)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        builder.Services.AddSingleton<IHostedService>(services => new ConductorService(
            new Conductor(
                services.GetRequiredService<IJobBoard>(),
                services.GetRequiredService<IFlowFactoryRegistry>(),
                services.GetRequiredService<IPersistenceBackend>(),
                options(services)),
            services.GetService<ILoggerFactory>()?.CreateLogger<Conductor>() ?? NullLogger<Conductor>.Instance));
        return builder;
    }
}

/// <summary>A <see cref="BackgroundService"/> running one <see cref="Conductor"/> and logging its events.</summary>
public sealed partial class ConductorService : BackgroundService
{
    private readonly ILogger _logger;
    private readonly IDisposable[] _subscriptions;

    /// <summary>Hosts <paramref name="conductor"/>, logging to <paramref name="logger"/>.</summary>
    public ConductorService(Conductor conductor, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(conductor);
        ArgumentNullException.ThrowIfNull(logger);
        Conductor = conductor;
        _logger = logger;
        var hub = conductor.Notifications;
        _subscriptions =
        [
            hub.Subscribe<JobClaimed>(e => LogClaimed(e.Conductor, e.Job)),
            hub.Subscribe<JobConsumed>(e =>
            {
                if (e.Failure is null) LogConsumed(e.Conductor, e.Job);
                else LogConsumedAfterFailure(e.Failure, e.Conductor, e.Job);
            }),
            hub.Subscribe<JobAbandoned>(e => LogAbandoned(e.Failure, e.Conductor, e.Job, e.Reason)),
            hub.Subscribe<JobTrashed>(e => LogTrashed(e.Failure, e.Conductor, e.Job)),
            hub.Subscribe<JobOperationFailed>(e => LogOperationFailed(e.Failure, e.Conductor, e.Operation, e.Job)),
            hub.Subscribe<BoardUnavailable>(e => LogBoardUnavailable(e.Failure, e.Conductor, e.RetryIn)),
        ];
    }

    /// <summary>The hosted conductor (subscribe to its <see cref="Conductor.Notifications"/> for events).</summary>
    public Conductor Conductor { get; }

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Conductor.RunAsync(stoppingToken);

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var s in _subscriptions) s.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Conductor {Conductor} claimed {Job}")]
    private partial void LogClaimed(string conductor, Jobs.Job job);

    [LoggerMessage(Level = LogLevel.Information, Message = "Conductor {Conductor} consumed {Job}")]
    private partial void LogConsumed(string conductor, Jobs.Job job);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Conductor {Conductor} consumed {Job} after its flow failed")]
    private partial void LogConsumedAfterFailure(Exception failure, string conductor, Jobs.Job job);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Conductor {Conductor} abandoned {Job}: {Reason}")]
    private partial void LogAbandoned(Exception? failure, string conductor, Jobs.Job job, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Conductor {Conductor} trashed {Job}")]
    private partial void LogTrashed(Exception? failure, string conductor, Jobs.Job job);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Conductor {Conductor} could not {Operation} {Job}; its claim may have been lost to an expired lease")]
    private partial void LogOperationFailed(Exception failure, string conductor, string operation, Jobs.Job job);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Conductor {Conductor} cannot reach its job board; retrying in {RetryIn}")]
    private partial void LogBoardUnavailable(Exception failure, string conductor, TimeSpan retryIn);
}
