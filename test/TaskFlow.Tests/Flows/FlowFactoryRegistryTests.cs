using System.Text.Json;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Tests.Flows;

public sealed class FlowFactoryRegistryTests
{
    [Fact]
    public void Create_RegisteredName_BuildsANewFlowWithArguments()
    {
        var registry = new FlowFactoryRegistry()
            .Register("plain", () => new LinearFlow("plain"))
            .Register("sized", (services, args) => new UnorderedFlow($"sized-{args!["n"].GetInt32()}-{services is null}"));

        Assert.NotSame(registry.Create("plain"), registry.Create("plain"));
        Assert.Equal("sized-4-True", registry.Create("sized", new Dictionary<string, JsonElement> { ["n"] = JsonSerializer.SerializeToElement(4) }).Name);
        Assert.True(registry.Contains("plain"));
        Assert.False(registry.Contains("Plain")); // names are case-sensitive
        Assert.Equal(["plain", "sized"], registry.Names);
    }

    [Fact]
    public void Create_UnknownName_ThrowsNotFoundNamingItAndTheKnownOnes()
    {
        var empty = Assert.Throws<NotFoundException>(() => new FlowFactoryRegistry().Create("orders.checkout"));
        Assert.Contains("'orders.checkout'", empty.Message);
        Assert.Contains("no flow factories are registered", empty.Message);

        var registry = new FlowFactoryRegistry().Register("b", () => new LinearFlow("b")).Register("a", () => new LinearFlow("a"));
        var ex = Assert.Throws<NotFoundException>(() => registry.Create("c"));
        Assert.Contains("'c'", ex.Message);
        Assert.Contains("'a', 'b'", ex.Message);
    }

    [Fact]
    public void Register_DuplicateOrBlankName_Throws_AndFactoryReturningNull_IsReported()
    {
        var registry = new FlowFactoryRegistry().Register("x", () => new LinearFlow("x"));
        Assert.Contains("'x'", Assert.Throws<ArgumentException>(() => registry.Register("x", () => new LinearFlow("y"))).Message);
        Assert.Throws<ArgumentException>(() => registry.Register("", () => new LinearFlow("y")));
        registry.Register("null", (_, _) => null!);
        Assert.Contains("'null'", Assert.Throws<InvalidOperationException>(() => registry.Create("null")).Message);
    }
}
