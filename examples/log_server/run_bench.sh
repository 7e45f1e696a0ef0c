#!/usr/bin/env bash
# Benchmark of the durable log server: acknowledged (durable) records per
# second and p50/p99 acknowledgement latency for 1, 16 and 64 one-at-a-time
# clients, group commit against one write+fsync per record. Each point runs
# REPS times (modes interleaved, so that a slow spell of the disk hits both);
# the table shows the median run by rate. Prints a Markdown table.
#
# Usage: examples/log_server/run_bench.sh [builddir] [seconds] [reps] [logdir]
#   defaults: build 4 3 /var/tmp   (logdir must be on the disk to measure,
#   not on tmpfs, where fsync costs nothing)
set -euo pipefail
builddir=${1:-build}
secs=${2:-4}
reps=${3:-3}
logdir=${4:-/var/tmp}
server=$builddir/examples/fsys-log-server
client=$builddir/examples/fsys-log-client
work=$(mktemp -d "$logdir/fsys-log-bench.XXXXXX")
server_pid=
trap '[ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

# run MODE CLIENTS -> prints "rate p50 p99 records_per_fsync"
run() {
  local flag=
  [ "$1" = single ] && flag=--no-group-commit
  rm -rf "$work/log" "$work/acks"
  "$server" --port 0 --log "$work/log" $flag --max-seconds 120 >"$work/srv.out" 2>&1 &
  server_pid=$!
  local port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on //p' "$work/srv.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "server did not start" >&2; cat "$work/srv.out" >&2; exit 1; }
  local out
  out=$("$client" --port "$port" --clients "$2" --seconds "$secs" --ack-log "$work/acks")
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=
  local per_fsync
  per_fsync=$(sed -n 's/.*(\([0-9.]*\) records per fsync).*/\1/p' "$work/srv.out")
  echo "$out" | awk -v pf="$per_fsync" '{
    for (i = 1; i <= NF; ++i) {
      if ($i == "records/s,") rate = $(i - 1);
      if ($i == "p50") p50 = $(i + 1);
      if ($i == "p99") p99 = $(i + 1);
    }
    print rate, p50, p99, pf }'
}

declare -A results
for c in 1 16 64; do
  for ((r = 0; r < reps; ++r)); do
    for mode in group single; do
      results[$mode,$c,$r]=$(run "$mode" "$c")
      echo "# $mode clients=$c run=$r: ${results[$mode,$c,$r]}" >&2
    done
  done
done

# The median run (by rate) of each point.
median() {
  local mode=$1 c=$2
  for ((r = 0; r < reps; ++r)); do echo "${results[$mode,$c,$r]}"; done | sort -n -k1,1 | sed -n "$(( (reps + 1) / 2 ))p"
}

echo "| clients | group commit rec/s | p50 ms | p99 ms | records per fsync | one fsync per record rec/s | p50 ms | p99 ms | ratio |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in 1 16 64; do
  read -r gr gp50 gp99 gpf <<<"$(median group "$c")"
  read -r sr sp50 sp99 _ <<<"$(median single "$c")"
  ratio=$(awk -v a="$gr" -v b="$sr" 'BEGIN { printf "%.1f×", (b > 0) ? a / b : 0 }')
  echo "| $c | $gr | $gp50 | $gp99 | $gpf | $sr | $sp50 | $sp99 | $ratio |"
done
