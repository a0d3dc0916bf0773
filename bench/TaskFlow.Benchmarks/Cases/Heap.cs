namespace TaskFlow.Benchmarks.Cases;

/// <summary>The one collection the harness forces: between a sample's compile and its run.</summary>
/// <remarks>
/// As BenchmarkDotNet collects between an iteration's setup and its measurement: without it, the run's first
/// collections would pay to promote what build and compile just allocated (compile's cost, not the run's). It is a
/// full but non-compacting collection, and nothing is forced before a sample's build: a compacting full collection
/// hands the freed regions back to the operating system, and the next phase then page-faults them in again (measured
/// on a 100k linear flow: 4,600 more minor page faults per sample, compile 33 → 80 ms, run 35 → 52 ms) — a cost a
/// long-running process, whose collector is never forced, does not pay.
/// </remarks>
public static class Heap
{
    public static void Settle()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
    }
}
