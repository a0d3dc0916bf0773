using System.Text.RegularExpressions;

namespace TaskFlow.Tests.Diagrams;

/// <summary>
/// A syntax check for the subset of Mermaid's flowchart grammar that FlowDiagram emits (mmdc needs a headless browser
/// that cannot be installed here): the header, subgraphs with quoted titles closed by <c>end</c>, nodes with quoted
/// labels (box or hexagon), plain and labelled dotted edges between declared nodes, and classDef/class lines whose
/// classes are defined before use. Labels may not contain a raw quote, and entity codes must be well formed.
/// </summary>
internal static partial class MermaidSyntax
{
    private const string Label = "\"(?:[^\"#]|#(?:quot|amp|lt|gt|\\d+);)*\"";

    [GeneratedRegex("^flowchart (TB|TD|BT|LR|RL)$")]
    private static partial Regex Header();

    [GeneratedRegex($"^ *subgraph (?<id>[A-Za-z][A-Za-z0-9_]*) \\[{Label}\\]$")]
    private static partial Regex Subgraph();

    [GeneratedRegex("^ *end$")]
    private static partial Regex End();

    [GeneratedRegex($"^ *(?<id>[A-Za-z][A-Za-z0-9_]*)(\\[{Label}\\]|\\{{\\{{{Label}\\}}\\}})$")]
    private static partial Regex Node();

    [GeneratedRegex($"^ *(?<from>[A-Za-z][A-Za-z0-9_]*) (-->|-\\.->\\|{Label}\\|) (?<to>[A-Za-z][A-Za-z0-9_]*)$")]
    private static partial Regex Edge();

    [GeneratedRegex("^ *classDef (?<name>[a-z_]+) (?:[a-z-]+:[#A-Za-z0-9 ]+)(?:,[a-z-]+:[#A-Za-z0-9 ]+)*$")]
    private static partial Regex ClassDef();

    [GeneratedRegex("^ *class (?<ids>[A-Za-z][A-Za-z0-9_]*(?:,[A-Za-z][A-Za-z0-9_]*)*) (?<name>[a-z_]+)$")]
    private static partial Regex ClassUse();

    /// <summary>Throws with the line number and text of the first line that is not valid.</summary>
    public static void Check(string diagram)
    {
        var lines = diagram.Split('\n');
        if (lines[^1].Length == 0) lines = lines[..^1];
        if (lines.Length == 0 || !Header().IsMatch(lines[0])) Fail(1, lines.FirstOrDefault() ?? "", "expected a flowchart header");
        var nodes = new HashSet<string>(StringComparer.Ordinal);
        var subgraphs = new HashSet<string>(StringComparer.Ordinal);
        var classes = new HashSet<string>(StringComparer.Ordinal);
        int open = 0;
        for (int i = 1; i < lines.Length; i++)
        {
            var line = lines[i];
            Match m;
            if ((m = Subgraph().Match(line)).Success)
            {
                if (!subgraphs.Add(m.Groups["id"].Value) || nodes.Contains(m.Groups["id"].Value)) Fail(i + 1, line, "duplicate id");
                open++;
            }
            else if (End().IsMatch(line))
            {
                if (--open < 0) Fail(i + 1, line, "end without subgraph");
            }
            else if ((m = Node().Match(line)).Success)
            {
                if (!nodes.Add(m.Groups["id"].Value) || subgraphs.Contains(m.Groups["id"].Value)) Fail(i + 1, line, "duplicate id");
            }
            else if ((m = Edge().Match(line)).Success)
            {
                if (!nodes.Contains(m.Groups["from"].Value) || !nodes.Contains(m.Groups["to"].Value)) Fail(i + 1, line, "edge between undeclared nodes");
            }
            else if ((m = ClassDef().Match(line)).Success)
            {
                classes.Add(m.Groups["name"].Value);
            }
            else if ((m = ClassUse().Match(line)).Success)
            {
                if (!classes.Contains(m.Groups["name"].Value)) Fail(i + 1, line, "class used before classDef");
                foreach (var id in m.Groups["ids"].Value.Split(','))
                    if (!nodes.Contains(id)) Fail(i + 1, line, "class on an undeclared node");
            }
            else
            {
                Fail(i + 1, line, "not a statement of the flowchart subset");
            }
        }
        if (open != 0) Fail(lines.Length, lines[^1], "subgraph not closed");
    }

    private static void Fail(int line, string text, string why) =>
        throw new Xunit.Sdk.XunitException($"Mermaid syntax error at line {line} ({why}): {text}");
}
