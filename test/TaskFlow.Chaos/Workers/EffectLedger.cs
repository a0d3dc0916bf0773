using System.Globalization;
using System.Text;

namespace TaskFlow.Chaos.Workers;

/// <summary>One line of the ledger: what a worker process did, when (UTC ticks, one clock for every process on the host).</summary>
/// <param name="Ticks">When.</param>
/// <param name="Verb"><c>apply</c>, <c>revert</c> or <c>refuse</c>.</param>
/// <param name="Flow">The flow id (<c>-</c> for refusals).</param>
/// <param name="Atom">The atom (<c>-</c> for refusals).</param>
/// <param name="RequestId">The request that did it.</param>
/// <param name="Target">
/// For a revert, what it undid: the request id of the apply (its execute's result), <see cref="EffectLedger.Blind"/> (the
/// execute's outcome is unknown, so everything of the atom applied so far) or <see cref="EffectLedger.Nothing"/>; for a
/// refusal, the reason; <c>-</c> for an apply.
/// </param>
public sealed record LedgerEntry(long Ticks, string Verb, string Flow, string Atom, string RequestId, string Target);

/// <summary>
/// The checker's record of side effects, written by the worker processes: every apply, revert and refusal with its
/// request id, one line each, appended to a file per process (so concurrent processes never interleave writes) and
/// flushed before the task replies. Counted gross, never net. The tasks only ever write here; they never read it.
/// A line cut short by a kill (no newline) does not count.
/// </summary>
public sealed class EffectLedger(string directory)
{
    /// <summary>A revert that undoes whatever its atom applied before it (the execute's outcome was unknown).</summary>
    public const string Blind = "*";

    /// <summary>A revert that knew nothing had been applied (its execute failed before applying).</summary>
    public const string Nothing = "none";

    private readonly Lock _gate = new();

    public string Directory { get; } = directory;

    public void Append(string verb, string flow, string atom, string requestId, string target)
    {
        var line = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{DateTime.UtcNow.Ticks} {verb} {flow} {atom} {requestId} {target}\n"));
        lock (_gate)
        {
            using var file = new FileStream(Path.Combine(Directory, $"effects-{Environment.ProcessId}.log"), FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            file.Write(line);
            file.Flush(flushToDisk: false);
        }
    }

    /// <summary>Every complete line of every worker's file.</summary>
    public List<LedgerEntry> Read()
    {
        var entries = new List<LedgerEntry>();
        foreach (var path in System.IO.Directory.GetFiles(Directory, "effects-*.log"))
        {
            string text;
            using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
            using (var reader = new StreamReader(file, Encoding.UTF8))
                text = reader.ReadToEnd();
            int end = text.LastIndexOf('\n');
            if (end < 0) continue;
            foreach (var line in text[..end].Split('\n'))
            {
                var f = line.Split(' ');
                if (f.Length == 6 && long.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out long ticks))
                    entries.Add(new LedgerEntry(ticks, f[1], f[2], f[3], f[4], f[5]));
            }
        }
        entries.Sort((a, b) => a.Ticks.CompareTo(b.Ticks));
        return entries;
    }
}
