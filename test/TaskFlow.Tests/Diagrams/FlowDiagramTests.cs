using TaskFlow.Atoms;
using TaskFlow.Diagrams;
using TaskFlow.Engines;
using TaskFlow.Flows;
using TaskFlow.Notifications;
using TaskFlow.Persistence;
using TaskFlow.Retries;
using TaskFlow.States;

namespace TaskFlow.Tests.Diagrams;

public sealed class FlowDiagramTests
{
    private static FlowTask Task(string name) => FlowTask.Create(name, () => 1);

    private static Flow Linear() => new LinearFlow("volume") { Task("create_db"), Task("create_backend"), Task("mark_available") };

    private static Flow Unordered() => new UnorderedFlow("fan-out") { Task("a"), Task("b"), Task("c") };

    private static Flow GraphWithDecider()
    {
        var fetch = FlowTask.Create("fetch", () => 1, provides: "x");
        var use = FlowTask.Create("use", (int x) => x + 1);
        var maybe = Task("maybe");
        var graph = new GraphFlow("graph");
        graph.Add(fetch, use, maybe);
        return graph.Link(fetch, maybe, history => false);
    }

    private static Flow NestedWithRetry() => new LinearFlow("outer")
    {
        Task("first"),
        new UnorderedFlow("inner", new TimesRetry(2) { Name = "again" }) { Task("u1"), Task("u2") },
        Task("last"),
    };

    [Fact]
    public void ToMermaid_LinearFlow_ChainsTheTasksInsideOneSubgraph()
    {
        var text = FlowDiagram.ToMermaid(FlowInfo.FromFlow(Linear()));
        Assert.Equal("""
            flowchart TB
                subgraph f0 ["volume (linear)"]
                    a0["create_db"]
                    a1["create_backend"]
                    a2["mark_available"]
                end
                a0 --> a1
                a1 --> a2

            """, text);
        MermaidSyntax.Check(text);
    }

    [Fact]
    public void ToDot_LinearFlow_ChainsTheTasksInsideOneCluster()
    {
        Assert.Equal("""
            digraph "volume" {
                rankdir=TB;
                node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                subgraph cluster_f0 {
                    label="volume (linear)";
                    style=rounded;
                    a0 [label="create_db"];
                    a1 [label="create_backend"];
                    a2 [label="mark_available"];
                }
                a0 -> a1;
                a1 -> a2;
            }

            """, FlowDiagram.ToDot(FlowInfo.FromFlow(Linear())));
    }

    [Fact]
    public void Render_UnorderedFlow_HasNoEdges()
    {
        var info = FlowInfo.FromFlow(Unordered());
        Assert.Empty(info.Edges);
        var mermaid = FlowDiagram.ToMermaid(info);
        Assert.Equal("""
            flowchart TB
                subgraph f0 ["fan-out (unordered)"]
                    a0["a"]
                    a1["b"]
                    a2["c"]
                end

            """, mermaid);
        MermaidSyntax.Check(mermaid);
        Assert.Equal("""
            digraph "fan-out" {
                rankdir=TB;
                node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                subgraph cluster_f0 {
                    label="fan-out (unordered)";
                    style=rounded;
                    a0 [label="a"];
                    a1 [label="b"];
                    a2 [label="c"];
                }
            }

            """, FlowDiagram.ToDot(info));
    }

    [Fact]
    public void Render_GraphWithDecider_DrawsInferredEdgeSolidAndDeciderEdgeDashed()
    {
        var info = FlowInfo.FromFlow(GraphWithDecider());
        Assert.Equal([new FlowEdge("fetch", "use"), new FlowEdge("fetch", "maybe", DeciderDepth.All)], info.Edges);
        var mermaid = FlowDiagram.ToMermaid(info);
        Assert.Equal("""
            flowchart TB
                subgraph f0 ["graph (graph)"]
                    a0["fetch"]
                    a1["use"]
                    a2["maybe"]
                end
                a0 --> a1
                a0 -.->|"decider"| a2

            """, mermaid);
        MermaidSyntax.Check(mermaid);
        Assert.Equal("""
            digraph "graph" {
                rankdir=TB;
                node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                subgraph cluster_f0 {
                    label="graph (graph)";
                    style=rounded;
                    a0 [label="fetch"];
                    a1 [label="use"];
                    a2 [label="maybe"];
                }
                a0 -> a1;
                a0 -> a2 [style=dashed, label="decider"];
            }

            """, FlowDiagram.ToDot(info));
    }

