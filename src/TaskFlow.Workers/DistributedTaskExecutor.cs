using System.Text.Json;
using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;

namespace TaskFlow.Workers;

/// <summary>
/// Runs tasks on remote workers (TaskFlow's <c>WorkerTaskExecutor</c>): each execute or revert becomes a request sent
/// to a topic whose live workers advertise the task; the executor waits for the worker's result, relays its progress to
/// the engine, and turns a request no worker starts in time, or a worker that stops heartbeating, into a
/// <see cref="WorkerTimeoutException"/>. A timeout is never taken as "did not run" while the request might still start:
/// see <see cref="DistributedEngineOptions.RequestTimeout"/> and <see cref="DistributedEngineOptions.ClockSkewMargin"/>.
/// Responses for a request that is already finished are ignored, so a worker that comes back late never reports twice.
/// </summary>
/// <remarks>
/// Set it as <see cref="EngineOptions.Executor"/> of any engine, or use <see cref="DistributedFlowEngine"/>. Executors on
/// the same transport share one reply address and one view of the workers.
/// </remarks>
public sealed class DistributedTaskExecutor : TaskExecutor
{
    private readonly DistributedEngineOptions _options;
    private readonly WorkerClient _client;

    /// <summary>Creates an executor with the given options (their <see cref="DistributedEngineOptions.Engine"/> is not used).</summary>
    public DistributedTaskExecutor(DistributedEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _client = WorkerClient.For(options.Transport, options);
    }

    /// <summary>The options.</summary>
    public DistributedEngineOptions Options => _options;

    /// <inheritdoc />
    public override async ValueTask<object?> ExecuteAsync(FlowTask task, TaskArguments arguments, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(context);
        var request = NewRequest(task, arguments, context, TaskAction.Execute);
        try
        {
            return Outcome(await _client.SendAsync(request, _options, context).ConfigureAwait(false));
        }
        catch (WorkerLostException lost)
        {
            // Never sent again: the lost worker may have done part of the work; the flow's revert or retry decides.
            throw new WorkerTimeoutException(lost.Message);
        }
    }

    /// <inheritdoc />
    public override async ValueTask<object?> RevertAsync(FlowTask task, TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(context);
        var request = NewRequest(task, arguments, context, TaskAction.Revert) with
        {
            Result = result.IsFailure ? null : WorkerProtocol.ToJson(result.Value, $"The result of atom '{context.AtomName}'"),
            ResultFailure = result.Failure,
            FlowFailures = flowFailures ?? TaskRequest.EmptyFailures,
        };
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                var response = await _client.SendAsync(request, _options, context).ConfigureAwait(false);
                return Outcome(response);
            }
            catch (WorkerLostException lost) when (attempt <= _options.RevertResends)
            {
                // Reverts are idempotent by contract: another worker may run this one again.
                WorkerLog.RevertResent(_client.Logger, context.AtomName, attempt + 1, lost.Message);
                request = request with { Id = NewId() };
            }
            catch (WorkerLostException lost)
            {
                throw new WorkerTimeoutException($"{lost.Message} The revert was sent {attempt} time(s).");
            }
        }
    }

    private TaskRequest NewRequest(FlowTask task, TaskArguments arguments, TaskContext context, TaskAction action)
    {
        var name = _options.TaskName(task);
        if (string.IsNullOrEmpty(name))
            throw new ArgumentException($"DistributedEngineOptions.TaskName gave no name for atom '{context.AtomName}' ({task.GetType().Name}).");
        var json = new Dictionary<string, JsonElement>(arguments.Count, StringComparer.Ordinal);
        foreach (var (parameter, value) in arguments.ToDictionary())
            json[parameter] = WorkerProtocol.ToJson(value, $"Atom '{context.AtomName}' argument '{parameter}'");
        return new TaskRequest(NewId(), name, context.AtomName, action, json, "?") { Timeout = _options.ExecutionTimeout };
    }

    private static string NewId() => Guid.NewGuid().ToString("N");

    private static object? Outcome(TaskResponse response)
    {
        if (response.State == ResponseState.Failure) response.Failure!.Rethrow();
        return WorkerProtocol.ToValue(response.Result);
    }
}

/// <summary>
/// The worker running a request stopped heartbeating, or a sent request can no longer start (a worker refused it, or its
/// deadline plus the clock-skew margin passed): a revert may be sent again, an execute fails with <see cref="WorkerTimeoutException"/>.
/// </summary>
internal sealed class WorkerLostException(string message) : Exception(message);
