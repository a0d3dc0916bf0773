using TaskFlow.Chaos.CrashResume;
using TaskFlow.Chaos.Jobboard;

// dotnet run -c Release --project test/TaskFlow.Chaos -- <command> [options]
// Each command prints one line per case and ends with "N passed, N failed"; the exit code is non-zero on any failure.
return args.Length == 0 ? Usage() : args[0] switch
{
    "crash-resume" => await CrashResumeChaos.RunAsync(args[1..]),
    CrashResumeChaos.ChildCommand => await CrashResumeChaos.RunChildAsync(args[1..]),
    "jobboard" => await JobboardChaos.RunAsync(args[1..]),
    JobboardChaos.ConductorCommand => await JobboardChaos.RunConductorAsync(args[1..]),
    "jobboard-bench" => await JobboardChaos.RunBenchAsync(args[1..]),
    "-h" or "--help" or "help" => Usage(0),
    _ => Usage(),
};

static int Usage(int code = 2)
{
    Console.Error.WriteLine("""
        usage: TaskFlow.Chaos <command> [options]
          crash-resume --backend sqlite|postgres|directory [--iterations N] [--seed S] [--max-kills K]
              Runs persisted flows in child processes, SIGKILLs them at random points, resumes them in new
              children, and checks nothing finished was re-run and the end state equals an uninterrupted run.
              PostgreSQL is read from TASKFLOW_POSTGRES (scripts/services.sh start postgres).
          jobboard --conductors C --jobs J --kill-every K [--seed S] [--lease-ms L] [--max-jobs M]
              Posts J jobs on a PostgreSQL job board, runs C conductor processes, SIGKILLs a random one every K
              completed jobs (starting a replacement), and checks every job completed once with each task run once
              (again only if a kill caught it RUNNING).
          jobboard-bench [--conductors 1,2,4] [--jobs N] [--steps S] [--max-jobs M]
              Jobs per second for each number of conductors on one PostgreSQL.
        """);
    return code;
}