    [Fact]
    public void Render_NestedFlowWithRetry_NestsSubgraphsAndEntersTheRetryFirst()
    {
        var info = FlowInfo.FromFlow(NestedWithRetry());
        var inner = Assert.Single(info.Flows);
        Assert.Equal(("inner", FlowPattern.Unordered, "again"), (inner.Name, inner.Pattern, inner.Retry!.Name));
        Assert.Equal(["again", "again", null, null, null], new[] { "u1", "u2", "first", "last", "again" }.Select(n => info.Atoms.Single(a => a.Name == n).RetryName));
        Assert.Equal([new FlowEdge("again", "u1"), new FlowEdge("again", "u2")], inner.Edges);

        var mermaid = FlowDiagram.ToMermaid(info);
        Assert.Equal("""
            flowchart TB
                subgraph f0 ["outer (linear)"]
                    a0["first"]
                    subgraph f1 ["inner (unordered, retry again)"]
                        a1{{"again"}}
                        a2["u1"]
                        a3["u2"]
                    end
                    a4["last"]
                end
                a0 --> a1
                a1 --> a2
                a1 --> a3
                a2 --> a4
                a3 --> a4

            """, mermaid);
        MermaidSyntax.Check(mermaid);

        Assert.Equal("""
            digraph "outer" {
                rankdir=TB;
                node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                subgraph cluster_f0 {
                    label="outer (linear)";
                    style=rounded;
                    a0 [label="first"];
                    subgraph cluster_f1 {
                        label="inner (unordered, retry again)";
                        style=rounded;
                        a1 [label="again", shape=hexagon];
                        a2 [label="u1"];
                        a3 [label="u2"];
                    }
                    a4 [label="last"];
                }
                a0 -> a1;
                a1 -> a2;
                a1 -> a3;
                a2 -> a4;
                a3 -> a4;
            }

            """, FlowDiagram.ToDot(info));
    }

    [Fact]
    public async Task FromFlow_BeforeAndAfterAnEngineCompilesTheSameFlow_BothWork()
    {
        var flow = NestedWithRetry();
        var before = FlowDiagram.ToMermaid(FlowInfo.FromFlow(flow));
        var engine = FlowEngine.CreateSerial(flow);
        await engine.RunAsync();
        Assert.Equal(before, FlowDiagram.ToMermaid(FlowInfo.FromFlow(flow)));
        Assert.Equal(before, FlowDiagram.ToMermaid(FlowInfo.FromEngine(engine)));
        Assert.Throws<InvalidOperationException>(() => flow.Add(Task("late"))); // described flows are frozen, like compiled ones
    }

    [Fact]
    public void FromFlow_DescribesKindsRequiresAndProvides()
    {
        var info = FlowInfo.FromFlow(GraphWithDecider());
        var use = info.Atoms.Single(a => a.Name == "use");
        Assert.Equal(AtomKind.Task, use.Kind);
        Assert.Equal(["x"], use.Requires);
        Assert.Empty(use.Optional);
        Assert.Equal(["x"], info.Atoms.Single(a => a.Name == "fetch").Provides);
        Assert.Same(info, use.Parent);
        Assert.Null(info.Parent);
    }

    [Fact]
    public async Task ToMermaid_StatesOfAFailedRun_ColoursAtomsByState()
    {
        var flow = new LinearFlow("run")
        {
            FlowTask.Create("ok", () => 1, () => { }),
            FlowTask.Create("boom", new Func<int>(() => throw new InvalidOperationException("boom"))),
            Task("never"),
        };
        var engine = FlowEngine.CreateSerial(flow);
        await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync());
        var states = FlowDiagram.StatesOf(engine.Storage);

