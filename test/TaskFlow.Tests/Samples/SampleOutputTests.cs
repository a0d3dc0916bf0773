using System.Diagnostics;
using System.Text.RegularExpressions;

namespace TaskFlow.Tests.Samples;

/// <summary>
/// Runs each sample program and diffs what it prints with the output kept beside it. Ids, timestamps and durations
/// change from run to run, so they are masked (<c>&lt;id&gt;</c>, <c>&lt;time&gt;</c>, <c>&lt;duration&gt;</c>) in
/// what the sample prints before the comparison; the expected files hold the masks.
/// </summary>
public sealed partial class SampleOutputTests
{
    [Theory]
    [InlineData("CreateVolume", "", "expected-output.txt", 1)]
    [InlineData("CreateVolume", "--no-fail", "expected-output-no-fail.txt", 0)]
    [InlineData("Linear", "", "expected-output.txt", 1)]
    [InlineData("Graph", "", "expected-output.txt", 0)]
    [InlineData("Unordered", "", "expected-output.txt", 1)]
    [InlineData("Store", "", "expected-output.txt", 0)]
    [InlineData("Retry", "", "expected-output.txt", 0)]
    [InlineData("Notifications", "", "expected-output.txt", 0)]
    [InlineData("Diagrams", "", "expected-output.txt", 0)]
    public async Task Sample_PrintsExpectedOutput(string sample, string arguments, string expectedFile, int expectedExitCode)
    {
        using var workDir = new TemporaryDirectory();
        var run = await RunSampleAsync(sample, arguments, workDir.Path);
        Assert.Equal(ReadExpected(sample, expectedFile), Mask(run.Output));
        Assert.Equal(expectedExitCode, run.ExitCode);
    }

    [Fact]
    public async Task ResumeAfterCrash_SecondInvocationResumesWithoutRerunningFinishedTasks()
    {
        using var workDir = new TemporaryDirectory();

        var crashed = await RunSampleAsync("ResumeAfterCrash", "", workDir.Path);
        Assert.Equal(ReadExpected("ResumeAfterCrash", "expected-output-1.txt"), Mask(crashed.Output));
        Assert.NotEqual(0, crashed.ExitCode);
        if (OperatingSystem.IsLinux()) Assert.Equal(128 + 9, crashed.ExitCode); // killed by SIGKILL, not an exit
        Assert.True(File.Exists(Path.Combine(workDir.Path, "resumeaftercrash.db")), "the first invocation left no database");

        var resumed = await RunSampleAsync("ResumeAfterCrash", "", workDir.Path);
        Assert.Equal(ReadExpected("ResumeAfterCrash", "expected-output-2.txt"), Mask(resumed.Output));
        Assert.Equal(0, resumed.ExitCode);

        var again = await RunSampleAsync("ResumeAfterCrash", "", workDir.Path);
        Assert.Contains("already finished", again.Output, StringComparison.Ordinal);
        Assert.Equal(0, again.ExitCode);
    }

    [Fact]
    public async Task CreateVolume_SavesEachRunInTheDatabaseNamedByDb()
    {
        using var workDir = new TemporaryDirectory();
        var run = await RunSampleAsync("CreateVolume", "--no-fail --db volumes.sqlite", workDir.Path);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("in volumes.sqlite;", run.Output, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(workDir.Path, "volumes.sqlite")));
        Assert.False(File.Exists(Path.Combine(workDir.Path, "createvolume.db")));
    }

    [Fact]
    public void Mask_ReplacesIdsTimestampsAndDurations()
    {
        Assert.Equal("flow <id> at <time> took <duration>",
            Mask("flow 0199a3c2-7d1e-7b3a-9f00-1234567890ab at 2026-11-22T19:35:51.123456+00:00 took 12.5 ms"));
        Assert.Equal("took <duration>, then <duration>", Mask("took 3 s, then 250ms"));
        Assert.Equal("no-ids-here 12 items", Mask("no-ids-here 12 items"));
    }

    internal sealed record SampleRun(string Output, string Error, int ExitCode);

    internal static async Task<SampleRun> RunSampleAsync(string sample, string arguments, string workingDirectory)
    {
        var dll = Path.Combine(RepoRoot(), "samples", sample, "bin", Configuration(), "net10.0", sample + ".dll");
        Assert.True(File.Exists(dll), $"sample not built: {dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        psi.ArgumentList.Add(dll);
        foreach (var a in arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        // Crash dumps of a sample that kills itself on purpose are noise; do not write them.
        psi.Environment["DOTNET_DbgEnableMiniDump"] = "0";
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return new SampleRun((await output).ReplaceLineEndings(), (await error).ReplaceLineEndings(), process.ExitCode);
    }

    internal static string ReadExpected(string sample, string expectedFile) =>
        File.ReadAllText(Path.Combine(RepoRoot(), "samples", sample, expectedFile)).ReplaceLineEndings();

    internal static string Mask(string output)
    {
        output = Guid().Replace(output, "<id>");
        output = Timestamp().Replace(output, "<time>");
        return Duration().Replace(output, "<duration>");
    }

    [GeneratedRegex(@"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")]
    private static partial Regex Guid();

    [GeneratedRegex(@"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")]
    private static partial Regex Timestamp();

    [GeneratedRegex(@"\b\d+(\.\d+)? ?(ms|s)\b")]
    private static partial Regex Duration();

    internal static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TaskFlow.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root (TaskFlow.slnx) above " + AppContext.BaseDirectory);
    }

    private static string Configuration() => new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
}

/// <summary>A fresh directory under the temp folder, deleted on dispose (samples write their databases there).</summary>
internal sealed class TemporaryDirectory : IDisposable
{
    public TemporaryDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "taskflow-sample-" + System.Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { /* a file still held open by a killed process; the temp folder is cleaned later */ }
    }
}
