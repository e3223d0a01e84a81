#!/usr/bin/env bash
# tagd's POST /api/tags with coalescing on and off (issue 14): two tagd
# processes on one database, each on tables of its own (--table-prefix), the
# second started with the flag that turns coalescing off. tagload loads one
# then the other with the same HTTP clients (keep-alive), in alternating
# rounds (the first process goes first in odd rounds), and checks after each
# load that the rise of that tagd's stored counts equals the submissions it
# acknowledged. The ratio is the median of the rounds' on/off ratios, so a
# burst of load from a neighbour hits both sides of a round alike. tagd's own
# CPU time per submission is read from /proc around each load.
#
#   bash bench/tagd-coalesce.sh                 # PostgreSQL from $GETORCREATE_POSTGRES, then SQLite
#   DBS=postgres ROUNDS=5 DURATION=3s bash bench/tagd-coalesce.sh
#
# Settings (environment): DBS (postgres, sqlite, mysql; default
# "postgres sqlite"), ROUNDS (5), DURATION per load (3s), CLIENTS (64), KEYS
# (1000 tag names, uniform), OFF_FLAG (the tagd flag that turns coalescing
# off; default --coalesce=false). Prints a Markdown table on stdout and the
# rounds on stderr; exits 1 if a count check fails or a submission failed.
# It starts only its own two tagd processes and stops them by their pids.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DBS=${DBS:-postgres sqlite}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3s}
CLIENTS=${CLIENTS:-64}
KEYS=${KEYS:-1000}
OFF_FLAG=${OFF_FLAG:---coalesce=false}
PG=${GETORCREATE_POSTGRES:-'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'}
MY=${GETORCREATE_MYSQL:-'mysql://root@127.0.0.1:3306/test'}

tmp=$(mktemp -d /tmp/tagd-coalesce.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

(cd "$root/cmd" && go build -o "$tmp/tagd" ./tagd && go build -o "$tmp/tagload" ./tagload)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

# drop_tables DB DSN PREFIX: the tables a tagd with that prefix creates.
drop_tables() {
  local t
  for t in tag_minutes item_tags tags tagd_requests tagd_schema; do
    case $1 in
      postgres) psql -q "$2" -c "DROP TABLE IF EXISTS $3$t" >/dev/null 2>&1 || true ;;
      mysql) mysql -h 127.0.0.1 -u root test -e "DROP TABLE IF EXISTS $3$t" >/dev/null 2>&1 || true ;;
    esac
  done
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

failed=0
echo "| database | tagd | submissions/s (median of rounds) | p50 | p99 | tagd CPU per submission | acknowledged | failed | counts | on ÷ off |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"
for db in $DBS; do
  run=tc$RANDOM
  case $db in
    postgres) dsn_on=$PG; dsn_off=$PG ;;
    mysql) dsn_on=$MY; dsn_off=$MY ;;
    sqlite) dsn_on="sqlite:$tmp/on.db"; dsn_off="sqlite:$tmp/off.db" ;;
    *) echo "unknown database $db" >&2; exit 2 ;;
  esac
  declare -A url dsn pid prefix
  for side in on off; do
    port=$(free_port)
    url[$side]=http://127.0.0.1:$port
    prefix[$side]=${run}_${side}_
    [ $side = on ] && dsn[$side]=$dsn_on || dsn[$side]=$dsn_off
    flags=()
    [ $side = off ] && flags=("$OFF_FLAG")
    env -u TAGD_TOKEN "$tmp/tagd" --db "${dsn[$side]}" --addr "127.0.0.1:$port" --table-prefix "${prefix[$side]}" \
      --log-level warn "${flags[@]}" 2>"$tmp/tagd-$db-$side.log" &
    pid[$side]=$!
    pids+=("${pid[$side]}")
  done
  for side in on off; do
    for _ in $(seq 100); do
      curl -fs "${url[$side]}/healthz" >/dev/null 2>&1 && break
      if ! kill -0 "${pid[$side]}" 2>/dev/null; then echo "tagd ($side) exited:" >&2; cat "$tmp/tagd-$db-$side.log" >&2; exit 1; fi
      sleep 0.1
    done
  done
  declare -A rates=() p50s=() p99s=() cpus=() acked=() fails=() checks=()
  ratios=()
  for r in $(seq "$ROUNDS"); do
    order="on off"
    [ $((r % 2)) = 0 ] && order="off on"
    declare -A rate=()
    for side in $order; do
      c0=$(cpu_ticks "${pid[$side]}")
      line=$("$tmp/tagload" --db "${dsn[$side]}" --url "${url[$side]}" --table-prefix "${prefix[$side]}" --http-only \
        --rounds 1 --duration "$DURATION" --clients "$CLIENTS" --keys "$KEYS" 2>>"$tmp/tagload.err" | grep '^tagd POST /api/tags')
      c1=$(cpu_ticks "${pid[$side]}")
      # phase name (3 words), subm/s, p50, p99, cpu/subm, acked, errors, check
      read -r _ _ _ rate1 p50 p99 _ ack err check <<<"$line"
      rate[$side]=$rate1
      rates[$side]+="$rate1 "
      p50s[$side]+="$p50 "
      p99s[$side]+="$p99 "
      cpus[$side]+="$(awk -v d=$((c1 - c0)) -v t="$ticks" -v n="$ack" 'BEGIN {printf "%.0f", d / t * 1e6 / (n > 0 ? n : 1)}') "
      acked[$side]=$(( ${acked[$side]:-0} + ack ))
      fails[$side]=$(( ${fails[$side]:-0} + err ))
      if [ "$check" != "counts == acknowledged" ]; then checks[$side]+="round $r: $check; "; failed=1; fi
      [ "$err" != 0 ] && failed=1
      echo "$db round $r $side: $line" >&2
    done
    ratios+=("$(awk -v a="${rate[on]}" -v b="${rate[off]}" 'BEGIN {printf "%.3f", a / b}')")
  done
  ratio=$(printf '%s\n' "${ratios[@]}" | median)
  echo "$db on/off per round: ${ratios[*]}, median $ratio" >&2
  for side in on off; do
    name="coalescing on (default)"
    [ $side = off ] && name="coalescing off ($OFF_FLAG)"
    med() { tr ' ' '\n' <<<"$1" | sed '/^$/d; s/µs$/e-3/; s/ms$//; s/s$/e3/' | median; }
    cell=""
    [ $side = on ] && cell=$(printf '%.2f' "$ratio")
    echo "| $db | $name | $(printf '%s\n' ${rates[$side]} | median | xargs printf '%.0f') | $(med "${p50s[$side]}" | xargs printf '%.2f') ms | $(med "${p99s[$side]}" | xargs printf '%.2f') ms | $(printf '%s\n' ${cpus[$side]} | median) µs | ${acked[$side]} | ${fails[$side]} | ${checks[$side]:-counts == acknowledged} | $cell |"
  done
  for side in on off; do
    kill "${pid[$side]}" 2>/dev/null || true
    wait "${pid[$side]}" 2>/dev/null || true
    [ $db != sqlite ] && drop_tables "$db" "${dsn[$side]}" "${prefix[$side]}"
  done
  unset url dsn pid prefix rates p50s p99s cpus acked fails checks
done
if [ -s "$tmp/tagload.err" ]; then echo "tagload's stderr:" >&2; sort "$tmp/tagload.err" | uniq -c | head -20 >&2; fi
exit $failed
