using System.Diagnostics;

namespace TaskFlow.Cli.Tests.Infrastructure;

/// <summary>
/// SQLite files made by real persisted runs: the ResumeAfterCrash sample run twice (killed, then resumed) and the
/// CreateVolume sample's failing run. Made once per test class; each test copies what it changes.
/// </summary>
public sealed class SampleDatabases : IAsyncLifetime
{
    private readonly TemporaryDirectory _dir = new();

    public string ResumeAfterCrash => _dir.File("resumeaftercrash.db");

    public string CreateVolume => _dir.File("createvolume.db");

    public async Task InitializeAsync()
    {
        var crashed = await RunSample("ResumeAfterCrash");
        Assert.NotEqual(0, crashed.ExitCode);
        var resumed = await RunSample("ResumeAfterCrash");
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        var failed = await RunSample("CreateVolume");
        Assert.True(failed.ExitCode == 1, failed.ToString());
    }

    /// <summary>A copy of <paramref name="database"/> that a test may change.</summary>
    public string CopyOf(string database, TemporaryDirectory into)
    {
        var copy = into.File(Path.GetFileName(database));
        File.Copy(database, copy);
        // A WAL-mode database is the file plus its write-ahead log when the last writer did not checkpoint.
        foreach (var suffix in new[] { "-wal", "-shm" })
            if (File.Exists(database + suffix)) File.Copy(database + suffix, copy + suffix);
        return copy;
    }

    private Task<CliResult> RunSample(string sample)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir.Path };
        psi.ArgumentList.Add(Repo.SampleDll(sample));
        return Processes.RunAsync(psi);
    }

    public Task DisposeAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }
}
