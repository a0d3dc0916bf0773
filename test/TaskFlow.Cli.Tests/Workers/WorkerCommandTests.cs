using TaskFlow.Cli.Tests.Infrastructure;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Workers;
using TaskFlow.Workers.RabbitMQ;

namespace TaskFlow.Cli.Tests.Workers;

/// <summary>taskflow worker: choosing task types, broker errors without secrets, and serving a distributed engine on real RabbitMQ.</summary>
public sealed class WorkerCommandTests
{
    private const string Unreachable = "amqp://app:s3cr3t-pw@127.0.0.1:9/";

    [Fact]
    public async Task Worker_UnknownTaskType_ListsTheServableOnes()
    {
        var result = await CliRunner.RunAsync("worker", "--assembly", Repo.FlowsDll, "--amqp", Unreachable, "--task", "Nope");

        Assert.Equal(ExitCodes.NotFound, result.ExitCode);
        Assert.Contains("no servable task type 'Nope'", result.Error, StringComparison.Ordinal);
        Assert.Contains("TaskFlow.Cli.Tests.Flows.Doubler", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Worker_NoTaskNamedAndNoneMarkedRemote_RefusesToServeAnything()
    {
        var result = await CliRunner.RunAsync("worker", "--assembly", Repo.SampleDll("CreateVolume"), "--amqp", Unreachable);

        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.Contains("none was named with --task, and no task type of assembly CreateVolume is marked [RemoteTask]", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Cannot connect", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Worker_PasswordOnTheCommandLine_IsWarnedAbout_AndAFileKeepsItOff()
    {
        var onArgv = await CliRunner.RunAsync("worker", "--assembly", Repo.FlowsDll, "--amqp", Unreachable);
        Assert.Contains("warning: --amqp holds a password on the command line", onArgv.Error, StringComparison.Ordinal);

        using var dir = new TemporaryDirectory();
        var file = dir.File("amqp.txt");
        await File.WriteAllTextAsync(file, Unreachable + "\n");
        var fromFile = await CliRunner.RunAsync("worker", "--assembly", Repo.FlowsDll, "--amqp-file", file);
        Assert.Equal(ExitCodes.StoreError, fromFile.ExitCode);
        Assert.Contains("Cannot connect to the broker", fromFile.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("warning", fromFile.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cr3t-pw", fromFile.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Worker_UnreachableBroker_FailsWithoutShowingThePassword()
    {
        var result = await CliRunner.RunAsync("worker", "--assembly", Repo.FlowsDll, "--amqp", Unreachable, "--verbose");

        Assert.Equal(ExitCodes.StoreError, result.ExitCode);
        Assert.Contains("Cannot connect to the broker", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cr3t-pw", result.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Worker_OnRealRabbitMq_ServesADistributedEngineAndStopsOnCancel()
    {
        var amqp = Environment.GetEnvironmentVariable("TASKFLOW_AMQP");
        if (string.IsNullOrEmpty(amqp))
        {
            Assert.False(string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase),
                "TASKFLOW_AMQP is not set but CI=true: this test needs RabbitMQ (scripts/services.sh start rabbitmq).");
            return;
        }
        var topic = $"cli-test-{Guid.NewGuid():N}";
        using var output = new StringWriter();
        var synced = TextWriter.Synchronized(output);
        using var stop = new CancellationTokenSource();
        // No --task: the worker serves the types marked [RemoteTask] (Doubler), not the other servable one (Tripler).
        var worker = TaskFlowCommand.InvokeAsync(["worker", "--assembly", Repo.FlowsDll, "--amqp", amqp, "--topic", topic], synced, synced, interactive: false, stop.Token);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!Snapshot(synced, output).Contains("serves 1 task type", StringComparison.Ordinal))
        {
            Assert.False(worker.IsCompleted, "the worker ended early:\n" + Snapshot(synced, output));
            Assert.True(DateTime.UtcNow < deadline, "the worker did not start:\n" + Snapshot(synced, output));
            await Task.Delay(50);
        }
        Assert.Contains("(marked [RemoteTask]): TaskFlow.Cli.Tests.Flows.Doubler", Snapshot(synced, output), StringComparison.Ordinal);
        Assert.DoesNotContain("Tripler", Snapshot(synced, output), StringComparison.Ordinal);

        await using (var transport = await RabbitMqWorkerTransport.ConnectAsync(new RabbitMqTransportOptions { Uri = amqp }))
        {
            var flow = new LinearFlow("doubling") { new TaskFlow.Cli.Tests.Flows.Doubler() };
            var engine = FlowEngine.CreateDistributed(flow, new DistributedEngineOptions
            {
                Transport = transport,
                Topics = [topic],
                RequestTimeout = TimeSpan.FromSeconds(30),
                Engine = new EngineOptions { Store = { ["x"] = 21 } },
            });
            await engine.RunAsync();
            Assert.Equal(42, engine.Storage.Fetch<int>("doubled"));
        }

        await stop.CancelAsync();
        Assert.Equal(0, await worker);
        Assert.Contains("stopped after 1 request(s)", Snapshot(synced, output), StringComparison.Ordinal);
        Assert.DoesNotContain(new Uri(amqp).UserInfo, Snapshot(synced, output), StringComparison.Ordinal);
    }

    private static string Snapshot(TextWriter synced, StringWriter inner)
    {
        lock (synced) return inner.ToString();
    }
}
