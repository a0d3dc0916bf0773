using System.Text;
using System.Text.Json.Nodes;
using TaskFlow.Atoms;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Retries;

namespace TaskFlow.Conformance;

/// <summary>Records calls and counts them, shared by the atoms of one scenario run (tasks may run concurrently).</summary>
public sealed class Recorder(bool serial)
{
    private readonly Lock _gate = new();
    private readonly List<string> _trace = [];
    private readonly Dictionary<string, int> _counts = [];

    public bool Serial { get; } = serial;

    public int NextCount(string key)
    {
        lock (_gate)
        {
            _counts[key] = _counts.GetValueOrDefault(key) + 1;
            return _counts[key];
        }
    }

    public void Add(string entry)
    {
        lock (_gate) _trace.Add(entry);
    }

    public List<string> Trace
    {
        get { lock (_gate) return [.. _trace]; }
    }

    public static string Args(IEnumerable<KeyValuePair<string, string>> args) =>
        string.Join(",", args.OrderBy(a => a.Key, StringComparer.Ordinal).Select(a => $"{a.Key}={a.Value}"));
}

/// <summary>A task built from a scenario node: low-level form (declared parameters, arguments by name).</summary>
public sealed class ScenarioTask : FlowTask
{
    private readonly JsonNode _execute;
    private readonly JsonNode? _revert;
    private readonly Recorder _recorder;
    private readonly IReadOnlyList<string> _required;
    private readonly IReadOnlyDictionary<string, object?> _optional;

    public ScenarioTask(string name, JsonNode execute, JsonNode? revert, Recorder recorder, IReadOnlyList<string> required, IReadOnlyDictionary<string, object?> optional)
        : base(name)
    {
        _execute = execute;
        _revert = revert;
        _recorder = recorder;
        _required = required;
        _optional = optional;
    }

    protected override IReadOnlyList<AtomParameter> GetExecuteParameters() =>
        [.. _required.Select(r => new AtomParameter(r)), .. _optional.Select(o => new AtomParameter(o.Key, true, o.Value))];

    private Dictionary<string, object?> Values(TaskArguments arguments)
    {
        var d = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var r in _required) d[r] = Plain(arguments[r]);
        foreach (var (k, def) in _optional) d[k] = arguments.TryGet(k, out var v) ? Plain(v) : def;
        return d;
    }

    // Arguments that crossed the wire to a remote worker arrive as JSON; the behaviours work on plain values.
    private static object? Plain(object? value) =>
        value is System.Text.Json.JsonElement e ? Canonical.FromJson(JsonNode.Parse(e.GetRawText())) : value;

    public override ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
    {
        var values = Values(arguments);
        int n = _recorder.NextCount(Name + ".execute");
        _recorder.Add($"{Name}.execute({Recorder.Args(values.Select(kv => new KeyValuePair<string, string>(kv.Key, Canonical.Render(kv.Value))))})");
        return new ValueTask<object?>(Behaviour.Evaluate(_execute, values, n));
    }

    public override ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        var values = Values(arguments);
        int n = _recorder.NextCount(Name + ".revert");
        var shown = values.Select(kv => new KeyValuePair<string, string>(kv.Key, Canonical.Render(kv.Value))).ToList();
        shown.Add(new("result", result.IsFailure ? Canonical.Render(result.Failure) : Canonical.Render(result.Value)));
        if (_recorder.Serial) shown.Add(new("flow_failures", Canonical.Render(flowFailures.Keys.Order(StringComparer.Ordinal).ToList())));
        _recorder.Add($"{Name}.revert({Recorder.Args(shown)})");
        return new ValueTask<object?>(_revert is null ? null : Behaviour.Evaluate(_revert, values, n));
    }
}

/// <summary>Wraps a built-in retry controller and records its calls as the oracle does.</summary>
public sealed class TracingRetry : RetryController
{
    private readonly RetryController _inner;
    private readonly Recorder _recorder;
    private readonly bool _hasValues;

    public TracingRetry(RetryController inner, Recorder recorder, bool hasValues)
    {
        _inner = inner;
        _recorder = recorder;
        _hasValues = hasValues;
    }

    protected override IReadOnlyList<AtomParameter> GetExecuteParameters() =>
        _hasValues ? [new AtomParameter(ParameterizedForEachRetry.ValuesParameter)] : [];

