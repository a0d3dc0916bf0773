using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Conductors;
using TaskFlow.Jobs.PostgreSql;
using TaskFlow.Persistence.PostgreSql;

namespace TaskFlow.Chaos.Jobboard;

/// <summary>
/// One conductor process of the <c>jobboard</c> chaos: <c>jobboard-conductor --schema S --name N --log FILE --lease-ms L
/// --max-jobs M [--unfenced true]</c>, with the connection string (which may hold a password) in the environment.
/// Runs until its standard input closes or says "stop", then stops gracefully. Logs to FILE: task executions with
/// their claim epoch (see <see cref="JobboardFlows"/>), saves of finished tasks, consumes, refused writes, abandons and
/// refused board operations, and stalls of its own thread pool.
/// </summary>
internal static class JobboardConductor
{
    public const string Command = "jobboard-conductor";

    public const string ConnectionVariable = "TASKFLOW_CHAOS_CONNECTION";

    public static async Task<int> RunAsync(string[] args)
    {
        var o = Options.Parse(args);
        var connection = Environment.GetEnvironmentVariable(ConnectionVariable) ?? throw new InvalidOperationException($"{ConnectionVariable} is not set.");
        var schema = o.Require("schema");
        var name = o.Require("name");
        using var log = new FileSideEffects(o.Require("log")); // its own file per process
        // The claim epoch this process holds for each job, and the job of each flow detail: recorded when a claim is
        // announced, which is before its flow is built or its flow detail taken over.
        var epochs = new ConcurrentDictionary<long, long>();
        var jobsByFlow = new ConcurrentDictionary<Guid, long>();
        await using var persistence = new JobboardPersistence(
            new PostgreSqlPersistenceBackend(new PostgreSqlPersistenceOptions { ConnectionString = connection, Schema = schema }),
            unfenced: o.Get("unfenced") == "true", log, flow => jobsByFlow.GetValueOrDefault(flow, -1));
        await using var board = JobboardChaos.OpenBoard(connection, schema, o.Int("lease-ms", 3000));
        var conductor = new Conductor(board, JobboardFlows.Registry(log, job => epochs.GetValueOrDefault(job)), persistence, new ConductorOptions
        {
            Name = name,
            MaxConcurrentJobs = o.Int("max-jobs", 2),
            Engine = ConductorEngine.Parallel,
            WaitTimeout = TimeSpan.FromSeconds(2),
        });
        var claimedAt = new ConcurrentDictionary<Guid, long>();
        conductor.Notifications.Subscribe<JobClaimed>(e =>
        {
            var job = e.Job.Store["job"].GetInt64();
            epochs[job] = e.Job.ClaimCount;
            jobsByFlow[e.Job.FlowDetailId] = job;
            claimedAt[e.Job.Id] = Stopwatch.GetTimestamp();
            log.Record($"claimed {job} {e.Job.ClaimCount} {Stopwatch.GetTimestamp()}");
        });
        conductor.Notifications.Subscribe<JobConsumed>(e => log.Record($"consumed {e.Job.Store["job"].GetInt64()} {name}"));
        JobboardPersistence.LogRefusals(conductor, log);
        // A job given back before it finished (a refused write, a failed save, a claim given up locally) is resumed by
        // its next owner: the summary reports why.
        conductor.Notifications.Subscribe<JobAbandoned>(e => log.Record(
            $"abandoned {e.Job.Store["job"].GetInt64()} {Reason(e.Reason)} {e.Failure?.GetType().Name ?? "-"}"));
        board.HeartbeatFailed += ex => log.Record($"heartbeat-failed 0 {ex.GetType().Name}");
        // A refused consume or abandon: this conductor's claim was gone (lost to an expired lease).
        conductor.Notifications.Subscribe<JobOperationFailed>(e => log.Record(
            $"lost {e.Job.Store["job"].GetInt64()} {e.Operation} {Stopwatch.GetElapsedTime(claimedAt.GetValueOrDefault(e.Job.Id)).TotalMilliseconds:F0}ms-after-claim"));
        // Evidence for lost claims: how late this process wakes from a 100 ms sleep (thread starvation, machine load).
        _ = Task.Run(async () =>
        {
            while (true)
            {
                var start = Stopwatch.GetTimestamp();
                await Task.Delay(100);
                var late = Stopwatch.GetElapsedTime(start) - TimeSpan.FromMilliseconds(100);
                if (late > TimeSpan.FromSeconds(1)) log.Record($"stall 0 {late.TotalMilliseconds:F0}ms");
            }
        });
        conductor.Notifications.Subscribe<JobTrashed>(e => Console.Error.WriteLine($"trashed {e.Job}: {e.Failure}"));
        var running = conductor.RunAsync();
        Console.WriteLine("ready");
        while (await Console.In.ReadLineAsync() is { } line && line != "stop") { }
        await conductor.StopAsync();
        await running;
        return 0;
    }

