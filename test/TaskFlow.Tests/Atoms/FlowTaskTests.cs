using TaskFlow.Atoms;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;

namespace TaskFlow.Tests.Atoms;

public sealed class FlowTaskTests
{
    private sealed class Add : FlowTask
    {
        public int Execute(int x, int y, int bonus = 0) => x + y + bonus;
    }

    private sealed class AsyncMultiply : FlowTask
    {
        public async Task<long> ExecuteAsync(long sum, int factor, CancellationToken cancellationToken)
        {
            await Task.Yield();
            cancellationToken.ThrowIfCancellationRequested();
            return sum * factor;
        }
    }

    private sealed record CreateArgs(string volume_id, int size = 10);

    private sealed class CreateVolume : FlowTask<CreateArgs, string>
    {
        public override ValueTask<string> ExecuteAsync(CreateArgs arguments, CancellationToken cancellationToken) =>
            ValueTask.FromResult($"{arguments.volume_id}:{arguments.size}");
    }

    [Fact]
    public void SubclassSignature_ParametersBecomeRequirements_DefaultsOptional()
    {
        var task = new Add();
        Assert.Equal(["x", "y"], task.RequiredSymbols.Order());
        Assert.Equal(["bonus"], task.OptionalSymbols);
    }

    [Fact]
    public void EngineSuppliedParameters_AreNotRequirements()
    {
        var task = new AsyncMultiply();
        Assert.Equal(["factor", "sum"], task.RequiredSymbols.Order());
    }

    [Fact]
    public async Task RunAsync_SubclassAndAsyncSubclass_BindByName()
    {
        var flow = new LinearFlow("f")
        {
            new Add { Name = "add", Provides = "sum" },
            new AsyncMultiply { Name = "mul", Provides = "product" },
        };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["x"] = 2, ["y"] = 3, ["factor"] = 4 } });
        await engine.RunAsync();
        Assert.Equal(5, engine.Storage.Fetch<int>("sum"));
        Assert.Equal(20L, engine.Storage.Fetch<long>("product"));
    }

    [Fact]
    public async Task RunAsync_RecordArguments_BindConstructorParameters()
    {
        var flow = new LinearFlow("f") { new CreateVolume { Name = "create", Provides = "volume" } };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["volume_id"] = "vol-1" } });
        await engine.RunAsync();
        Assert.Equal("vol-1:10", engine.Storage.Fetch<string>("volume"));
    }

    [Fact]
    public async Task RunAsync_DelegateTask_BindsLambdaParameterNames()
    {
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("add", (int x, int y) => x + y, provides: "sum"),
            FlowTask.Create("double", (int sum) => sum * 2, provides: "doubled"),
        };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["x"] = 1, ["y"] = 2 } });
        await engine.RunAsync();
        Assert.Equal(6, engine.Storage.Fetch<int>("doubled"));
    }

    [Fact]
    public void Rebind_NamingAnUnknownParameter_ThrowsNamingAtomAndParameter()
    {
        var ex = Assert.Throws<FlowDefinitionException>(() =>
            new LinearFlow("f") { new Add { Name = "adder", Rebind = new Dictionary<string, string> { ["z"] = "q" } } });
        Assert.Contains("adder", ex.Message);
        Assert.Contains("'z'", ex.Message);
    }

    [Fact]
    public void Rebind_OptionalParameter_BecomesRequired()
    {
        var task = new Add { Rebind = new Dictionary<string, string> { ["bonus"] = "extra" } };
        Assert.Contains("extra", task.RequiredSymbols);
        Assert.Empty(task.OptionalSymbols);
    }

    [Fact]
    public void Rebind_List_MapsRequiredParametersByPosition()
    {
        var task = new Add { Rebind = RebindSpec.Positional("a", "b") };
        Assert.Equal(["a", "b"], task.RequiredSymbols.Order());
    }

    [Fact]
    public void Inject_RemovesSymbolFromRequirements()
    {
        var task = new Add { Inject = new Dictionary<string, object?> { ["x"] = 1 } };
        Assert.Equal(["y"], task.RequiredSymbols);
    }

    [Fact]
    public async Task Provides_PositionalAndKeys_PublishElements()
    {
        var flow = new LinearFlow("f")
        {
            FlowTask.Create("split", () => new object[] { 1, 2 }, provides: ProvidesSpec.Positional("left", "right")),
            FlowTask.Create("keys", () => new Dictionary<string, object?> { ["a"] = "A", ["b"] = "B" }, provides: ProvidesSpec.Keys("a", "b")),
            FlowTask.Create("use", (int left, int right, string a, string b) => $"{left}{right}{a}{b}", provides: "all"),
        };
        var engine = FlowEngine.CreateSerial(flow);
        await engine.RunAsync();
        Assert.Equal("12AB", engine.Storage.Fetch<string>("all"));
    }

    private sealed class TwoExecutes : FlowTask
    {
        public int Execute(int x) => x;
        public Task<int> ExecuteAsync(int x) => Task.FromResult(x);
    }

    [Fact]
    public void TwoExecuteMethods_AreRejectedWithAClearMessage()
    {
        var ex = Assert.Throws<FlowDefinitionException>(() => new TwoExecutes().RequiredSymbols);
        Assert.Contains("TwoExecutes", ex.Message);
        Assert.Contains("exactly one", ex.Message);
    }

    private sealed class RevertRecorder : FlowTask
    {
        public List<string> Calls { get; } = [];
        public int Execute(int x) => x * 10;
        public void Revert(int x, TaskOutcome result, IReadOnlyDictionary<string, Failure> flow_failures) =>
            Calls.Add($"revert x={x} result={result.Value} failures={string.Join(",", flow_failures.Keys)}");
    }

    [Fact]
    public async Task Revert_ReceivesArgumentsResultAndFlowFailures()
    {
        var recorder = new RevertRecorder { Name = "rec" };
        var flow = new LinearFlow("f")
        {
            recorder,
            FlowTask.Create("boom", new Func<int>(() => throw new InvalidOperationException("boom"))),
        };
        var engine = FlowEngine.CreateSerial(flow, new EngineOptions { Store = { ["x"] = 3 } });
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());
        Assert.Equal("boom", ex.Message);
        Assert.Equal(["revert x=3 result=30 failures=boom"], recorder.Calls);
    }
}
