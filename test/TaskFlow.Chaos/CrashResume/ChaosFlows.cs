using TaskFlow.Atoms;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Retries;

namespace TaskFlow.Chaos.CrashResume;

/// <summary>Where tasks record their side effects: one line per execute or revert call, before the call does anything.</summary>
internal interface ISideEffects
{
    void Record(string line);
}

/// <summary>
/// Side effects appended to a file; each line is written and flushed to the kernel at once, so a SIGKILL right after
/// the call loses none (the crash-resume and job-board chaos both count on it).
/// </summary>
internal sealed class FileSideEffects(string path) : ISideEffects, IDisposable
{
    private readonly FileStream _stream = new(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
    private readonly Lock _gate = new();

    public void Record(string line)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(line + "\n");
        lock (_gate)
        {
            _stream.Write(bytes);
            _stream.Flush();
        }
    }

    public void Dispose() => _stream.Dispose();
}

/// <summary>Side effects kept in memory (the uninterrupted reference run).</summary>
internal sealed class MemorySideEffects : ISideEffects
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines { get { lock (_lines) return _lines.ToArray(); } }

    public void Record(string line) { lock (_lines) _lines.Add(line); }
}

/// <summary>When a chaos task fails: never, always, or unless its <c>value</c> argument is 3 (a retry's third value).</summary>
internal enum FailMode { Never, Always, UnlessValueIsThree }

/// <summary>
/// A task whose result depends only on its arguments (so a resumed run computes what an uninterrupted one does) and
/// which records each call before doing anything else.
/// </summary>
internal sealed class ChaosTask : FlowTask
{
    private readonly ISideEffects _effects;
    private readonly int _delayMs;
    private readonly FailMode _fail;

    public ChaosTask(string name, ISideEffects effects, int delayMs, FailMode fail = FailMode.Never) : base(name)
    {
        _effects = effects;
        _delayMs = delayMs;
        _fail = fail;
    }

    public override async ValueTask<object?> ExecuteAsync(TaskArguments arguments, TaskContext context)
    {
        _effects.Record("exec " + Name);
        if (_delayMs > 0) await Task.Delay(_delayMs, context.CancellationToken).ConfigureAwait(false);
        long sum = Name.Length;
        foreach (var (_, value) in arguments.ToDictionary())
            sum += ArgumentConverter.Convert<long>(value, Name, "input");
        bool fail = _fail switch
        {
            FailMode.Always => true,
            FailMode.UnlessValueIsThree => arguments.Get<long>("value") != 3,
            _ => false,
        };
        if (fail) throw new InvalidOperationException($"{Name} failed on purpose");
        return sum;
    }

    public override async ValueTask<object?> RevertAsync(TaskArguments arguments, TaskOutcome result, IReadOnlyDictionary<string, Failure> flowFailures, TaskContext context)
    {
        _effects.Record("revert " + Name);
        if (_delayMs > 0) await Task.Delay(_delayMs / 2, context.CancellationToken).ConfigureAwait(false);
        return null;
    }
}

/// <summary>The flow shapes the chaos runs: linear, fan-out, graph, retries, failures with full reverts.</summary>
internal static class ChaosFlows
{
    public static readonly string[] Shapes = ["linear", "linear-fail", "fanout", "graph", "retry", "nested-fail"];

    /// <summary>Builds a shape; <paramref name="delays"/> false for the reference run (no sleeping).</summary>
    public static Flow Build(string shape, ISideEffects fx, int seed, bool delays)
    {
        var rng = new Random(seed);
        int Delay() => delays ? rng.Next(2, 16) : 0;
        ChaosTask T(string name, string[]? requires = null, string? provides = null, FailMode fail = FailMode.Never) =>
            new(name, fx, Delay(), fail) { Requires = requires ?? [], Provides = provides is null ? ProvidesSpec.None : ProvidesSpec.Whole(provides) };

        switch (shape)
        {
            case "linear":
            case "linear-fail":
            {
                var flow = new LinearFlow(shape);
                for (int i = 1; i <= 8; i++)
                    flow.Add(T($"t{i}", i == 1 ? [] : [$"x{i - 1}"], $"x{i}", shape == "linear-fail" && i == 8 ? FailMode.Always : FailMode.Never));
                return flow;
            }
            case "fanout":
            {
                var fan = new UnorderedFlow("fan");
                for (int i = 1; i <= 8; i++) fan.Add(T($"u{i}", ["s"], $"y{i}"));
                return new LinearFlow(shape) { T("start", provides: "s"), fan, T("join", [.. Enumerable.Range(1, 8).Select(i => $"y{i}")], "total") };
            }
            case "graph":
                // Edges are inferred from requires/provides: a → b, c → d → e, and e also reads a.
                return new GraphFlow(shape)
                {
                    T("e", ["d", "a"], "e"),
                    T("d", ["b", "c"], "d"),
                    T("b", ["a"], "b"),
                    T("c", ["a"], "c"),
                    T("a", provides: "a"),
                };
            case "retry":
                return new LinearFlow(shape)
                {
                    T("prep", provides: "p"),
                    new LinearFlow("scope", new ForEachRetry([1, 2, 3]) { Name = "r", Provides = "value" })
                    {
                        T("before", ["p"], "q"),
                        T("flaky", ["q", "value"], "f", FailMode.UnlessValueIsThree),
                        T("after", ["f"], "g"),
                    },
                    T("final", ["g"], "h"),
                };
            case "nested-fail":
                return new LinearFlow(shape)
                {
                    T("a", provides: "a"),
                    new UnorderedFlow("u") { T("b", ["a"], "b"), T("c", ["a"], "c"), new LinearFlow("inner") { T("d", ["a"], "d"), T("e", ["d"], "e", FailMode.Always) } },
                    T("f", ["b", "c"], "f"),
                };
            default:
                throw new ArgumentException($"Unknown shape '{shape}'; known: {string.Join(", ", Shapes)}.", nameof(shape));
        }
    }
}
