using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using TaskFlow.Atoms;
using TaskFlow.Conductors;
using TaskFlow.Flows;
using TaskFlow.Hosting;
using TaskFlow.Jobs;
using TaskFlow.Persistence;

namespace TaskFlow.Tests.Conductors;

public sealed class ConductorHostingTests
{
    [Fact]
    public async Task AddConductor_HostRunsTheConductorAndStopsItWithTheHost()
    {
        var board = new InMemoryJobBoard();
        var ran = 0;
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddSingleton<IJobBoard>(board);
        builder.Services.AddSingleton<IPersistenceBackend>(new InMemoryPersistenceBackend());
        builder.Services.AddTaskFlow()
            .AddFlowFactory("one", _ => new LinearFlow("one") { FlowTask.Create("t", () => { Interlocked.Increment(ref ran); }) })
            .AddConductor(new ConductorOptions { Name = "hosted-a" })
            .AddConductor(_ => new ConductorOptions { Name = "hosted-b", MaxConcurrentJobs = 2 });
        using var host = builder.Build();
        var services = host.Services.GetServices<IHostedService>().OfType<ConductorService>().ToArray();
        Assert.Equal(["hosted-a", "hosted-b"], services.Select(s => s.Conductor.Name));
        var consumed = 0;
        var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        foreach (var s in services)
            s.Conductor.Notifications.Subscribe<JobConsumed>(_ => { if (Interlocked.Increment(ref consumed) == 5) allDone.TrySetResult(); });

        await host.StartAsync();
        for (var i = 0; i < 5; i++) await board.PostAsync(new JobPosting { Name = $"job{i}", FlowFactory = "one" });
        await allDone.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await host.StopAsync();

        Assert.Equal(5, ran);
        Assert.Equal(5, (await board.GetJobsAsync(JobState.Complete)).Count);
        // Stopped with the host: a job posted now stays unclaimed.
        var late = await board.PostAsync(new JobPosting { Name = "late", FlowFactory = "one" });
        await Task.Delay(200);
        Assert.Equal(JobState.Unclaimed, (await board.GetJobAsync(late.Id))!.State);
    }
}
