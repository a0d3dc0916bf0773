#!/usr/bin/env bash
# services.sh — throw-away PostgreSQL and RabbitMQ servers for TaskFlow's tests.
#
#   scripts/services.sh start [postgres] [rabbitmq]   # no names = both
#   scripts/services.sh stop [--clean]                # --clean also deletes the directory
#   scripts/services.sh status
#
# `start` installs what is missing from Debian packages, starts each server on loopback under
# $TASKFLOW_SERVICES_DIR (default /tmp/taskflow-services), waits until it answers, creates the
# `taskflow` login, and prints ONLY `export NAME='value'` lines on stdout (also written to
# $TASKFLOW_SERVICES_DIR/env.sh), so that `eval "$(scripts/services.sh start)"` works.
# All progress goes to stderr. Starting what already runs only prints the exports.
#
# Ports (loopback only), each overridable:
#   TASKFLOW_PG_PORT=5440  TASKFLOW_AMQP_PORT=5680  TASKFLOW_EPMD_PORT=4380  TASKFLOW_DIST_PORT=25680
#   TASKFLOW_SERVICES_PASSWORD=taskflow (the password of the taskflow role/user)
#
# Servers are stopped only by the PIDs recorded here, never by process name: other checkouts or
# sessions on the same machine may run their own servers.
set -euo pipefail

BASE=${TASKFLOW_SERVICES_DIR:-/tmp/taskflow-services}
PG_PORT=${TASKFLOW_PG_PORT:-5440}
AMQP_PORT=${TASKFLOW_AMQP_PORT:-5680}
EPMD_PORT=${TASKFLOW_EPMD_PORT:-4380}
DIST_PORT=${TASKFLOW_DIST_PORT:-25680}
DB_USER=taskflow
DB_PASS=${TASKFLOW_SERVICES_PASSWORD:-taskflow}   # a private instance (chaos faults) sets its own
ALL_SERVICES=(postgres rabbitmq)
MARKER=.taskflow-services   # marks a directory this script created, so --clean never deletes anything else

PG_DIR=$BASE/postgres
RMQ_DIR=$BASE/rabbitmq
RMQ_NODE=taskflow@localhost
RMQ_LIB=/usr/lib/rabbitmq/bin   # not /usr/sbin/rabbitmq-server: that wrapper su's to `rabbitmq` and logs to /var/log

T0=$EPOCHREALTIME
log() { printf '[services %5ss] %s\n' "$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')" "$*" >&2 || true; }
die() { log "ERROR: $*"; exit 1; }
usage() {
  echo "usage: $0 start [postgres] [rabbitmq] | stop [--clean] | status" >&2
  exit 2
}

