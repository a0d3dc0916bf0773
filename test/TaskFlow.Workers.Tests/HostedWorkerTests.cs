using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Hosting;

namespace TaskFlow.Workers.Tests;

public sealed class HostedWorkerTests
{
    public sealed class Greeting(string text)
    {
        public string Text { get; } = text;
    }

    /// <summary>A task with a constructor dependency: the hosted worker builds it through the container.</summary>
    public sealed class GreetTask(Greeting greeting) : Atoms.FlowTask
    {
        public string Execute(string name) => $"{greeting.Text}, {name}";
    }

    [Fact]
    public async Task AddWorker_HostedService_RunsTasksBuiltByTheContainerForARemoteEngine()
    {
        var broker = new InMemoryWorkerBroker();
        await using var workerConnection = new InMemoryWorkerTransport(broker);
        await using var engineConnection = new InMemoryWorkerTransport(broker);
        var topic = "hosted." + Guid.NewGuid().ToString("N");
        var services = new ServiceCollection();
        services.AddSingleton(new Greeting("Hello"));
        services.AddSingleton<IWorkerTransport>(workerConnection);
        services.AddTaskFlow().AddWorker(w =>
        {
            w.Options = new TaskWorkerOptions { Topic = topic, HeartbeatInterval = TimeSpan.FromMilliseconds(200) };
            w.AddTask<GreetTask>();
        });
        await using var provider = services.BuildServiceProvider();
        var hosted = Assert.Single(provider.GetServices<IHostedService>());
        await hosted.StartAsync(CancellationToken.None);

        var flow = new LinearFlow("f") { new GreetTask(new Greeting("unused on the engine side")) { Name = "greet", Provides = "greeting" } };
        var engine = FlowEngine.CreateDistributed(flow, new DistributedEngineOptions
        {
            Transport = engineConnection,
            Topics = [topic],
            Engine = new EngineOptions { Store = { ["name"] = "Ada" } },
        });
        await engine.RunAsync();
        Assert.Equal("Hello, Ada", engine.Storage.Fetch<string>("greeting"));
        await hosted.StopAsync(CancellationToken.None);
    }

    [Fact]
    public void AddWorker_WithoutTasks_FailsAtRegistration()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => new ServiceCollection().AddTaskFlow().AddWorker(_ => { }));
        Assert.Contains("no tasks", ex.Message);
    }
}
