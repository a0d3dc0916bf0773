using TaskFlow.Chaos.BadInput;
using TaskFlow.Chaos.CrashResume;
using TaskFlow.Chaos.Jobboard;
using TaskFlow.Chaos.Faults;
using TaskFlow.Chaos.Load;
using TaskFlow.Chaos.Workers;

// dotnet run -c Release --project test/TaskFlow.Chaos -- <command> [options]
// Each command prints one line per case and ends with "N passed, N failed"; the exit code is non-zero on any failure.
try
{
    return args.Length == 0 ? Usage() : await Dispatch(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

static async Task<int> Dispatch(string[] args) => args[0] switch
{
    "crash-resume" => await CrashResumeChaos.RunAsync(args[1..]),
    CrashResumeChaos.ChildCommand => await CrashResumeChaos.RunChildAsync(args[1..]),
    "jobboard" => await JobboardChaos.RunAsync(args[1..]),
    JobboardConductor.Command => await JobboardConductor.RunAsync(args[1..]),
    "jobboard-bench" => await JobboardBench.RunBenchAsync(args[1..]),
    "load" => await LoadChaos.RunAsync(args[1..]),
    "bad-input" => await BadInputChaos.RunAsync(args[1..]),
    "faults" => await FaultsChaos.RunAsync(args[1..]),
    FaultsChaos.LockHolderCommand => await FaultsChaos.HoldLockAsync(args[1..]),
    "workers" => await WorkersChaos.RunAsync(args[1..]),
    "workers-bench" => await WorkersChaos.RunBenchmarkAsync(args[1..]),
    "workers-finding1" => await WorkersChaos.RunFinding1Async(args[1..]),
    WorkersChaos.ChildCommand => await WorkersChaos.RunWorkerProcessAsync(args[1..]),
    "-h" or "--help" or "help" => Usage(0),
    _ => Usage(),
};

static int Usage(int code = 2)
{
    Console.Error.WriteLine("""
        usage: TaskFlow.Chaos <command> [options]
          crash-resume --backend sqlite|postgres|directory [--iterations N] [--seed S] [--max-kills K]
                       [--self-test | --broken ack-before-write|drop-running|forget-last-finished]
              Runs persisted flows in child processes that kill themselves right before or after their k-th
              backend call (or are SIGKILLed at a random time), resumes them in new children, and checks that no
              acknowledged save was lost, nothing saved as finished ran again, and the end state equals an
              uninterrupted run; prints where the kills landed. --self-test: the same against broken stores, each
              of which must fail. PostgreSQL is read from TASKFLOW_POSTGRES (scripts/services.sh start postgres).
          jobboard --conductors C --jobs J --kill-every K [--partition-every P] [--self-test true] [--seed S] [--lease-ms L] [--max-jobs M]
              Posts J jobs on a PostgreSQL job board, runs C conductor processes, SIGKILLs a random one every K
              completed jobs (starting a replacement) and, with --partition-every, cuts one off from the database in
              the middle of a save every P completed jobs (a TCP proxy holds its traffic back until others consumed
              its jobs). Checks every job completed once with exactly the expected saved run, every task executed at
              most once per claim epoch and never by two epochs at once. --self-test true runs the same against
              conductors that write around the fence, and succeeds only if that run fails.
          jobboard-bench [--conductors 1,2,4] [--jobs N] [--steps S] [--max-jobs M]
              Jobs per second for each number of conductors on one PostgreSQL.
          load --backend memory|sqlite|postgres [--flows N] [--parallel P] [--durability fsync|wal] [--soak-seconds S]
              Runs N persisted flows, P at a time, on the parallel engine in this process; checks every outcome and
              what was saved; reports throughput and peak memory. With --soak-seconds, repeats for S seconds and
              fails if the heap grows after warm-up.
          bad-input [--cases N] [--seed S] [--strict-reads] [--self-test | --broken lenient-codec|hide-damage|drop-saves]
              Invalid flows, random flow trees and graphs (checked against a model), unsaveable values, damaged
              SQLite files and rows, newer schemas, mutated saved documents and worker messages: each must end in a
              documented exception naming what is at fault, or a correct run; untouched data must still load.
              Prints how many distinct inputs it made, and the damaged reads that came back changed without an
              error (--strict-reads fails on them). --self-test: the same against broken variants, which must fail.
          faults [--backend sqlite|postgres|all] [--rounds N]
              The store goes away mid-run (another process locks the SQLite file; a private PostgreSQL server is
              stopped and started again): the run stops with a clear PersistenceException, then resumes to the end.
          workers [--scenario kills|backlog] [--workers W] [--slots N] [--flows F] [--concurrency C] [--kill-every K]
                  [--request-timeout-ms T] [--margin-ms M] [--execute-ms MIN-MAX] [--grace-ms G] [--seed S] [--self-test true]
              Runs F flows on distributed engines against W worker processes over RabbitMQ (TASKFLOW_AMQP).
              kills: SIGKILLs a worker every K started tasks and starts another. backlog: fewer slots than
              requests and a RequestTimeout below the queue wait, so timeouts fire. Every apply and revert is
              counted per request id after a grace period: no request applied twice, no effect applied after its
              flow REVERTED or left unreverted in it, each task of a SUCCESS flow applied once. --self-test true
              runs a broken variant (deadlines ignored, timeout taken as "did not run") that must fail.
          workers-finding1 [--transport memory|rabbitmq|both]
              The reproduction of review finding 1 (a timed-out queued execute running after its flow reverted).
          workers-bench [--workers 1,4] [--requests N] [--concurrency C]
              Remote task round trips per second over RabbitMQ with each number of worker processes.
        """);
    return code;
}
