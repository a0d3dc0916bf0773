using System.Globalization;
using TaskFlow.Jobs;
using TaskFlow.Persistence;
using TaskFlow.States;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>One execution of a task, from its conductor's log: the claim epoch it ran under and when (monotonic clock).</summary>
internal sealed record Execution(string Process, long Epoch, long Start, long? End, string Outcome);

/// <summary>What the conductors' logs say (one file per process), read once after the run.</summary>
internal sealed class JobboardLogs
{
    public JobboardLogs(string work, IReadOnlyDictionary<string, long?> killedAt)
    {
        foreach (var file in Directory.EnumerateFiles(work, "*.log"))
        {
            var process = Path.GetFileNameWithoutExtension(file);
            var open = new Dictionary<(long, string, long, long), int>();
            foreach (var p in File.ReadAllLines(file).Select(l => l.Split(' ')).Where(p => p.Length >= 2))
            {
                long L(int i) => long.Parse(p[i], CultureInfo.InvariantCulture);
                switch (p[0])
                {
                    case "exec":
                        var list = Executions.TryGetValue((L(1), p[2]), out var l) ? l : Executions[(L(1), p[2])] = [];
                        // Until its end line is read: a killed process's last executions end when the kill was seen.
                        list.Add(new Execution(process, L(3), L(4), killedAt.GetValueOrDefault(process), "killed"));
                        open[(L(1), p[2], L(3), L(4))] = list.Count - 1;
                        break;
                    case "end":
                        if (open.Remove((L(1), p[2], L(3), L(4)), out var at))
                            Executions[(L(1), p[2])][at] = Executions[(L(1), p[2])][at] with { End = L(5), Outcome = p[6] };
                        else Problems.Add($"{process}: an end line without its exec line: {string.Join(' ', p)}");
                        break;
                    case "saved":
                        var key = (L(1), p[2]);
                        if (!FirstSaved.TryGetValue(key, out var first) || L(4) < first.Time) FirstSaved[key] = (L(3), L(4));
                        break;
                    case "consumed": Consumed[L(1)] = Consumed.GetValueOrDefault(L(1)) + 1; break;
                    case "refused": Refusals[p[2]] = Refusals.GetValueOrDefault(p[2]) + 1; break;
                    case "lost": ClaimsLost++; break;
                    case "abandoned":
                        var why = string.Join(' ', p.Skip(2));
                        Abandons[why] = Abandons.GetValueOrDefault(why) + 1;
                        break;
                    case "stall":
                        Stalls++;
                        LongestStallMs = Math.Max(LongestStallMs, int.Parse(p[2].TrimEnd('m', 's'), CultureInfo.InvariantCulture));
                        break;
                    case "revert": Problems.Add($"job {L(1)}: task {p[2]} was reverted"); break;
                }
            }
        }
        var epochs = Executions.SelectMany(e => e.Value.Select(x => (Job: e.Key.Job, x.Epoch))).Distinct().ToList();
        EpochsSeen = epochs.Count;
        JobsUnderSeveralEpochs = epochs.GroupBy(e => e.Job).Count(g => g.Count() > 1);
    }

    public Dictionary<(long Job, string Task), List<Execution>> Executions { get; } = [];

    /// <summary>The first save that returned with the task SUCCESS: its epoch and time.</summary>
    public Dictionary<(long Job, string Task), (long Epoch, long Time)> FirstSaved { get; } = [];

    public Dictionary<long, int> Consumed { get; } = [];

    /// <summary>Writes the store refused, by write ("save_atom_details", "take_ownership", …).</summary>
    public Dictionary<string, int> Refusals { get; } = [];

    public Dictionary<string, int> Abandons { get; } = [];

    public List<string> Problems { get; } = [];

    public int ClaimsLost { get; private set; }

    public int Stalls { get; private set; }

    public int LongestStallMs { get; private set; }

    /// <summary>How many (job, claim epoch) pairs executed at least one task.</summary>
    public int EpochsSeen { get; }

    public int JobsUnderSeveralEpochs { get; }
}

/// <summary>
/// The rules every job is judged by, with no allowance for any conductor: the job is COMPLETE and was consumed once;
/// its saved run is exactly the expected one (flow SUCCESS, every atom SUCCESS, <c>join</c>'s result what an
/// uninterrupted run computes); every task executed at least once, at most once per claim epoch, never under two epochs
/// at overlapping times (at-least-once across epochs only when the earlier execution ended before the later started),
/// and never again after a save of its SUCCESS had returned.
/// </summary>
internal sealed class JobboardChecks(JobboardLogs logs, IPersistenceBackend persistence)
{
    /// <summary>Executions after the first of their task, all under later epochs and after the earlier ones ended.</summary>
    public int Reexecutions { get; private set; }

    public async Task<string?> CheckJobAsync(long index, Job posted, Job? final)
    {
        if (final is null) return "the job is gone from the board";
        if (final.State != JobState.Complete) return $"the job ended {final.State}, not Complete (claimed {final.ClaimCount} times)";
        if (logs.Consumed.GetValueOrDefault(index) > 1) return $"consumed {logs.Consumed[index]} times";
        var detail = await persistence.GetFlowDetailAsync(posted.FlowDetailId);
        if (detail is null) return "its flow detail was never saved";
        if (detail.State != FlowState.Success) return $"its flow detail ended {detail.State} (claimed {final.ClaimCount} times)";
        var steps = JobboardFlows.Steps(posted.FactoryArguments);
        foreach (var task in JobboardFlows.TaskNames(steps))
        {
            var atom = detail.FindAtom(task);
            if (atom?.State != AtomState.Success)
                return $"task {task} ended {atom?.State.ToString() ?? "missing"} in the saved run, although the flow is SUCCESS and the job COMPLETE (claimed {final.ClaimCount} times)";
            var runs = logs.Executions.GetValueOrDefault((index, task)) ?? [];
            if (runs.Count == 0) return $"task {task} is SUCCESS but never executed";
            if (runs.GroupBy(r => r.Epoch).FirstOrDefault(g => g.Count() > 1) is { } twice)
                return $"task {task} executed {twice.Count()} times under epoch {twice.Key}";
            var ordered = runs.OrderBy(r => r.Start).ToList();
            for (var i = 0; i < ordered.Count; i++)
                for (var j = i + 1; j < ordered.Count; j++)
                    if ((ordered[i].End ?? long.MaxValue) > ordered[j].Start)
                        return $"task {task} executed under epochs {ordered[i].Epoch} ({ordered[i].Process}) and {ordered[j].Epoch} ({ordered[j].Process}) at the same time " +
                               (ordered[i].End is { } end ? $"({Ms(ordered[j].Start, end)} ms overlap)" : "(the earlier one never ended)");
            if (logs.FirstSaved.TryGetValue((index, task), out var saved) && ordered.FirstOrDefault(r => r.Start > saved.Time) is { } late)
                return $"task {task} executed again under epoch {late.Epoch} ({late.Process}) {Ms(saved.Time, late.Start)} ms after its SUCCESS was saved under epoch {saved.Epoch}";
            Reexecutions += runs.Count - 1;
        }
        var result = ((TaskDetail)detail.FindAtom("join")!).Result!.Value.GetInt64();
        var expected = JobboardFlows.ExpectedResult(steps, posted.Store["v0"].GetInt64());
        return result == expected ? null : $"join saved {result}, an uninterrupted run computes {expected}";
    }

    private static string Ms(long from, long to) =>
        ((to - from) * 1000.0 / System.Diagnostics.Stopwatch.Frequency).ToString("F1", CultureInfo.InvariantCulture);
}
