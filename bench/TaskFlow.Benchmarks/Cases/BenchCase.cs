using System.Diagnostics;
using System.Globalization;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Benchmarks.Cases;

/// <summary>One measured run: building the flow, compiling it (compile + prepare + validate), running it.</summary>
public readonly record struct BenchSample(TimeSpan Build, TimeSpan Compile, TimeSpan Run, long CompileAllocatedBytes, long RunAllocatedBytes)
{
    /// <summary>Garbage collections (of any generation) that happened during the run phase.</summary>
    public int RunCollections { get; init; }

    /// <summary>Of those, the ones of generation 1 or 2 (which copy or scan the run's long-lived state).</summary>
    public int RunOlderCollections { get; init; }

    /// <summary>B6: the part of the run after its last task failed (handling the failure, reverting, rethrowing).</summary>
    public TimeSpan? AfterFailure { get; init; }

    public TimeSpan Total => Build + Compile + Run;
}

/// <summary>
/// A benchmark case: a flow shape at a size, on an engine, optionally persisted. <see cref="RunOnceAsync"/> builds,
/// compiles and runs it once, checks the outcome (a run that did not do the work is an error, not a fast figure), and
/// returns the phase timings and bytes allocated.
/// </summary>
public sealed class BenchCase
{
    private readonly Func<BenchCase, (Flow Flow, Func<FlowEngine, Exception?, string?> Check)> _build;
    private readonly bool _seedsChain;

    private BenchCase(string group, string shape, int n, int tasks, bool parallel, int maxDegree, BenchBackend backend, bool compileOnly,
        string[]? anchorArguments, Func<BenchCase, (Flow, Func<FlowEngine, Exception?, string?>)> build, bool seedsChain = false)
    {
        _seedsChain = seedsChain;
        Group = group;
        Shape = shape;
        N = n;
        Tasks = tasks;
        Parallel = parallel;
        MaxDegreeOfParallelism = maxDegree;
        Backend = backend;
        CompileOnly = compileOnly;
        AnchorArguments = anchorArguments;
        _build = build;
    }

    public string Group { get; }
    public string Shape { get; }
    public int N { get; }

    /// <summary>What per-task figures divide by (atoms run, or retry rounds for B7).</summary>
    public int Tasks { get; }

    public bool Parallel { get; }
    public int MaxDegreeOfParallelism { get; }
    public BenchBackend Backend { get; }
    public bool CompileOnly { get; }

    /// <summary>B3: how long each middle task waits (zero for the no-op fan-out and every other case).</summary>
    public TimeSpan Delay { get; private init; }

    /// <summary>B3: whether the waits use <see cref="ExactDelay"/> rather than <see cref="Task.Delay(TimeSpan, CancellationToken)"/>.</summary>
    public bool ExactTimer { get; private init; }

    /// <summary>The arguments of <c>tfbench.py</c> that run the same shape on TaskFlow, or null when it has none.</summary>
    public string[]? AnchorArguments { get; }

    public string Name => $"{Group} {Shape} N={N.ToString("N0", CultureInfo.InvariantCulture)}";

    public override string ToString() => Name;

    // ------------------------------------------------------------------ the cases of issue 8

    public static BenchCase Linear(int n) => new("B1", "linear serial", n, n, false, 0, BenchBackend.None, false,
        ["linear", "--n", Num(n)], c => (BenchFlows.Linear(c.N), ExpectSuccess));

    public static BenchCase Chain(int n) => new("B2", "provides/requires chain", n, n, false, 0, BenchBackend.None, false,
        ["chain", "--n", Num(n)], c => (BenchFlows.Chain(c.N), (e, error) => ExpectSuccess(e, error) ?? (e.Storage.Fetch<int>($"v{c.N}") == c.N ? null : $"v{c.N} is not {c.N}")), seedsChain: true);