    private string ArgsText(RetryHistory history, TaskArguments arguments, IReadOnlyDictionary<string, Failure>? flowFailures, bool isRevert = false)
    {
        var shown = new List<KeyValuePair<string, string>> { new("history", RenderHistory(history)) };
        if (_hasValues && !isRevert) shown.Add(new("values", Canonical.Render(arguments[ParameterizedForEachRetry.ValuesParameter])));
        if (flowFailures is not null && _recorder.Serial) shown.Add(new("flow_failures", Canonical.Render(flowFailures.Keys.Order(StringComparer.Ordinal).ToList())));
        return Recorder.Args(shown);
    }

    private static string RenderHistory(RetryHistory history)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < history.Count; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append('[');
            Canonical.Write(sb, history[i].Value);
            sb.Append(',');
            Canonical.Write(sb, history[i].Failures.ToDictionary(kv => kv.Key, kv => (object?)Canonical.Message(kv.Value)));
            sb.Append(']');
        }
        return sb.Append(']').ToString();
    }

    public override object? Execute(RetryHistory history, TaskArguments arguments)
    {
        var text = ArgsText(history, arguments, null);
        try
        {
            var value = _inner.Execute(history, arguments);
            _recorder.Add($"{Name}.execute({text})->{Canonical.Render(value)}");
            return value;
        }
        catch (Exception e)
        {
            _recorder.Add($"{Name}.execute({text})->Failure({Canonical.Render(Canonical.Message(Failure.FromException(e)))})");
            throw;
        }
    }

    public override RetryDecision OnFailure(RetryHistory history, TaskArguments arguments)
    {
        var decision = _inner.OnFailure(history, arguments);
        var name = decision switch { RetryDecision.Retry => "RETRY", RetryDecision.Revert => "REVERT", _ => "REVERT_ALL" };
        _recorder.Add($"{Name}.on_failure({ArgsText(history, arguments, null)})->{name}");
        return decision;
    }

    public override void Revert(RetryHistory history, TaskArguments arguments, IReadOnlyDictionary<string, Failure> flowFailures)
    {
        _recorder.Add($"{Name}.revert({ArgsText(history, arguments, flowFailures, isRevert: true)})");
        _inner.Revert(history, arguments, flowFailures);
    }
}

public static class Behaviour
{
    public static object? Evaluate(JsonNode b, IReadOnlyDictionary<string, object?> args, int n)
    {
        var o = b.AsObject();
        if (o.TryGetPropertyValue("return", out var ret)) return Canonical.FromJson(ret);
        if (o.TryGetPropertyValue("return_arg", out var ra)) return args[ra!.GetValue<string>()];
        if (o.TryGetPropertyValue("sum", out var sum))
            return sum!.AsArray().Sum(x => Convert.ToInt64(args[x!.GetValue<string>()], System.Globalization.CultureInfo.InvariantCulture));
        if (o.TryGetPropertyValue("collect", out var col))
            return col!.AsArray().Select(x => args[x!.GetValue<string>()]).ToList();
        if (o.TryGetPropertyValue("fail", out var fail)) throw new ScenarioError(fail!.GetValue<string>());
        if (o.TryGetPropertyValue("fail_times", out var ft))
        {
            if (n <= ft!.GetValue<int>()) throw new ScenarioError(o["message"]!.GetValue<string>());
            return Evaluate(o["then"]!, args, n);
        }
        if (o.TryGetPropertyValue("fail_if", out var fi))
        {
            var arg = args[fi!["arg"]!.GetValue<string>()];
            var text = Canonical.Render(arg);
            if (fi["in"]!.AsArray().Any(x => Canonical.Render(Canonical.FromJson(x)) == text))
                throw new ScenarioError(o["message"]!.GetValue<string>());
            return Evaluate(o["else"]!, args, n);
        }
        throw new InvalidOperationException($"Unknown behaviour {b.ToJsonString()}");
    }
}

