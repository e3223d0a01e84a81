# shellcheck shell=bash
# Shared helpers for the cluster scripts in .ci/cluster. Sourced, not run.
#
# Every server these scripts start lives under $GOC_CLUSTER_DIR (default
# /tmp/goc-cluster), one subdirectory per component, and is stopped by the
# pid recorded there. Nothing here touches the system PostgreSQL (5432) or
# MariaDB (3306), their data or their configuration.

GOC_CLUSTER_DIR=${GOC_CLUSTER_DIR:-/tmp/goc-cluster}
# shellcheck disable=SC2034 # used by the scripts that source this file
CLUSTER_BIN=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# Long helpers (initdb, pg_basebackup, mariadb-install-db, pg_ctl) run
# through run(), so that a SIGTERM/SIGINT/SIGHUP of the script reaches them
# at once instead of leaving them writing into a state directory that
# 'down' is removing.
CHILD_PID=
_on_signal() {
  local sig=$1
  if [ -n "$CHILD_PID" ]; then
    # The child leads its own process group (run starts it with setsid):
    # TERM all of it (background commands of a script ignore SIGINT).
    kill -TERM -- "-$CHILD_PID" 2>/dev/null || kill -TERM "$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
  log "interrupted by SIG$sig"
  exit $((128 + $(kill -l "$sig")))
}
trap '_on_signal TERM' TERM
trap '_on_signal INT' INT
trap '_on_signal HUP' HUP

# run CMD...: run the external command CMD (not a shell function) as a
# child that a signal to this script also stops, with its children.
run() {
  local rc=0
  setsid -w "$@" &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=
  return "$rc"
}

log() { printf '[%s %s] %s\n' "$(date +%T.%3N)" "${GOC_COMPONENT:-cluster}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

now_ms() { date +%s%3N; }
# secs_since START_MS: seconds since START_MS, with one decimal.
secs_since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%01d' $((d / 1000)) $(((d % 1000) / 100))
}

require_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root (it switches to the mysql/postgres OS users itself)"
}

ensure_state_root() {
  mkdir -p "$GOC_CLUSTER_DIR"
  chmod 755 "$GOC_CLUSTER_DIR"
  # The servers run as mysql and postgres: they must reach the directory.
  local u
  for u in mysql postgres; do
    id "$u" >/dev/null 2>&1 || continue
    setpriv --reuid="$u" --regid="$u" --init-groups test -x "$GOC_CLUSTER_DIR" ||
      die "the $u OS user cannot enter $GOC_CLUSTER_DIR (a parent directory is closed to it); set GOC_CLUSTER_DIR elsewhere, e.g. under /tmp"
  done
}

# remove_state_root: drop $GOC_CLUSTER_DIR once no component is left in it.
remove_state_root() {
  rmdir "$GOC_CLUSTER_DIR" 2>/dev/null || true
}

# wait_until TIMEOUT_S DESCRIPTION CMD...: run CMD every 0.2 s until it
# succeeds; fail after TIMEOUT_S seconds.
wait_until() {
  local t=$1 what=$2
  shift 2
  local deadline=$(($(now_ms) + t * 1000))
  until "$@" >/dev/null 2>&1; do
    if (($(now_ms) >= deadline)); then
      log "timed out after ${t}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

port_listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
port_free() { ! port_listening "$1"; }

# port_owner PORT: the process listening on PORT, for error messages.
port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | sed -n '1s/.*users:(\(.*\)).*/\1/p'; }

require_ports_free() {
  local p
  for p in "$@"; do
    port_free "$p" || die "port $p is already in use by $(port_owner "$p") (not one of ours: no pid file says so)"
  done
}

read_pid() {
  local f=$1
  [ -s "$f" ] || return 1
  local p
  p=$(head -1 "$f" 2>/dev/null | tr -dc 0-9)
  [ -n "$p" ] || return 1
  echo "$p"
}

# pid_ours PID MARKER: PID is alive and its command line mentions MARKER (a
# path under the state directory). Guards against a recycled pid and against
# ever signalling the system servers.
pid_ours() {
  local pid=$1 marker=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  local cmd
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$marker"* ]]
}

# pid_alive PID: running (a zombie waiting for its reaper counts as gone).
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pid_gone() { ! pid_alive "$1"; }

# pgid_of PID: its process group, empty if gone.
pgid_of() { { ps -o pgid= -p "$1" 2>/dev/null || true; } | tr -d ' '; }

# stop_pid PID SIGNAL TIMEOUT_S: send SIGNAL to PID, wait for it to exit,
# then SIGKILL it and whatever is left of the process group it led (SST
# helpers, rsync daemons). Only PIDs the scripts started reach here.
stop_pid() {
  local pid=$1 sig=$2 t=$3 pgid
  pgid=$(pgid_of "$pid")
  kill "-$sig" "$pid" 2>/dev/null || true
  if ! wait_until "$t" "pid $pid to exit after SIG$sig" pid_gone "$pid"; then
    log "pid $pid still running; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 "pid $pid to exit after SIGKILL" pid_gone "$pid" || true
  fi
  if [ -n "$pgid" ] && [ "$pgid" = "$pid" ]; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
}

# kill9_group PID: kill -9 PID's process group (when PID leads it), its
# direct children, and PID itself, at once.
kill9_group() {
  local pid=$1 pgid kids
  pgid=$(pgid_of "$pid")
  kids=$({ ps -o pid= --ppid "$pid" 2>/dev/null || true; } | tr '\n' ' ')
  if [ -n "$pgid" ] && [ "$pgid" = "$pid" ]; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  # shellcheck disable=SC2086
  kill -KILL "$pid" $kids 2>/dev/null || true
  wait_until 10 "pid $pid to die" pid_gone "$pid"
}

# kill_group_members PGID MARKER: SIGKILL each member of process group PGID
# whose command line mentions MARKER (leftovers of a server we started).
kill_group_members() {
  local pgid=$1 marker=$2 p
  for p in $(pgrep -g "$pgid" 2>/dev/null || true); do
    if pid_ours "$p" "$marker"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
}

# spawn PIDFILE LOGFILE CMD...: start CMD in a new session (so that it and
# its children form one process group), detached from our stdin and
# terminal, and write its pid to PIDFILE.
spawn() {
  local pidfile=$1 logfile=$2
  shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
  local _
  for _ in $(seq 1 50); do
    [ -s "$pidfile" ] && return 0
    sleep 0.02
  done
  die "could not start $*"
}

# show_log FILE [LINES]: print the end of a log, for failures.
show_log() {
  local f=$1 n=${2:-40}
  if [ -s "$f" ]; then
    printf '%s\n' "----- last $n lines of $f -----" >&2
    tail -n "$n" "$f" >&2
    printf '%s\n' "----- end of $f -----" >&2
  fi
}

# as_user USER CMD...: run CMD as an OS user, without a login shell (setpriv
# execs, so a pid taken from spawn is the server's own pid).
# as_user_argv USER sets the array AS_USER to that prefix, for spawn.
as_user_argv() {
  AS_USER=(setpriv --reuid="$1" --regid="$1" --init-groups env HOME="$GOC_CLUSTER_DIR")
}
as_user() {
  local u=$1
  shift
  as_user_argv "$u"
  "${AS_USER[@]}" "$@"
}