    /// <summary>
    /// B3: maxDegree -1 is unbounded (TaskFlow's anchor has no unbounded form: it gets none). Delayed tasks wait with
    /// <see cref="Task.Delay(TimeSpan, CancellationToken)"/>, or with <see cref="ExactDelay"/> when <paramref name="exactTimer"/>
    /// (TaskFlow's tasks sleep with <c>time.sleep</c>, which ends on time).
    /// </summary>
    public static BenchCase FanOut(int n, int delayMs, int maxDegree, bool exactTimer = false) =>
        new("B3", $"fan-out 1→n→1 {(delayMs > 0 ? $"{delayMs} ms {(exactTimer ? "exact timer" : "Task.Delay")}" : "no-op")} parallel {(maxDegree < 0 ? "unbounded" : $"w={maxDegree}")}", n, n + 2, true, maxDegree, BenchBackend.None, false,
            maxDegree < 0 ? null : ["fanout", "--n", Num(n), "--workers", Num(maxDegree), "--sleep-ms", Num(delayMs)],
            c => (BenchFlows.FanOut(c.N, c.Delay, c.ExactTimer), ExpectSuccess))
        { Delay = TimeSpan.FromMilliseconds(delayMs), ExactTimer = exactTimer };

    public static BenchCase Unordered(int n, int maxDegree = 8) => new("B4", $"unordered parallel w={maxDegree}", n, n, true, maxDegree, BenchBackend.None, false,
        ["unordered", "--n", Num(n), "--workers", Num(maxDegree)], c => (BenchFlows.Unordered(c.N), ExpectSuccess));

    /// <summary>B5: the serial engine runs B1's linear flow persisted; the parallel one B4's unordered flow, whose independent atoms it may save in one batch.</summary>
    public static BenchCase Persisted(int n, BenchBackend backend, bool parallel = false) =>
        new("B5", $"{(parallel ? "unordered parallel w=8" : "linear serial")} persisted {BenchBackends.Describe(backend)}", n, n, parallel, parallel ? 8 : 0, backend, false,
            AnchorBackend(backend) is { } b && !parallel ? ["persist", "--n", Num(n), "--backend", b] : null,
            c => (parallel ? BenchFlows.Unordered(c.N) : BenchFlows.Linear(c.N), ExpectSuccess));

    public static BenchCase FailLast(int n) => new("B6", "linear, last fails, full revert", n, n, false, 0, BenchBackend.None, false,
        ["faillast", "--n", Num(n)], c => (BenchFlows.FailLast(c.N), (e, error) =>
        {
            if (error is not InvalidOperationException) return $"expected the task's InvalidOperationException, got {error?.GetType().Name ?? "success"}";
            if (e.State != FlowState.Reverted) return $"flow ended {e.State}, not REVERTED";
            foreach (var (name, (state, _)) in e.Storage.GetAtomStates())
                if (state != AtomState.Reverted) return $"atom {name} ended {state}, not REVERTED";
            return null;
        }));

    public static BenchCase Retry(int n) => new("B7", "TimesRetry(n), task fails n-1 times", n, n, false, 0, BenchBackend.None, false,
        ["retry", "--n", Num(n)], c =>
        {
            var flow = BenchFlows.Retry(c.N, out var flaky);
            return (flow, (e, error) => ExpectSuccess(e, error)
                ?? (flaky.Calls == c.N && flaky.Reverts == c.N - 1 ? null : $"task ran {flaky.Calls} times and reverted {flaky.Reverts}, expected {c.N} and {c.N - 1}"));
        });

    /// <summary>Compile + prepare + validate only, of a linear flow or of a graph flow whose edges come from the data.</summary>
    public static BenchCase Compile(int n, bool graph) => new("C", graph ? "compile+validate graph (data edges)" : "compile+validate linear", n, n, false, 0, BenchBackend.None, true,
        graph ? null : ["linear", "--n", Num(n), "--stop-after-compile"], c => (graph ? BenchFlows.GraphChain(c.N) : BenchFlows.Linear(c.N), ExpectSuccess), seedsChain: graph);

    private static string? AnchorBackend(BenchBackend backend) => backend switch
    {
        BenchBackend.Memory => "memory",
        BenchBackend.Directory => "dir",
        BenchBackend.SqliteFsync or BenchBackend.SqliteWal => "sqlite",
        _ => null,
    };

    private static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static string? ExpectSuccess(FlowEngine engine, Exception? error) =>
        error is not null ? $"run failed: {error.GetType().Name}: {error.Message}"
        : engine.State != FlowState.Success ? $"flow ended {engine.State}, not SUCCESS" : null;

    // ------------------------------------------------------------------ running

