using System.Diagnostics;

namespace TaskFlow.Cli.Tests.Infrastructure;

/// <summary>What one taskflow invocation printed and returned.</summary>
public sealed record CliResult(int ExitCode, string Output, string Error)
{
    public string All => Output + Error;

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Output}\n--- stderr\n{Error}";
}

/// <summary>Runs taskflow in process (as the tool's Main does, with plain output) or as a real process.</summary>
public static class CliRunner
{
    public static async Task<CliResult> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var exit = await TaskFlowCommand.InvokeAsync(args, output, error, interactive: false);
        return new CliResult(exit, output.ToString().ReplaceLineEndings(), error.ToString().ReplaceLineEndings());
    }

    /// <summary>Runs the built tool (TaskFlow.Cli.dll) in its own process.</summary>
    public static async Task<CliResult> RunProcessAsync(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "TaskFlow.Cli.dll");
        Assert.True(File.Exists(dll), $"taskflow not built: {dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return await Processes.RunAsync(psi);
    }
}

public static class Processes
{
    public static async Task<CliResult> RunAsync(ProcessStartInfo psi)
    {
        psi.Environment["DOTNET_DbgEnableMiniDump"] = "0";
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return new CliResult(process.ExitCode, (await output).ReplaceLineEndings(), (await error).ReplaceLineEndings());
    }
}

/// <summary>Paths of things the build made: samples and the test flow library.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    private static string Configuration => new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;

    public static string SampleDll(string sample) => Built(Path.Combine(Root, "samples", sample, "bin", Configuration, "net10.0", sample + ".dll"));

    public static string FlowsDll { get; } = Built(Path.Combine(Root, "test", "TaskFlow.Cli.Tests.Flows", "bin", Configuration, "net10.0", "TaskFlow.Cli.Tests.Flows.dll"));

    private static string Built(string path) => File.Exists(path) ? path : throw new FileNotFoundException($"not built: {path}");

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TaskFlow.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root (TaskFlow.slnx) above " + AppContext.BaseDirectory);
    }
}

/// <summary>A fresh directory under the temp folder, deleted on dispose.</summary>
public sealed class TemporaryDirectory : IDisposable
{
    public TemporaryDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "taskflow-cli-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>A SQLite database of another application (a <c>customers</c> table with two rows), closed again.</summary>
    public string ForeignSqliteFile(string name)
    {
        var path = File(name);
        using (var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path}"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO customers (name) VALUES ('Ada'), ('Grace');";
            cmd.ExecuteNonQuery();
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        return path;
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { /* still open elsewhere; the temp folder is cleaned later */ }
    }
}
