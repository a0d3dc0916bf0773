using TaskFlow.Atoms;
using TaskFlow.Flows;
using TaskFlow.Retries;

namespace TaskFlow.Cli.Tests.Flows;

/// <summary>x and y from the store → add → multiply (product = (x + y) * y).</summary>
public static class Calculator
{
    public static Flow Create() => new LinearFlow("calculate")
    {
        FlowTask.Create("add", (int x, int y) => x + y, provides: "sum"),
        FlowTask.Create("multiply", (int sum, int y) => sum * y, provides: "product"),
    };

    public static Task<Flow> CreateAsync() => Task.FromResult(Create());
}

/// <summary>A graph with a branch: fetch → (resize, thumbnail) → publish, under a retry controller.</summary>
public static class Publishing
{
    public static Flow Create()
    {
        var fetch = FlowTask.Create("fetch", (string url) => $"image from {url}", provides: "image");
        var resize = FlowTask.Create("resize", (string image) => $"{image}, resized", provides: "resized");
        var thumbnail = FlowTask.Create("thumbnail", (string image) => $"{image}, thumbnail", provides: "thumb");
        var publish = FlowTask.Create("publish", (string resized, string thumb) => $"{resized} + {thumb}", provides: "page");
        return new GraphFlow("publish-image", new TimesRetry(2) { Name = "retry_twice" }) { fetch, resize, thumbnail, publish };
    }
}

/// <summary>Reserves, then fails: the reservation is reverted.</summary>
public static class Failing
{
    public static Flow Create() => new LinearFlow("book-trip")
    {
        FlowTask.Create("reserve", (string passenger) => $"seat for {passenger}", provides: "seat"),
        FlowTask.Create("charge", (string seat) => ThrowDeclined(seat)),
    };

    private static string ThrowDeclined(string seat) => throw new InvalidOperationException($"card declined for {seat}");
}

/// <summary>Factories that cannot give a flow, for the error paths.</summary>
public static class Broken
{
    public static string NotAFlow() => "not a flow";

    public static Flow Throws() => throw new InvalidOperationException("the factory's configuration is missing");

    public static Flow WithArguments(string name) => new LinearFlow(name);

    public static Flow DuplicateNames() => new LinearFlow("duplicates")
    {
        FlowTask.Create("same", () => 1),
        FlowTask.Create("same", () => 2),
    };
}

/// <summary>A task a worker can serve: a public type with a public parameterless constructor, marked for remote use.</summary>
[RemoteTask]
public sealed class Doubler : FlowTask
{
    public Doubler() : base("double") => Provides = "doubled";

    public int Execute(int x) => x * 2;
}

/// <summary>A servable task that is not marked [RemoteTask]: a worker serves it only when it is named with --task.</summary>
public sealed class Tripler : FlowTask
{
    public Tripler() : base("triple") => Provides = "tripled";

    public int Execute(int x) => x * 3;
}