/// <summary>Builds this library's flows from a scenario's "flow" node.</summary>
public static class ScenarioBuilder
{
    public static Flow BuildFlow(JsonObject node, Recorder recorder)
    {
        var name = node["name"]!.GetValue<string>();
        var retry = node["retry"] is JsonObject r ? BuildRetry(r, recorder) : null;
        Flow flow = node["kind"]!.GetValue<string>() switch
        {
            "linear" => new LinearFlow(name, retry),
            "unordered" => new UnorderedFlow(name, retry),
            "graph" => new GraphFlow(name, retry),
            var k => throw new InvalidOperationException($"Unknown flow kind {k}"),
        };
        var children = (node["children"] as JsonArray ?? []).Select(c => BuildNode(c!.AsObject(), recorder)).ToArray();
        if (children.Length > 0) flow.Add(children);
        if (node["links"] is JsonArray links && flow is GraphFlow g)
        {
            foreach (var l in links)
            {
                var from = l![0]!.GetValue<string>();
                var to = l[1]!.GetValue<string>();
                g.Link(Find(children, from, name), Find(children, to, name));
            }
        }
        return flow;
    }

    private static FlowNode Find(FlowNode[] children, string name, string flow) =>
        children.FirstOrDefault(c => c.Name == name) ?? throw new UnknownLinkNodeException($"'{name}' is not a child of graph flow '{flow}'.");

    private static FlowNode BuildNode(JsonObject node, Recorder recorder)
    {
        if (node["kind"]!.GetValue<string>() != "task") return BuildFlow(node, recorder);
        var name = node["name"]!.GetValue<string>();
        var required = (node["requires"] as JsonArray ?? []).Select(x => x!.GetValue<string>()).ToList();
        var optional = (node["optional"] as JsonObject ?? []).ToDictionary(p => p.Key, p => Canonical.FromJson(p.Value), StringComparer.Ordinal);
        RebindSpec? rebind = node["rebind"] switch
        {
            JsonArray a => RebindSpec.Positional(a.Select(x => x!.GetValue<string>()).ToArray()),
            JsonObject o => RebindSpec.FromMap(o.ToDictionary(p => p.Key, p => p.Value!.GetValue<string>())),
            _ => null,
        };
        var inject = node["inject"] is JsonObject inj ? inj.ToDictionary(p => p.Key, p => Canonical.FromJson(p.Value)) : null;
        ProvidesSpec provides = node["provides"] switch
        {
            JsonValue v => ProvidesSpec.Whole(v.GetValue<string>()),
            JsonArray a => ProvidesSpec.Positional(a.Select(x => x!.GetValue<string>()).ToArray()),
            JsonObject o => ProvidesSpec.Keys(o["keys"]!.AsArray().Select(x => x!.GetValue<string>()).ToArray()),
            _ => ProvidesSpec.None,
        };
        return new ScenarioTask(name, node["execute"]!, node["revert"], recorder, required, optional)
        {
            Rebind = rebind,
            Inject = inject,
            Provides = provides,
        };
    }

    private static RetryController BuildRetry(JsonObject r, Recorder recorder)
    {
        bool revertAll = r["revert_all"]?.GetValue<bool>() ?? false;
        var kind = r["kind"]!.GetValue<string>();
        RetryController inner = kind switch
        {
            "times" => new TimesRetry(r["attempts"]!.GetValue<int>()) { RevertAll = revertAll },
            "for_each" => new ForEachRetry(r["values"]!.AsArray().Select(Canonical.FromJson)) { RevertAll = revertAll },
            "parameterized_for_each" => new ParameterizedForEachRetry { RevertAll = revertAll },
            "always_revert" => new AlwaysRevertRetry(),
            "always_revert_all" => new AlwaysRevertAllRetry(),
            _ => throw new InvalidOperationException($"Unknown retry kind {kind}"),
        };
        var valuesFrom = r["values_from"]?.GetValue<string>() ?? "values";
        return new TracingRetry(inner, recorder, kind == "parameterized_for_each")
        {
            Name = r["name"]!.GetValue<string>(),
            Provides = r["provides"] is JsonValue p ? ProvidesSpec.Whole(p.GetValue<string>()) : ProvidesSpec.None,
            Rebind = kind == "parameterized_for_each" && valuesFrom != "values" ? RebindSpec.FromMap(new Dictionary<string, string> { ["values"] = valuesFrom }) : null,
        };
    }
}

public sealed class UnknownLinkNodeException(string message) : Exception(message);
