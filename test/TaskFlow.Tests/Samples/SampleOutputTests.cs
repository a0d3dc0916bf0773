using System.Diagnostics;

namespace TaskFlow.Tests.Samples;

/// <summary>Runs each sample program and diffs what it prints with the output kept beside it.</summary>
public sealed class SampleOutputTests
{
    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TaskFlow.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root (TaskFlow.slnx) above " + AppContext.BaseDirectory);
    }

    private static string Configuration() => new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;

    [Theory]
    [InlineData("CreateVolume", "", "expected-output.txt", 1)]
    [InlineData("CreateVolume", "--no-fail", "expected-output-no-fail.txt", 0)]
    [InlineData("Diagrams", "", "expected-output.txt", 0)]
    public async Task Sample_PrintsExpectedOutput(string sample, string arguments, string expectedFile, int expectedExitCode)
    {
        var root = RepoRoot();
        var dll = Path.Combine(root, "samples", sample, "bin", Configuration(), "net10.0", sample + ".dll");
        Assert.True(File.Exists(dll), $"sample not built: {dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetTempPath() };
        psi.ArgumentList.Add(dll);
        foreach (var a in arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        var expected = await File.ReadAllTextAsync(Path.Combine(root, "samples", sample, expectedFile));
        Assert.Equal(expected.ReplaceLineEndings(), output.ReplaceLineEndings());
        Assert.Equal(expectedExitCode, process.ExitCode);
    }
}