    /// <summary>The reason's kind, one word (its details name owners and epochs, which would split the summary).</summary>
    private static string Reason(string reason) =>
        reason.StartsWith("the store refused", StringComparison.Ordinal) ? "write-refused"
        : reason.Replace(' ', '_').Replace(';', ',');

    /// <summary>One conductor child process; its PostgreSQL connections go through its own partition proxy.</summary>
    internal sealed class Process
    {
        private readonly System.Diagnostics.Process _process;
        private readonly System.Text.StringBuilder _errors = new();

        private Process(string name, System.Diagnostics.Process process, TaskFlow.TestUtilities.TcpPartitionProxy proxy)
        {
            Name = name;
            Proxy = proxy;
            _process = process;
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_errors) _errors.AppendLine(e.Data); };
            _process.OutputDataReceived += (_, _) => { };
            _process.BeginErrorReadLine();
            _process.BeginOutputReadLine();
        }

        public string Name { get; }

        public TaskFlow.TestUtilities.TcpPartitionProxy Proxy { get; }

        /// <summary>When the process was seen gone after a SIGKILL (monotonic clock); null while it was not killed.</summary>
        public long? KilledAt { get; private set; }

        public bool HasExited => _process.HasExited;

        public int ExitCode => _process.ExitCode;

        public string Errors { get { lock (_errors) return _errors.ToString().Trim(); } }

        public static Process Start(string name, string connection, string schema, string work, int leaseMs, int maxJobs, bool unfenced)
        {
            var server = new Npgsql.NpgsqlConnectionStringBuilder(connection);
            var proxy = new TaskFlow.TestUtilities.TcpPartitionProxy(server.Host ?? "127.0.0.1", server.Port);
            var self = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot find this program's path to start a child.");
            var info = new ProcessStartInfo(self)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(JobboardChaos).Assembly.Location);
            foreach (var a in new[]
            {
                Command, "--schema", schema, "--name", name, "--log", Path.Combine(work, name + ".log"),
                "--lease-ms", leaseMs.ToString(CultureInfo.InvariantCulture), "--max-jobs", maxJobs.ToString(CultureInfo.InvariantCulture),
                "--unfenced", unfenced ? "true" : "false",
            }) info.ArgumentList.Add(a);
            // The connection string may hold a password: through the environment, never the command line.
            info.Environment[ConnectionVariable] = proxy.Rewrite(connection);
            return new Process(name, System.Diagnostics.Process.Start(info) ?? throw new InvalidOperationException("Could not start a conductor process."), proxy);
        }

        /// <summary>SIGKILL, and wait until the process is gone.</summary>
        public void Kill()
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
            KilledAt = Stopwatch.GetTimestamp();
        }

        public void RequestStop()
        {
            try
            {
                _process.StandardInput.WriteLine("stop");
                _process.StandardInput.Flush();
            }
            catch (IOException)
            {
                // Already gone; WaitForExitAsync reports it.
            }
        }

        public async Task<bool> WaitForExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }
}
