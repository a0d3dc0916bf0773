using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace TaskFlow.Benchmarks.Compare;

/// <summary>One TaskFlow (Python) measurement, as <c>tfbench.py</c> prints it: phase timings in seconds.</summary>
public sealed record AnchorSample(double BuildSeconds, double LoadSeconds, double CompileSeconds, double RunSeconds, bool Check)
{
    public double TotalSeconds => BuildSeconds + LoadSeconds + CompileSeconds + RunSeconds;
}

/// <summary>
/// Runs the TaskFlow anchor script (<c>python/tfbench.py</c>, a copy of the one behind the project's anchor results) under
/// Debian's <c>/usr/bin/python3</c> with <c>python3-taskflow</c>: one fresh interpreter per sample, as the anchors were measured.
/// </summary>
public sealed class PythonAnchor
{
    public const string Interpreter = "/usr/bin/python3";

    private readonly string _script;

    private PythonAnchor(string script) => _script = script;

    /// <summary>The anchor runner, or null (with the reason) when python3-taskflow or the script is missing.</summary>
    public static PythonAnchor? TryCreate(out string? whyNot)
    {
        var script = Path.Combine(AppContext.BaseDirectory, "python", "tfbench.py");
        if (!File.Exists(script)) { whyNot = $"{script} is missing"; return null; }
        if (!File.Exists(Interpreter)) { whyNot = $"{Interpreter} is missing"; return null; }
        var (code, _, err) = Run(["-c", "import taskflow"], TimeSpan.FromSeconds(60));
        if (code != 0) { whyNot = $"{Interpreter} cannot import taskflow (apt-get install -y python3-taskflow python3-sqlalchemy python3-sqlalchemy-utils): {err.Trim()}"; return null; }
        whyNot = null;
        return new PythonAnchor(script);
    }

    public AnchorSample Measure(IReadOnlyList<string> arguments, TimeSpan timeout)
    {
        var (code, output, error) = Run([_script, .. arguments], timeout);
        if (code != 0)
        {
            // The traceback's last line names the problem (e.g. a missing python3-sqlalchemy-utils); the table keeps one line.
            var last = error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
            throw new InvalidOperationException($"TaskFlow failed: {last}");
        }
        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault()
            ?? throw new InvalidOperationException($"tfbench.py {string.Join(' ', arguments)} printed nothing.");
        using var json = JsonDocument.Parse(line);
        var root = json.RootElement;
        double Get(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : 0;
        bool check = !root.TryGetProperty("check", out var c) || c.ValueKind != JsonValueKind.False;
        return new AnchorSample(Get("build_s"), Get("load_s"), Get("compile_s"), Get("run_s"), check);
    }

    private static (int Code, string Output, string Error) Run(IReadOnlyList<string> arguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(Interpreter) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {Interpreter}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Interpreter} {string.Join(' ', arguments)} did not finish within {timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s.");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
