using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using TaskFlow.Cli.Books;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Stores;
using TaskFlow.Engines;
using TaskFlow.Failures;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.States;
using TaskFlow.Storage;

namespace TaskFlow.Cli.Running;

/// <summary><c>taskflow run</c>: builds a flow with a factory method and runs it, showing progress and a summary.</summary>
internal static class RunCommand
{
    public static Command Create(CommonOptions common, Func<CliConsole> console)
    {
        var store = new Option<string[]>("--store")
        {
            Description = "A flow input, name=value (repeatable). JSON values (2, true, \"text\", [1,2]) keep their type; anything else is a string.",
            AllowMultipleArgumentsPerToken = false,
        };
        var resume = new Option<string?>("--resume")
        {
            Description = "Resume this saved flow detail (needs --db; the start of its id is enough, as for books): atoms that finished are not run again.",
        };
        var parallel = new Option<int?>("--parallel")
        {
            Description = "Run with the parallel engine, at most N tasks at once (-1: no limit). Omitted: the serial engine.",
        };
        var command = new Command("run", "Run a flow built by a factory method, with progress and a final summary.")
        {
            common.Assembly, common.Factory, store, common.OptionalDb, common.DbFile, common.Schema, resume, parallel,
        };
        command.SetAction(async (parse, ct) =>
        {
            var c = console();
            var resumeText = parse.GetValue(resume);
            // A new run is saved only where --db or --db-file says; $TASKFLOW_DB names the store of a run to resume.
            var db = StoreLocator.Resolve(parse, common.OptionalDb, common, useEnvironment: resumeText is not null, c);
            if (resumeText is not null && db is null)
                throw new CliException(ExitCodes.Usage, "--resume needs --db: the flow detail to resume is read from the store.", $"Add --db (or --db-file, or set {CommonOptions.DbVariable}) with the store the run was saved to.");
            var degree = parse.GetValue(parallel);
            if (degree is 0 or < -1)
                throw new CliException(ExitCodes.Usage, $"--parallel {degree} is not a number of tasks.", "Give a positive number, or -1 for no limit.");
            var values = StoreValues.Parse(parse.GetValue(store) ?? []);
            var flow = await FlowFactoryLoader.CreateFlowAsync(parse.GetValue(common.Assembly)!, parse.GetValue(common.Factory)!);

            await using var target = db is null ? null : StoreLocator.Open(db, parse.GetValue(common.Schema)!, resumeText is null ? StoreAccess.Create : StoreAccess.Existing, c.Redactor);
            if (target is not null) await target.CheckAsync(ct);
            Guid? resumeId = null;
            if (resumeText is not null && target is not null)
            {
                if (Guid.TryParse(resumeText, out var full))
                {
                    if (await target.Backend.GetFlowDetailAsync(full, ct) is null)
                        throw new CliException(ExitCodes.NotFound, $"{target.DisplayName} has no flow detail {full} to resume.", $"Saved runs are listed by: taskflow books list --db {db}");
                    resumeId = full;
                }
                else resumeId = (await BookCatalog.LoadAsync(target.Backend, ct)).FindFlowDetail(resumeText).Id;
            }
            var flowDetailId = resumeId ?? (target is null ? null : Guid.CreateVersion7());
            var options = new EngineOptions
            {
                Store = values,
                Persistence = target?.Backend,
                FlowDetailId = flowDetailId,
                MaxDegreeOfParallelism = degree ?? Environment.ProcessorCount + 1,
            };
            var engine = degree is null ? FlowEngine.CreateSerial(flow, options) : FlowEngine.CreateParallel(flow, options);
            try
            {
                engine.Compile();
            }
            catch (TaskFlowException e)
            {
                throw new CliException(ExitCodes.InvalidFlow, $"Flow '{flow.Name}' is not valid: {e.Message}", "Fix the flow definition in the factory.", e);
            }

            c.Line($"Running flow '{flow.Name}' ({(degree is null ? "serial engine" : $"parallel engine, {(degree == -1 ? "no limit" : $"up to {degree} at once")}")})"
                + (target is null ? "" : $", saved as flow detail {flowDetailId} in {target.DisplayName}"));
            Exception? error = null;
            try
            {
                if (c.Interactive) await RunLiveAsync(c, engine, flow, ct);
                else await RunPlainAsync(c, engine, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                throw new CliException(ExitCodes.Cancelled, $"Interrupted; flow '{flow.Name}' is {engine.State.ToTaskFlowName()}.",
                    target is null ? null : $"Continue it with: taskflow run … --db {db} --resume {flowDetailId}");
            }
            catch (MissingDependenciesException e)
            {
                throw new CliException(ExitCodes.InvalidFlow, e.Message, "Give the missing inputs with --store name=value.", e);
            }
            catch (FlowDefinitionException e)
            {
                throw new CliException(ExitCodes.InvalidFlow, e.Message, resumeId is null ? "Fix the flow definition in the factory." : "The saved run was made by another definition of the flow; resume it with the factory that made it.", e);
            }
            catch (PersistenceException e)
            {
                throw new CliException(ExitCodes.StoreError, $"Saving the run failed: {e.Message}", null, e);
            }
            catch (Exception e)
            {
                error = e;
            }

            if (!c.Interactive) WriteSummary(c, engine); // on a terminal the live table ends as the summary
            if (error is null)
            {
                c.Line($"Flow '{flow.Name}' {engine.State.ToTaskFlowName()}");
                return ExitCodes.Success;
            }
            throw new CliException(ExitCodes.FlowFailed, $"Flow '{flow.Name}' {engine.State.ToTaskFlowName()}: {error.GetType().Name}: {error.Message}",
                target is null ? "Run with --verbose for the stack." : $"Details (with stacks): taskflow books show {flowDetailId} --db {db}", error);
        });
        return command;
    }

    private static async Task RunPlainAsync(CliConsole console, FlowEngine engine, CancellationToken ct)
    {
        using var _ = engine.Notifications.Subscribe<AtomStateChanged>(e =>
            console.Line($"  {e.AtomName} {e.State.ToTaskFlowName()}"));
        await engine.RunAsync(ct);
    }

    private static async Task RunLiveAsync(CliConsole console, FlowEngine engine, Flow flow, CancellationToken ct)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumns("Atom", "State", "Progress", "Result");
        var rows = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var name in AtomNames(flow))
        {
            rows[name] = rows.Count;
            table.AddRow(BookTables.Esc(name), BookTables.State(AtomState.Pending), "", "");
        }
        var spectre = console.CreateSpectreConsole(console.Output);
        await spectre.Live(table).StartAsync(async live =>
        {
            var gate = new Lock();
            using var states = engine.Notifications.Subscribe<AtomStateChanged>(e =>
            {
                lock (gate)
                {
                    if (!rows.TryGetValue(e.AtomName, out var row)) return;
                    table.UpdateCell(row, 1, BookTables.State(e.State));
                    live.Refresh();
                }
            });
            using var progress = engine.Notifications.Subscribe<TaskProgressChanged>(e =>
            {
                lock (gate)
                {
                    if (!rows.TryGetValue(e.AtomName, out var row)) return;
                    table.UpdateCell(row, 2, (e.Progress * 100).ToString("0", CultureInfo.InvariantCulture) + "%");
                    live.Refresh();
                }
            });
            try
            {
                await engine.RunAsync(ct);
            }
            finally
            {
                lock (gate)
                {
                    foreach (var (name, result) in Results(engine))
                        if (rows.TryGetValue(name, out var row)) table.UpdateCell(row, 3, BookTables.Esc(result));
                    live.Refresh();
                }
            }
        });
    }

    /// <summary>Each atom's result, or its failure as "Type: message", by atom name.</summary>
    private static IEnumerable<(string Atom, string Result)> Results(FlowEngine engine)
    {
        FlowStorage storage;
        try { storage = engine.Storage; } catch (InvalidOperationException) { yield break; }
        var failures = storage.GetFailures();
        foreach (var (name, (state, _)) in storage.GetAtomStates())
            yield return (name, state == AtomState.Success ? Result(storage, name)
                : failures.TryGetValue(name, out var f) ? $"{f.ExceptionTypeName[(f.ExceptionTypeName.LastIndexOf('.') + 1)..]}: {f.Message}" : "");
    }

    private static IEnumerable<string> AtomNames(FlowNode node) => node switch
    {
        Flow f => (f.Retry is null ? [] : new[] { f.Retry.Name }).Concat(f.SelectMany(AtomNames)),
        _ => [node.Name],
    };

    private static void WriteSummary(CliConsole console, FlowEngine engine)
    {
        IReadOnlyDictionary<string, (AtomState State, AtomIntention Intention)> states;
        try { states = engine.Storage.GetAtomStates(); }
        catch (InvalidOperationException) { return; } // the run never started: nothing to summarise
        var table = console.NewTable("Atom", "State", "Result");
        foreach (var (name, result) in Results(engine))
            table.AddRow(BookTables.Esc(name), BookTables.State(states[name].State), BookTables.Esc(result));
        console.Write(table);
    }

    private static string Result(FlowStorage storage, string atom)
    {
        try { return Describe(storage.GetResult(atom)); }
        catch (NotFoundException) { return ""; }
    }

    private static string Describe(object? value) => value switch
    {
        null => "null",
        string s => s,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => System.Text.Json.JsonSerializer.Serialize(value),
    };
}
