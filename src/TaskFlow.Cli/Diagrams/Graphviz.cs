using System.Diagnostics;

namespace TaskFlow.Cli.Diagrams;

/// <summary>Draws DOT as SVG with Graphviz's <c>dot</c> program, found on the PATH.</summary>
internal static class Graphviz
{
    public static string? FindDot()
    {
        var names = OperatingSystem.IsWindows() ? new[] { "dot.exe" } : ["dot"];
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (var name in names)
                if (File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        return null;
    }

    public static async Task<string> ToSvgAsync(string dotSource, CancellationToken cancellationToken)
    {
        var dot = FindDot() ?? throw new CliException(ExitCodes.MissingTool,
            "Graphviz's 'dot' is not installed (not found on the PATH), so the diagram cannot be drawn as SVG.",
            "Install Graphviz (apt-get install graphviz, brew install graphviz, winget install graphviz), or use --format dot or --format mermaid.");
        var psi = new ProcessStartInfo(dot, "-Tsvg") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(psi) ?? throw new CliException(ExitCodes.MissingTool, $"Could not start '{dot}'.", "Check the Graphviz installation.");
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.StandardInput.WriteAsync(dotSource.AsMemory(), cancellationToken);
        process.StandardInput.Close();
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
            throw new CliException(ExitCodes.InternalError, $"'{dot} -Tsvg' failed with exit code {process.ExitCode}: {(await error).Trim()}",
                "Use --format dot to see the DOT that was given to Graphviz.");
        return await output;
    }
}
