using System.CommandLine;
using TaskFlow.Cli.Books;
using TaskFlow.Cli.Console;
using TaskFlow.Cli.Running;
using TaskFlow.Cli.Stores;
using TaskFlow.Diagrams;
using TaskFlow.Failures;
using TaskFlow.States;

namespace TaskFlow.Cli.Diagrams;

/// <summary><c>taskflow graph</c>: a flow definition, or a saved run coloured by its atoms' states, as Mermaid, DOT or SVG.</summary>
internal static class GraphCommand
{
    public static Command Create(CommonOptions common, Func<CliConsole> console)
    {
        var format = new Option<string>("--format")
        {
            Description = "mermaid (paste into Markdown), dot (Graphviz source) or svg (drawn by Graphviz's dot, which must be installed).",
            DefaultValueFactory = _ => "mermaid",
        };
        format.AcceptOnlyFromAmong("mermaid", "dot", "svg");
        var flowDetail = new Option<string?>("--flow-detail")
        {
            Description = "Colour the atoms by their states in this saved run (needs --db); the start of the id is enough.",
        };
        var command = new Command("graph", "Draw a flow built by a factory method, optionally with the states of a saved run.")
        {
            common.Assembly, common.Factory, format, flowDetail, common.OptionalDb, common.DbFile, common.Schema,
        };
        command.SetAction(async (parse, ct) =>
        {
            var c = console();
            var detailId = parse.GetValue(flowDetail);
            var db = StoreLocator.Resolve(parse, common.OptionalDb, common, useEnvironment: detailId is not null, c);
            if (detailId is not null && db is null)
                throw new CliException(ExitCodes.Usage, "--flow-detail needs --db: the saved run is read from the store.", $"Add --db (or --db-file, or set {CommonOptions.DbVariable}) with the store the run was saved to.");
            var flow = await FlowFactoryLoader.CreateFlowAsync(parse.GetValue(common.Assembly)!, parse.GetValue(common.Factory)!);
            FlowInfo info;
            try
            {
                info = FlowInfo.FromFlow(flow);
            }
            catch (TaskFlowException e)
            {
                throw new CliException(ExitCodes.InvalidFlow, $"Flow '{flow.Name}' is not valid: {e.Message}", "Fix the flow definition in the factory.", e);
            }

            IReadOnlyDictionary<string, AtomState>? states = null;
            if (detailId is not null)
            {
                await using var store = StoreLocator.Open(db!, parse.GetValue(common.Schema)!, StoreAccess.ReadOnly, c.Redactor);
                var catalog = await BookCatalog.LoadAsync(store.Backend, ct);
                var detail = catalog.FindFlowDetail(detailId);
                var unknown = detail.Atoms.Select(a => a.Name).Except(info.Atoms.Select(a => a.Name)).ToList();
                if (unknown.Count > 0)
                    throw new CliException(ExitCodes.InvalidFlow,
                        $"Flow detail {detail.Id} ('{detail.Name}') has atoms that flow '{flow.Name}' does not: {string.Join(", ", unknown)}.",
                        "Draw the run with the factory that made it.");
                states = FlowDiagram.StatesOf(detail);
            }

            var text = parse.GetValue(format) switch
            {
                "dot" => FlowDiagram.ToDot(info, states),
                "svg" => await Graphviz.ToSvgAsync(FlowDiagram.ToDot(info, states), ct),
                _ => FlowDiagram.ToMermaid(info, states),
            };
            c.Output.Write(c.Redactor.Redact(text));
            return ExitCodes.Success;
        });
        return command;
    }
}
