#!/usr/bin/env bash
# test.sh — the one command that runs every test of TaskFlow.slnx, on a fresh machine too.
#
#   bash scripts/test.sh [extra dotnet test arguments, e.g. --filter "FullyQualifiedName~Engines"]
#
# 1. starts PostgreSQL and RabbitMQ through scripts/services.sh (installing them if needed) and
#    exports TASKFLOW_POSTGRES / TASKFLOW_AMQP for the tests;
# 2. runs `dotnet test TaskFlow.slnx -c Release`, writing .trx files into TestResults/;
# 3. stops the services again (unless TASKFLOW_KEEP_SERVICES=1, or they were already running);
# 4. sums the .trx counters and prints, as the very last line, `N passed, N failed, N skipped`.
# Exit status is non-zero when dotnet test failed, any test failed, or no test ran.
#
# Environment: TASKFLOW_KEEP_SERVICES=1 leaves the servers running afterwards;
# TASKFLOW_SKIP_SERVICES=1 starts none (tests needing a server then return early, or fail under CI=true);
# everything scripts/services.sh reads (TASKFLOW_SERVICES_DIR, TASKFLOW_*_PORT).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RESULTS=$ROOT/TestResults

log() { echo "[test] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
if [ "${CI:-}" = true ]; then
  export CI
  # No MSBuild worker nodes left behind after the build: on CI they would outlive the job
  # (and can keep its output pipe open).
  export MSBUILDDISABLENODEREUSE=1
fi

command -v dotnet >/dev/null 2>&1 || die "dotnet not found on PATH; install the .NET 10 SDK (see global.json)"

# ------------------------------------------------------------------ services
STOP_SERVICES=0
stop_services() {
  # Called explicitly before the summary (so the summary stays the last line) and from the EXIT
  # trap (errors, Ctrl-C); the flag makes the second call a no-op.
  [ "$STOP_SERVICES" = 1 ] || return 0
  STOP_SERVICES=0
  if [ "${TASKFLOW_KEEP_SERVICES:-0}" = 1 ]; then
    log "TASKFLOW_KEEP_SERVICES=1: leaving the services running; stop them with: scripts/services.sh stop --clean"
    return 0
  fi
  bash scripts/services.sh stop --clean || log "WARNING: scripts/services.sh stop --clean failed"
}
trap 'rc=$?; stop_services; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "${TASKFLOW_SKIP_SERVICES:-0}" = 1 ]; then
  log "TASKFLOW_SKIP_SERVICES=1: not starting PostgreSQL/RabbitMQ"
else
  # Services a developer started by hand stay up; only what this run starts is stopped again.
  if bash scripts/services.sh status >/dev/null 2>&1; then
    log "services already running: they are left running afterwards"
  else
    STOP_SERVICES=1   # set before starting, so that a half-started set is cleaned up too
  fi
  # Captured first: `eval "$(cmd)"` alone would hide a failure of cmd.
  exports=$(bash scripts/services.sh start) || die "scripts/services.sh start failed (see the messages above)"
  eval "$exports"   # export TASKFLOW_POSTGRES=... TASKFLOW_AMQP=...
  log "TASKFLOW_POSTGRES=${TASKFLOW_POSTGRES:-<unset>}"
  log "TASKFLOW_AMQP=${TASKFLOW_AMQP:-<unset>}"
fi

# ------------------------------------------------------------------ tests
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
# LogFilePrefix, not LogFileName: with a fixed file name every test project of the solution
# overwrites the same .trx (microsoft/vstest#3026); the prefix gets a framework+timestamp suffix.
log "dotnet test TaskFlow.slnx -c Release $*"
set +e
dotnet test TaskFlow.slnx -c Release \
  --results-directory "$RESULTS" \
  --logger "trx;LogFilePrefix=taskflow" \
  --logger "console;verbosity=minimal" \
  "$@"
test_rc=$?
set -e

stop_services

# ------------------------------------------------------------------ summary
# Each .trx has <Counters total=".." executed=".." passed=".." failed=".." error=".." timeout=".."
# aborted=".." .../>. Skipped tests are in total but not in executed (notExecuted stays 0 for them).
passed=0 failed=0 total=0 executed=0 files=0
attr() { sed -n "s/.*[[:space:]]$1=\"\([0-9]*\)\".*/\1/p" <<<"$2" | head -1; }
while IFS= read -r -d '' f; do
  files=$((files + 1))
  counters=$(grep -o '<Counters [^>]*>' "$f" | head -1 || true)
  if [ -z "$counters" ]; then
    log "WARNING: no <Counters> element in $f"
    continue
  fi
  for k in total executed passed failed error timeout aborted; do
    v=$(attr "$k" "$counters")
    v=${v:-0}
    case $k in
      passed) passed=$((passed + v)) ;;
      failed | error | timeout | aborted) failed=$((failed + v)) ;;
      total) total=$((total + v)) ;;
      executed) executed=$((executed + v)) ;;
    esac
  done
done < <(find "$RESULTS" -name '*.trx' -print0)

skipped=$((total - executed))
rc=0
if [ "$test_rc" != 0 ]; then
  log "dotnet test exited with status $test_rc"
  rc=$test_rc
fi
if [ "$failed" -gt 0 ]; then
  log "$failed test(s) failed; details in $RESULTS/*.trx"
  rc=1
fi
if [ "$files" = 0 ] || [ "$executed" = 0 ]; then
  log "no test ran ($files .trx file(s) in $RESULTS)"
  rc=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$rc"