        var mermaid = FlowDiagram.ToMermaid(FlowInfo.FromEngine(engine), states);
        Assert.Equal("""
            flowchart TB
                subgraph f0 ["run (linear)"]
                    a0["ok (REVERTED)"]
                    a1["boom (REVERTED)"]
                    a2["never (PENDING)"]
                end
                a0 --> a1
                a1 --> a2
                classDef pending fill:#f2f2f2,stroke:#9e9e9e,color:#333333
                class a2 pending
                classDef reverted fill:#fff3cd,stroke:#ffc107,color:#664d03
                class a0,a1 reverted

            """, mermaid);
        MermaidSyntax.Check(mermaid);
        var dot = FlowDiagram.ToDot(FlowInfo.FromEngine(engine), states);
        Assert.Contains("a1 [label=\"boom (REVERTED)\", fillcolor=\"#fff3cd\", color=\"#ffc107\", fontcolor=\"#664d03\"];", dot);
    }

    [Fact]
    public void StatesOf_PersistedFlowDetail_GivesTheSameColoursAsALiveRun()
    {
        var detail = FlowDetail.Create(Guid.NewGuid(), "volume")
            .WithAtom(TaskDetail.Create("create_db") with { State = AtomState.Success })
            .WithAtom(TaskDetail.Create("create_backend") with { State = AtomState.RevertFailure });
        var states = FlowDiagram.StatesOf(detail);
        var mermaid = FlowDiagram.ToMermaid(FlowInfo.FromFlow(Linear()), states);
        Assert.Contains("    a0[\"create_db (SUCCESS)\"]\n", mermaid);
        Assert.Contains("    a2[\"mark_available\"]\n", mermaid); // not in the detail yet: no state
        Assert.Contains("    class a1 revert_failure\n", mermaid);
        MermaidSyntax.Check(mermaid);
    }

    [Fact]
    public void Render_StatesNamingUnknownAtoms_ThrowsNamingThem()
    {
        var states = new Dictionary<string, AtomState> { ["create_db"] = AtomState.Success, ["ghost"] = AtomState.Failure };
        var ex = Assert.Throws<ArgumentException>(() => FlowDiagram.ToMermaid(FlowInfo.FromFlow(Linear()), states));
        Assert.Contains("'ghost'", ex.Message);
        Assert.Contains("'volume'", ex.Message);
    }

    [Fact]
    public void Render_NamesWithSpecialCharacters_AreEscaped()
    {
        var flow = new LinearFlow("say \"hi\" #1 <b> & `x` | y\\z")
        {
            Task("quote\"d"),
            Task("new\nline"),
        };
        var info = FlowInfo.FromFlow(flow);
        var mermaid = FlowDiagram.ToMermaid(info);
        Assert.Contains("subgraph f0 [\"say #quot;hi#quot; #35;1 #lt;b#gt; #amp; #96;x#96; #124; y\\z (linear)\"]", mermaid);
        Assert.Contains("a0[\"quote#quot;d\"]", mermaid);
        Assert.Contains("a1[\"new line\"]", mermaid);
        MermaidSyntax.Check(mermaid);

        var dot = FlowDiagram.ToDot(info);
        Assert.StartsWith("digraph \"say \\\"hi\\\" #1 <b> & `x` | y\\\\z\" {\n", dot);
        Assert.Contains("a0 [label=\"quote\\\"d\"];", dot);
        Assert.Contains("a1 [label=\"new line\"];", dot);
    }

    [Fact]
    public async Task ToDot_EveryShape_IsAcceptedByGraphvizWhereInstalled()
    {
        // Graphviz is not part of the build image: where `dot` is missing this checks nothing beyond the text tests above.
        var dot = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, "dot")).FirstOrDefault(File.Exists);
        if (dot is null) return;
        var flows = new[] { Linear(), Unordered(), GraphWithDecider(), NestedWithRetry(),
            new LinearFlow("say \"hi\" #1 <b> & `x` | y\\z {c} end") { Task("quote\"d"), Task("new\nline") } };
        foreach (var flow in flows)
        {
            var info = FlowInfo.FromFlow(flow);
            var text = FlowDiagram.ToDot(info, info.Atoms.ToDictionary(a => a.Name, _ => AtomState.Ignore));
            var psi = new System.Diagnostics.ProcessStartInfo(dot, "-Tcanon") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            using var process = System.Diagnostics.Process.Start(psi)!;
            await process.StandardInput.WriteAsync(text);
            process.StandardInput.Close();
            var stderr = process.StandardError.ReadToEndAsync();
            await process.StandardOutput.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 0, $"dot rejected the diagram of '{flow.Name}': {await stderr}\n{text}");
        }
    }

    [Theory]
    [InlineData("flowchart TB\n    a0[\"x\"]\n    a0 --> a1\n", "undeclared")]
    [InlineData("flowchart TB\n    subgraph f0 [\"x\"]\n", "not closed")]
    [InlineData("flowchart TB\n    a0[\"say \"hi\"\"]\n", "subset")]
    [InlineData("flowchart TB\n    a0[\"x\"]\n    class a0 nope\n", "classDef")]
    public void MermaidSyntax_InvalidDiagrams_AreRejected(string diagram, string reason)
    {
        var ex = Assert.ThrowsAny<Exception>(() => MermaidSyntax.Check(diagram));
        Assert.Contains(reason, ex.Message);
    }
}