    /// <summary>
    /// Builds, compiles and runs the case once; throws <see cref="BenchCheckException"/> when the outcome is wrong.
    /// <paramref name="settleBeforeRun"/> collects garbage between compile and run (for measured samples; warm-up runs skip it).
    /// </summary>
    public async Task<BenchSample> RunOnceAsync(BenchBackends backends, bool settleBeforeRun = true)
    {
        await using var run = await PrepareAsync(backends).ConfigureAwait(false);
        if (CompileOnly) return run.Prepared;
        if (!settleBeforeRun) return await run.ExecuteAsync().ConfigureAwait(false);
        Heap.Settle(); // between compile and run, as BenchmarkDotNet collects between setup and measurement (see Heap)
        return await run.ExecuteAsync().ConfigureAwait(false);
    }

    /// <summary>Creates the backend, builds the flow and compiles it (timed), ready for <see cref="PreparedRun.ExecuteAsync"/>.</summary>
    public async Task<PreparedRun> PrepareAsync(BenchBackends backends)
    {
        ArgumentNullException.ThrowIfNull(backends);
        var persistence = await backends.CreateAsync(Backend).ConfigureAwait(false);
        try
        {
            var options = new EngineOptions
            {
                Persistence = persistence,
                MaxDegreeOfParallelism = Parallel ? MaxDegreeOfParallelism : 1,
            };
            // The chains read v0 from the store (TaskFlow's store={'v0': 0}).
            if (_seedsChain) options.Store["v0"] = 0;

            long a0 = GC.GetTotalAllocatedBytes(precise: true);
            long t0 = Stopwatch.GetTimestamp();
            var (flow, check) = _build(this);
            long t1 = Stopwatch.GetTimestamp();
            var engine = Parallel ? FlowEngine.CreateParallel(flow, options) : FlowEngine.CreateSerial(flow, options);
            engine.Compile();
            await engine.PrepareAsync().ConfigureAwait(false);
            engine.Validate();
            long t2 = Stopwatch.GetTimestamp();
            long a1 = GC.GetTotalAllocatedBytes(precise: true);
            var prepared = new BenchSample(Stopwatch.GetElapsedTime(t0, t1), Stopwatch.GetElapsedTime(t1, t2), TimeSpan.Zero, a1 - a0, 0);
            return new PreparedRun(this, engine, check, persistence, prepared);
        }
        catch
        {
            if (persistence is not null) await persistence.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>A compiled, prepared engine of a case, run once by <see cref="ExecuteAsync"/>.</summary>
    public sealed class PreparedRun : IAsyncDisposable
    {
        private readonly Func<FlowEngine, Exception?, string?> _check;
        private readonly IPersistenceBackend? _persistence;

        internal PreparedRun(BenchCase benchCase, FlowEngine engine, Func<FlowEngine, Exception?, string?> check, IPersistenceBackend? persistence, BenchSample prepared)
        {
            Case = benchCase;
            Engine = engine;
            _check = check;
            _persistence = persistence;
            Prepared = prepared;
        }

        public BenchCase Case { get; }
        public FlowEngine Engine { get; }

        /// <summary>The build and compile timings (run empty).</summary>
        public BenchSample Prepared { get; }

        /// <summary>Runs the engine, checks the outcome and returns all the phases' timings.</summary>
        public async Task<BenchSample> ExecuteAsync()
        {
            Exception? error = null;
            int g0 = GC.CollectionCount(0), g1 = GC.CollectionCount(1);
            long a0 = GC.GetTotalAllocatedBytes(precise: true);
            long t0 = Stopwatch.GetTimestamp();
            try
            {
                await Engine.RunAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                error = e;
            }
            long t1 = Stopwatch.GetTimestamp();
            long a1 = GC.GetTotalAllocatedBytes(precise: true);
            if (_check(Engine, error) is { } problem) throw new BenchCheckException($"{Case.Name}: {problem}", error);
            // B6's failing task is the flow's last child: it notes when it failed.
            TimeSpan? afterFailure = Engine.Flow is { Count: > 0 } flow && flow.Items[^1] is FailingTask { FailedAt: > 0 } failing
                ? Stopwatch.GetElapsedTime(failing.FailedAt, t1) : null;
            return Prepared with
            {
                Run = Stopwatch.GetElapsedTime(t0, t1), RunAllocatedBytes = a1 - a0, AfterFailure = afterFailure,
                RunCollections = GC.CollectionCount(0) - g0, RunOlderCollections = GC.CollectionCount(1) - g1,
            };
        }

        public ValueTask DisposeAsync() => _persistence?.DisposeAsync() ?? ValueTask.CompletedTask;
    }
}

/// <summary>A benchmark run did not do what it measures (wrong final state or result).</summary>
public sealed class BenchCheckException(string message, Exception? inner) : Exception(message, inner);
