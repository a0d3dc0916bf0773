#!/usr/bin/env bash
# differential.sh — a fresh batch of random scenarios, judged by the real TaskFlow, through our conformance runner.
#
#   bash scripts/differential.sh [--no-build] [differential.py options]
#     e.g. --seed 4711 --count 50 --modes plain,sqlite,distributed-memory --out DIR --coverage
#
# 1. installs Debian's python3-taskflow (with python3-sqlalchemy, python3-sqlalchemy-utils and python3-networkx)
#    when /usr/bin/python3 cannot import it, retrying while another apt holds the dpkg lock;
# 2. builds the conformance runner (Release) unless --no-build (scripts/test.sh has just built it);
# 3. runs test/TaskFlow.Conformance/oracle/differential.py: draws the batch (the seed is printed, random unless
#    --seed or TASKFLOW_DIFF_SEED), keeps the scenarios whose TaskFlow outcome is stable, runs our runner on them in
#    every mode, minimises each failure and prints it; DIR/summary.env holds the counts (default DIR:
#    TestResults/differential). Exit status 1 when any scenario failed in any mode.
# See docs/conformance.md ("Random scenarios").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3   # Debian's python, where python3-taskflow lives (not a pyenv python3 on PATH)
PACKAGES="python3-taskflow python3-sqlalchemy python3-sqlalchemy-utils python3-networkx"

log() { echo "[differential] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

build=1
args=()
for a in "$@"; do
  if [ "$a" = --no-build ]; then build=0; else args+=("$a"); fi
done

have_taskflow() { [ -x "$PY" ] && "$PY" -c 'import taskflow, networkx, sqlalchemy, sqlalchemy_utils' >/dev/null 2>&1; }

install_taskflow() {
  local sudo="" apt_log updated=0 attempt started=$SECONDS
  [ "$(id -u)" = 0 ] || sudo=sudo
  apt_log=$(mktemp)
  log "installing $PACKAGES from Debian (apt log: $apt_log)"
  for attempt in 1 2 3 4 5 6 7 8 9 10 11 12; do
    if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $PACKAGES >>"$apt_log" 2>&1; then
      log "installed in $((SECONDS - started)) s"
      return 0
    fi
    # A fresh machine may have no package lists yet (update once); otherwise another apt holds the lock: wait.
    if [ "$updated" = 0 ] && ! grep -q 'Could not get lock\|dpkg frontend lock' "$apt_log"; then
      updated=1
      $sudo apt-get update >>"$apt_log" 2>&1 || true
    else
      log "apt-get install failed (attempt $attempt), retrying in 10 s"
      sleep 10
    fi
  done
  tail -20 "$apt_log" >&2
  return 1
}

have_taskflow || install_taskflow || die "could not install $PACKAGES"
have_taskflow || die "$PY still cannot import taskflow after installing $PACKAGES"

if [ "$build" = 1 ]; then
  command -v dotnet >/dev/null 2>&1 || die "dotnet not found on PATH"
  log "dotnet build -c Release test/TaskFlow.Conformance"
  if ! out=$(dotnet build -c Release test/TaskFlow.Conformance -v q -nologo 2>&1); then
    tail -30 <<<"$out" >&2
    die "the conformance runner did not build"
  fi
fi

defaults=(--out "$ROOT/TestResults/differential")
[ -n "${TASKFLOW_DIFF_SEED:-}" ] && defaults+=(--seed "$TASKFLOW_DIFF_SEED")
[ -n "${TASKFLOW_DIFF_COUNT:-}" ] && defaults+=(--count "$TASKFLOW_DIFF_COUNT")
exec "$PY" test/TaskFlow.Conformance/oracle/differential.py "${defaults[@]}" ${args[@]+"${args[@]}"}
