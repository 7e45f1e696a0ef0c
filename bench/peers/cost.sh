#!/usr/bin/env bash
# Where each program's time goes: CPU time per operation in user space and
# in the kernel (getrusage through /usr/bin/time), for one case, the programs
# run one after the other REPS times. The kernel's share is the IO itself
# (the same for every program on one case); what differs between fsys and a
# peer at the same kernel cost is the library's own work per operation.
#
# usage: bench/peers/cost.sh [case]      (default cached:32)
# environment: FSYS_BUILD, PEER_BUILD, SECS (default 2), REPS (default 3), as run.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fsys_build=${FSYS_BUILD:-$repo/build-bench}
peer_build=${PEER_BUILD:-$repo/build-peers}
secs=${SECS:-2}
reps=${REPS:-3}
case_=${1:-cached:32}
run() { # name env... -- bin
  local name=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  [[ -x $1 ]] || { echo "cost.sh: $name: $1 not built" >&2; return; }
  local out
  out=$( { env "${envs[@]}" /usr/bin/time -f "TIME %U %S" "$1" "$case_" "$secs" 0; } 2>&1) || return
  python3 - "$name" "$out" <<'PY'
import sys, re
name, out = sys.argv[1:3]
ops = int(re.search(r" ops=(\d+)", out).group(1))
rate = float(re.search(r"ops_per_s=([\d.]+)", out).group(1))
u, s = map(float, re.search(r"TIME ([\d.]+) ([\d.]+)", out).group(1, 2))
# No warm-up window: the CPU time covers the measured operations (and the
# program's few milliseconds of setup).
print(f"{name}\t{rate:.0f}\t{u * 1e9 / ops:.0f}\t{s * 1e9 / ops:.0f}")
PY
}
printf 'program\tops_per_s\tuser_ns_per_op\tkernel_ns_per_op\n'
for ((r = 0; r < reps; ++r)); do
  run fsys_co -- "$fsys_build/bench/peers/fsys-peer"
  run fsys_aw FSYS_PEER_FORM=aw -- "$fsys_build/bench/peers/fsys-peer"
  run fsys_cb FSYS_PEER_FORM=cb -- "$fsys_build/bench/peers/fsys-peer"
  run condy -- "$peer_build/condy-peer"
  run co_context -- "$peer_build/co_context-peer"
  run liburing4cpp -- "$peer_build/liburing4cpp-peer"
  run raw_uring -- "$fsys_build/bench/peers/raw-uring-peer"
done