# A PID counts as alive unless it is gone or a zombie: PID 1 on these machines reaps orphans late
# (about 2 s), and `kill -0` reports a zombie as alive.
alive() {
  local st
  [ -n "${1:-}" ] || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
pid_from() { if [ -s "$1" ]; then head -1 "$1" | tr -dc 0-9; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
tail_log() {
  local f
  for f in "$@"; do
    if [ -s "$f" ]; then echo "----- last lines of $f" >&2; tail -n 30 "$f" >&2; fi
  done
}
is_root() { [ "$(id -u)" = 0 ]; }
pg_bin() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1; }
# PostgreSQL refuses to run as root, so as root everything runs as the `postgres` user.
as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

# ------------------------------------------------------------------------------------ install
install_missing() {
  local pkgs=() s
  for s in "$@"; do
    case $s in
      postgres) [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/postgres" ] || pkgs+=(postgresql) ;;
      rabbitmq) [ -x "$RMQ_LIB/rabbitmq-server" ] && command -v epmd >/dev/null || pkgs+=(rabbitmq-server) ;;
    esac
  done
  [ ${#pkgs[@]} -gt 0 ] || return 0
  is_root || die "packages missing (${pkgs[*]}) and not root: install them with apt-get first"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for a dpkg/apt lock held by someone else (unattended upgrades, a parallel job) instead of failing.
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
  log "installing ${pkgs[*]} from Debian packages"
  local updated=1
  "${apt[@]}" update >&2 || { updated=0; log "apt-get update failed; trying with the cached package lists"; }
  if ! "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >&2; then
    # Usually an earlier dpkg run was interrupted: finish it, then try once more.
    log "apt-get install failed; running dpkg --configure -a and retrying once"
    dpkg --configure -a >&2 || true
    [ "$updated" = 1 ] || "${apt[@]}" update >&2 || true
    "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >&2 || die "apt-get install ${pkgs[*]} failed"
  fi
  log "installed ${pkgs[*]}"
}

prepare_base() {
  if [ -d "$BASE" ] && [ ! -e "$BASE/$MARKER" ] && [ -n "$(ls -A "$BASE")" ]; then
    die "$BASE exists, is not empty and was not created by services.sh; set TASKFLOW_SERVICES_DIR elsewhere"
  fi
  mkdir -p "$BASE"
  touch "$BASE/$MARKER"
  # postgres (not root) must be able to traverse into its data directory.
  chmod 755 "$BASE"
}

# ------------------------------------------------------------------------------------ postgres
pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }
pg_running() {   # our postmaster is alive and answering
  local pid
  pid=$(pid_from "$PG_DIR/data/postmaster.pid")
  alive "$pid" && pg_ready
}

start_postgres() {
  local bin pid i
  bin=$(pg_bin)
  mkdir -p "$PG_DIR"
  if is_root; then
    chown postgres:postgres "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" \
      || die "user postgres cannot reach $PG_DIR (every parent directory needs o+x); set TASKFLOW_SERVICES_DIR under /tmp"
  fi
  pid=$(pid_from "$PG_DIR/data/postmaster.pid")
  if ! alive "$pid" && port_open "$PG_PORT"; then   # checked before the (1 s) initdb
    die "port $PG_PORT is in use by something that is not our postgres; set TASKFLOW_PG_PORT"
  fi
  if [ ! -s "$PG_DIR/data/PG_VERSION" ]; then
    rm -rf "$PG_DIR/data"
    log "postgres: initdb"
    # The superuser only logs in over the Unix socket (trust); TCP needs a password (scram).
    as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
      || { tail_log "$PG_DIR/initdb.log"; die "postgres: initdb failed"; }
  fi

  pid=$(pid_from "$PG_DIR/data/postmaster.pid")
  if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
    # Ours is running (or still starting up / recovering): wait for it instead of starting another.
    for i in $(seq 1 120); do
      pg_ready && break
      alive "$pid" || die "postgres (pid $pid) exited while we waited for it"
      [ "$i" = 120 ] && { tail_log "$PG_DIR/postgres.log"; die "postgres (pid $pid) runs but does not answer on port $PG_PORT"; }
      sleep 0.5
    done
    log "postgres already running (pid $pid) on 127.0.0.1:$PG_PORT"
  else
    port_open "$PG_PORT" && die "port $PG_PORT is in use by something that is not our postgres; set TASKFLOW_PG_PORT"
    # A postmaster.pid left by a killed server blocks the start when its PID was reused.
    rm -f "$PG_DIR/data/postmaster.pid"
    log "postgres: starting on 127.0.0.1:$PG_PORT"
    # fsync and friends off: test data is thrown away, and this makes the tests faster.
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 -o \
      "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >"$PG_DIR/pg_ctl.log" 2>&1 \
      || { tail_log "$PG_DIR/pg_ctl.log" "$PG_DIR/postgres.log"; die "postgres did not start"; }
    pg_ready || { tail_log "$PG_DIR/postgres.log"; die "postgres started but does not answer on port $PG_PORT"; }
    log "postgres ready (pid $(pid_from "$PG_DIR/data/postmaster.pid"))"
  fi

  # Role and database, idempotently; the password is (re)set so a reused data dir always matches.
  as_pg "$bin/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA >"$PG_DIR/psql.log" 2>&1 <<SQL \
    || { tail_log "$PG_DIR/psql.log"; die "postgres: creating role/database $DB_USER failed"; }
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS';
  ELSE
    ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $DB_USER OWNER $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_USER')\gexec
SQL
}

stop_postgres() {
  local pid bin
  pid=$(pid_from "$PG_DIR/data/postmaster.pid")
  alive "$pid" || return 0
  bin=$(pg_bin)
  # -m fast: roll back open transactions and disconnect clients instead of waiting for them.
  if [ -n "$bin" ] && as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >&2 && wait_gone "$pid" 5; then
    log "postgres stopped (pid $pid)"
  else
    stop_pid postgres "$pid" 10
  fi
}

# ------------------------------------------------------------------------------------ rabbitmq
# The broker's environment. Set in subshells only (rabbit_run), so psql/runuser never see HOME etc.
rabbit_env() {
  export HOME=$RMQ_DIR                         # .erlang.cookie: the same for the server and rabbitmqctl
  export RABBITMQ_NODENAME=$RMQ_NODE
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_DIST_PORT=$DIST_PORT
  export ERL_EPMD_PORT=$EPMD_PORT               # our own epmd: a known PID, not the shared one on 4369
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_CONF_ENV_FILE=$RMQ_DIR/rabbitmq-env.conf   # empty: ignore /etc/rabbitmq/rabbitmq-env.conf
  export RABBITMQ_CONFIG_FILE=$RMQ_DIR/rabbitmq.conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$RMQ_DIR/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_DIR/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia
  export RABBITMQ_LOG_BASE=$RMQ_DIR/log
  export RABBITMQ_PID_FILE=$RMQ_DIR/rabbit.pid
  # Without this the Erlang distribution port listens on 0.0.0.0.
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
rabbit_run() { (rabbit_env; exec "$@"); }
rabbitmqctl() { rabbit_run "$RMQ_LIB/rabbitmqctl" -q -n "$RMQ_NODE" "$@"; }
rabbit_running() {   # our broker wrapper is alive and the AMQP port answers
  alive "$(pid_from "$RMQ_DIR/wrapper.pid")" && port_open "$AMQP_PORT"
}

# Launch the broker without waiting for it: its Erlang boot (about 5 s) overlaps PostgreSQL's start.
launch_rabbitmq() {
  local wpid epid i
  mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  wpid=$(pid_from "$RMQ_DIR/wrapper.pid")
  if alive "$wpid"; then
    log "rabbitmq already launched (wrapper pid $wpid)"
    return 0
  fi
  port_open "$AMQP_PORT" && die "port $AMQP_PORT is in use by something that is not our rabbitmq; set TASKFLOW_AMQP_PORT"
  port_open "$DIST_PORT" && die "port $DIST_PORT (Erlang distribution) is in use; set TASKFLOW_DIST_PORT"
  if [ ! -s "$RMQ_DIR/.erlang.cookie" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f >"$RMQ_DIR/.erlang.cookie")
    chmod 400 "$RMQ_DIR/.erlang.cookie"
  fi
  # default_user is created (administrator, full permissions on /) on the first boot of an empty
  # mnesia; ensure_rabbit_user checks it afterwards anyway. loopback_users = none: the user may log in
  # from 127.0.0.1 (only `guest` is restricted by default, but be explicit).
  printf '%s\n' "listeners.tcp.1 = 127.0.0.1:$AMQP_PORT" "default_user = $DB_USER" "default_pass = $DB_PASS" \
    "default_vhost = /" "loopback_users = none" >"$RMQ_DIR/rabbitmq.conf"
  echo '[].' >"$RMQ_DIR/enabled_plugins"
  : >"$RMQ_DIR/rabbitmq-env.conf"

  epid=$(pid_from "$RMQ_DIR/epmd.pid")
  if ! alive "$epid"; then
    port_open "$EPMD_PORT" && die "epmd port $EPMD_PORT is in use by something that is not ours; set TASKFLOW_EPMD_PORT"
    # setsid + all three streams redirected: a daemon holding our stdout would make
    # `eval "$(services.sh start)"` or `| tee` hang until the servers exit.
    setsid epmd -port "$EPMD_PORT" -address 127.0.0.1 >"$RMQ_DIR/epmd.log" 2>&1 </dev/null &
    epid=$!
    echo "$epid" >"$RMQ_DIR/epmd.pid"
    # Wait for it: if Erlang finds no epmd it daemonizes one of its own, with a PID we do not know.
    for i in $(seq 1 100); do
      port_open "$EPMD_PORT" && break
      alive "$epid" || { tail_log "$RMQ_DIR/epmd.log"; die "epmd exited at start"; }
      [ "$i" = 100 ] && die "epmd not listening on $EPMD_PORT after 10 s"
      sleep 0.1
    done
  fi
  rm -f "$RMQ_DIR/rabbit.pid"
  log "rabbitmq: starting on 127.0.0.1:$AMQP_PORT (epmd $EPMD_PORT, dist $DIST_PORT)"
  # One subshell that execs setsid, which execs the wrapper: $! is then the wrapper's own PID
  # (a function call or a nested subshell here would record an intermediate shell instead).
  (rabbit_env; exec setsid "$RMQ_LIB/rabbitmq-server") >"$RMQ_DIR/stdout.log" 2>&1 </dev/null &
  echo $! >"$RMQ_DIR/wrapper.pid"
}

wait_rabbitmq() {
  local wpid i
  wpid=$(pid_from "$RMQ_DIR/wrapper.pid")
  # The AMQP listener opens at the end of the boot. Poll TCP (cheap) rather than rabbitmqctl, which
  # boots a whole Erlang VM per call.
  for i in $(seq 1 1200); do
    port_open "$AMQP_PORT" && break
    alive "$wpid" || { tail_log "$RMQ_DIR/stdout.log" "$RMQ_DIR/log/$RMQ_NODE.log"; die "rabbitmq exited during boot"; }
    [ "$i" = 1200 ] && { tail_log "$RMQ_DIR/stdout.log"; die "rabbitmq not listening on $AMQP_PORT after 120 s"; }
    sleep 0.1
  done
  rabbitmqctl await_startup --timeout 60 >&2 \
    || { tail_log "$RMQ_DIR/stdout.log"; die "rabbitmqctl await_startup failed"; }
  log "rabbitmq ready (wrapper pid $wpid, beam pid $(pid_from "$RMQ_DIR/rabbit.pid"))"
}

ensure_rabbit_user() {
  # Normally default_user already made it; this covers a reused mnesia directory whose user was
  # changed or deleted. One rabbitmqctl call when all is well (each costs ~0.5 s of Erlang boot).
  # Outputs are captured first: `grep -q` closing a pipe early would fail the pipeline (pipefail).
  local users perms
  users=$(rabbitmqctl list_users 2>&1) || { log "$users"; die "rabbitmqctl list_users failed"; }
  if ! awk '{print $1}' <<<"$users" | grep -qx "$DB_USER"; then
    log "rabbitmq: creating user $DB_USER"
    rabbitmqctl add_user "$DB_USER" "$DB_PASS" >&2 || die "rabbitmqctl add_user $DB_USER failed"
    rabbitmqctl set_user_tags "$DB_USER" administrator >&2 || die "rabbitmqctl set_user_tags failed"
  fi
  perms=$(rabbitmqctl list_user_permissions "$DB_USER" 2>&1) || perms=
  if ! grep -qE '^/[[:space:]]+\.\*[[:space:]]+\.\*[[:space:]]+\.\*$' <<<"$perms"; then
    rabbitmqctl set_permissions -p / "$DB_USER" '.*' '.*' '.*' >&2 || die "rabbitmqctl set_permissions failed"
  fi
}

stop_rabbitmq() {
  # SIGTERM to the wrapper script makes it stop the node cleanly (about 1 s); then the beam itself
  # in case the wrapper was already gone; then our epmd.
  [ -d "$RMQ_DIR" ] || return 0
  local rc=0
  stop_pid rabbitmq "$(pid_from "$RMQ_DIR/wrapper.pid")" 60 || rc=1
  stop_pid rabbitmq-beam "$(pid_from "$RMQ_DIR/rabbit.pid")" 30 || rc=1
  stop_pid epmd "$(pid_from "$RMQ_DIR/epmd.pid")" 5 || rc=1
  [ "$rc" = 0 ] && rm -f "$RMQ_DIR/wrapper.pid" "$RMQ_DIR/rabbit.pid" "$RMQ_DIR/epmd.pid"
  return "$rc"
}

# ------------------------------------------------------------------------------------ helpers for stop
wait_gone() {  # PID SECONDS
  local i
  for i in $(seq 1 $(($2 * 10))); do alive "$1" || return 0; sleep 0.1; done
  ! alive "$1"
}
stop_pid() {   # NAME PID [SECONDS]: SIGTERM, wait, then SIGKILL
  local name=$1 pid=$2 t=${3:-15}
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$t"; then
    log "$name (pid $pid) ignored SIGTERM for ${t}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || { log "ERROR: $name (pid $pid) is still alive"; return 1; }
  fi
  log "$name stopped (pid $pid)"
}

# ------------------------------------------------------------------------------------ exports
export_lines() {   # for every service of ours that is up
  if pg_running 2>/dev/null; then
    printf "export TASKFLOW_POSTGRES='Host=127.0.0.1;Port=%s;Username=%s;Password=%s;Database=%s'\n" \
      "$PG_PORT" "$DB_USER" "$DB_PASS" "$DB_USER"
  fi
  if rabbit_running; then
    printf "export TASKFLOW_AMQP='amqp://%s:%s@127.0.0.1:%s/'\n" "$DB_USER" "$DB_PASS" "$AMQP_PORT"
  fi
}

# ------------------------------------------------------------------------------------ commands
cmd_start() {
  local want=("$@") s pg=0 rmq=0
  [ ${#want[@]} -gt 0 ] || want=("${ALL_SERVICES[@]}")
  for s in "${want[@]}"; do
    case $s in
      postgres) pg=1 ;;
      rabbitmq) rmq=1 ;;
      *) die "unknown service '$s' (known: ${ALL_SERVICES[*]})" ;;
    esac
  done
  # Fast path: everything asked for is already up.
  if { [ "$pg" = 0 ] || pg_running 2>/dev/null; } && { [ "$rmq" = 0 ] || rabbit_running; }; then
    log "already running: ${want[*]}"
  else
    local todo=()
    [ "$pg" = 1 ] && todo+=(postgres)
    [ "$rmq" = 1 ] && todo+=(rabbitmq)
    install_missing "${todo[@]}"
    prepare_base
    # `if`, not `a && f`: bash ignores `set -e` inside a function called from an && list.
    if [ "$rmq" = 1 ]; then launch_rabbitmq; fi
    if [ "$pg" = 1 ]; then start_postgres; fi
    if [ "$rmq" = 1 ]; then wait_rabbitmq; ensure_rabbit_user; fi
  fi
  local lines
  lines=$(export_lines)
  { echo "# generated by scripts/services.sh $(date -u +%FT%TZ); source this file"; echo "$lines"; } >"$BASE/env.sh"
  echo "$lines"
  log "ready (${want[*]}); exports also in $BASE/env.sh"
}

cmd_stop() {
  local clean=0 a rc=0
  for a in "$@"; do
    case $a in --clean) clean=1 ;; *) usage ;; esac
  done
  if [ ! -d "$BASE" ]; then log "nothing to stop ($BASE does not exist)"; return 0; fi
  stop_rabbitmq || rc=1
  stop_postgres || rc=1
  if [ "$rc" != 0 ]; then die "some processes did not stop; $BASE kept"; fi
  if [ "$clean" = 1 ]; then
    if [ -e "$BASE/$MARKER" ]; then
      rm -rf "$BASE" && log "removed $BASE"
    else
      log "not removing $BASE: it was not created by services.sh"
    fi
  fi
  log "stopped"
}

cmd_status() {
  local rc=0 pid
  pid=$(pid_from "$PG_DIR/data/postmaster.pid" 2>/dev/null || true)
  if pg_running 2>/dev/null; then
    echo "postgres: running (pid $pid) on 127.0.0.1:$PG_PORT"
  elif alive "$pid"; then
    echo "postgres: NOT answering (pid $pid alive) on 127.0.0.1:$PG_PORT"; rc=3
  else
    echo "postgres: stopped"; rc=3
  fi
  pid=$(pid_from "$RMQ_DIR/wrapper.pid" 2>/dev/null || true)
  if rabbit_running; then
    echo "rabbitmq: running (wrapper pid $pid, beam pid $(pid_from "$RMQ_DIR/rabbit.pid"), epmd pid $(pid_from "$RMQ_DIR/epmd.pid")) on 127.0.0.1:$AMQP_PORT"
  elif alive "$pid"; then
    echo "rabbitmq: NOT answering (wrapper pid $pid alive) on 127.0.0.1:$AMQP_PORT"; rc=3
  else
    echo "rabbitmq: stopped"; rc=3
  fi
  echo "directory: $BASE"
  return "$rc"   # 0 only when all services are up (3 = some are not, as in LSB `status`)
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
