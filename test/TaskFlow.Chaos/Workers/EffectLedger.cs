using System.Text;

namespace TaskFlow.Chaos.Workers;

/// <summary>
/// The side effects of the chaos tasks: each worker process appends "apply KEY" or "revert KEY" lines to a file of its
/// own (so concurrent processes never interleave writes), flushed before the task replies. A key's net effect is its
/// applies minus its reverts over every file; a line cut short by a kill (no newline) does not count.
/// </summary>
public sealed class EffectLedger(string directory)
{
    private readonly Lock _gate = new();

    public string Directory { get; } = directory;

    public void Append(string verb, string key)
    {
        var line = Encoding.UTF8.GetBytes($"{verb} {key}\n");
        lock (_gate)
        {
            using var file = new FileStream(Path.Combine(Directory, $"effects-{Environment.ProcessId}.log"), FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            file.Write(line);
            file.Flush(flushToDisk: false);
        }
    }

    /// <summary>Net effect per key (applies minus reverts) over every worker's file.</summary>
    public Dictionary<string, int> Net()
    {
        var net = new Dictionary<string, int>(StringComparer.Ordinal);
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
                int space = line.IndexOf(' ');
                if (space < 0) continue;
                var key = line[(space + 1)..];
                net[key] = net.GetValueOrDefault(key) + (line[..space] == "apply" ? 1 : -1);
            }
        }
        return net;
    }

    public int NetOf(string key) => Net().GetValueOrDefault(key);
}
