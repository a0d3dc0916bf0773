namespace TaskFlow.Conformance;

/// <summary>Picks scenarios spread over every area (the word after the number in "017-unordered-fan-out.json").</summary>
public static class ScenarioSubset
{
    public static string Area(string file)
    {
        var parts = Path.GetFileNameWithoutExtension(file).Split('-');
        return parts.Length > 1 ? parts[1] : parts[0];
    }

    /// <summary>Up to <paramref name="size"/> files, taken round-robin from each area in file order.</summary>
    public static List<string> Spread(IReadOnlyList<string> files, int size)
    {
        var queues = files.GroupBy(Area).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => new Queue<string>(g)).ToList();
        var picked = new List<string>();
        while (picked.Count < size && queues.Any(q => q.Count > 0))
            foreach (var q in queues)
                if (picked.Count < size && q.Count > 0) picked.Add(q.Dequeue());
        return [.. picked.Order(StringComparer.Ordinal)];
    }
}
