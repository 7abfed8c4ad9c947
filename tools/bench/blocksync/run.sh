#!/usr/bin/env bash
# Block-level resync benchmark: Holdfast's agent/blocksync against
# `rsync --inplace --no-whole-file` (rsync daemon), both over loopback TCP,
# in the same run, on the same pair of files.
#
# The replica holds an old version of a SIZE_MB file; the master holds a copy
# with CHANGE_PCT percent of it overwritten in random REGION-byte regions at
# random (unaligned) offsets. Each tool brings the replica up to date; the
# script measures the client's wall time, the bytes both ways and both
# ends' CPU time, checks the result with cmp, resets the replica, and
# repeats REPS times, interleaving the tools (in a rotating order) so that
# load from other users of the machine spreads evenly.
# It prints the median of each figure and the ratios against rsync.
#
# Configurations (TOOLS, space-separated; default all six):
#   hf-temp       blocksync in two rounds (Plan); the replica patches into
#                 a temp file, fsyncs it, renames it over its copy
#   hf-inplace    blocksync in two rounds with an in-place delta; the
#                 replica patches its copy in place, fsyncs it
#   hf-inplace-r1 the same in one round (Diff): rsync's algorithm
#   rsync         rsync --inplace --no-whole-file --ignore-times (no fsync)
#   rsync-fsync   the same with --fsync, for a like-for-like durability cost
#   rsync-temp    rsync --no-whole-file --ignore-times: rsync's default way,
#                 a temp file renamed over the old one (no fsync), to set
#                 against hf-temp
#
# Environment: SIZE_MB (1024), CHANGE_PCT (1), REGION (4096), REPS (3),
# BLOCK (0: blocksync.BlockSize picks), TOOLS, TMPDIR (where the files go;
# needs about 4x SIZE_MB free).
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
CHANGE_PCT=${CHANGE_PCT:-1}
REGION=${REGION:-4096}
REPS=${REPS:-3}
BLOCK=${BLOCK:-0}
TOOLS=${TOOLS:-"hf-temp hf-inplace hf-inplace-r1 rsync rsync-fsync rsync-temp"}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

# rsync, and GNU time for the rsync client's CPU time.
need=()
command -v rsync >/dev/null || need+=(rsync)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  echo "installing ${need[*]} with apt-get"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get install -y "${need[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y "${need[@]}" >/dev/null; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/blocksync-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/master" "$work/replica"
bench=$work/blocksync-bench
(cd "$repo" && go build -o "$bench" ./tools/bench/blocksync)

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(rsync --version | head -1)"
echo "== files: $SIZE_MB MiB, $CHANGE_PCT% changed in $REGION-byte regions, under $work"
"$bench" mkfiles -old "$work/old.img" -new "$work/master/file.img" \
  -size-mb "$SIZE_MB" -percent "$CHANGE_PCT" -region "$REGION"

# wait_port PORT: until something accepts connections on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$1" >&2
  return 1
}

# Our server, one for the whole run.
hf_port=$("$bench" freeport)
"$bench" serve -listen "127.0.0.1:$hf_port" -file "$work/replica/file.img" >"$work/hf-serve.log" 2>&1 &
pids+=($!)

# The rsync daemon, bound to loopback, one module: the replica directory.
rs_port=$("$bench" freeport)
{
  echo "address = 127.0.0.1"
  echo "port = $rs_port"
  echo "use chroot = no"
  echo "pid file = $work/rsyncd.pid"
  echo "log file = $work/rsyncd.log"
  echo "[replica]"
  echo "    path = $work/replica"
  echo "    read only = no"
  if [[ $(id -u) -eq 0 ]]; then
    echo "    uid = 0"
    echo "    gid = 0"
  fi
} >"$work/rsyncd.conf"
rsync --daemon --no-detach --config="$work/rsyncd.conf" &
rsyncd_pid=$!
pids+=("$rsyncd_pid")
wait_port "$hf_port"
wait_port "$rs_port"

# Each run starts from the same replica: a fresh copy of the old file,
# synced, so no tool pays for the previous one's writeback.
reset_replica() {
  cp "$work/old.img" "$work/replica/file.img"
  sync "$work/replica/file.img"
}

now() { date +%s.%N; }

# CPU seconds the rsync daemon's finished children used (it forks one per
# connection and reaps it): fields 16 and 17 of /proc/PID/stat, in ticks.
daemon_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($16 + $17) / hz }' "/proc/$rsyncd_pid/stat"
}

# run_tool NAME: one resync; appends "wall sent received cpu" to
# $work/NAME. cpu is both ends' CPU seconds, a figure less at the mercy of
# other users of the machine than the wall time.
run_tool() {
  local name=$1 out start end wall sent recv cpu
  case $name in
    hf-*)
      local flags=(-connect "127.0.0.1:$hf_port" -file "$work/master/file.img" -block "$BLOCK")
      [[ $name == *inplace* ]] && flags+=(-inplace)
      [[ $name == *-r1 ]] && flags+=(-rounds 1)
      out=$("$bench" sync "${flags[@]}")
      echo "   $name: $out"
      wall=$(sed -n 's/.*wall_s=\([0-9.]*\).*/\1/p' <<<"$out")
      sent=$(sed -n 's/.* sent=\([0-9]*\).*/\1/p' <<<"$out")
      recv=$(sed -n 's/.* received=\([0-9]*\).*/\1/p' <<<"$out")
      cpu=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(client|server)_cpu_s=/) { split($i, kv, "="); c += kv[2] } }
        END { printf "%.2f", c }' <<<"$out")
      ;;
    rsync|rsync-fsync|rsync-temp)
      local flags=(--no-whole-file --ignore-times --stats)
      [[ $name != rsync-temp ]] && flags+=(--inplace)
      [[ $name == rsync-fsync ]] && flags+=(--fsync)
      local d0 d1 client
      d0=$(daemon_cpu)
      start=$(now)
      out=$(/usr/bin/time -o "$work/time.out" -f '%U %S' \
        rsync "${flags[@]}" "$work/master/file.img" "rsync://127.0.0.1:$rs_port/replica/file.img")
      end=$(now)
      sleep 0.3 # let the daemon reap its child
      d1=$(daemon_cpu)
      client=$(awk '{ print $1 + $2 }' "$work/time.out")
      cpu=$(awk -v c="$client" -v a="$d0" -v b="$d1" 'BEGIN { printf "%.2f", c + b - a }')
      wall=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
      sent=$(sed -n 's/^Total bytes sent: \([0-9,]*\).*/\1/p' <<<"$out" | tr -d ,)
      recv=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' <<<"$out" | tr -d ,)
      local lit matched
      lit=$(sed -n 's/^Literal data: \([0-9,]*\).*/\1/p' <<<"$out" | tr -d ,)
      matched=$(sed -n 's/^Matched data: \([0-9,]*\).*/\1/p' <<<"$out" | tr -d ,)
      echo "   $name: wall_s=$wall sent=$sent received=$recv total=$((sent + recv)) literal=$lit matched=$matched cpu_s=$cpu"
      ;;
  esac
  if ! cmp -s "$work/master/file.img" "$work/replica/file.img"; then
    echo "$name left a replica that differs from the master" >&2
    exit 1
  fi
  echo "$wall $sent $recv $cpu" >>"$work/$name"
}

# Each round starts with the next tool, so none always follows the same
# one (whose writeback may still be going on).
read -ra tools <<<"$TOOLS"
begin=$(now)
for rep in $(seq "$REPS"); do
  echo "== round $rep of $REPS"
  for i in "${!tools[@]}"; do
    reset_replica
    run_tool "${tools[(i + rep - 1) % ${#tools[@]}]}"
  done
done

# median FILE COLUMN
median() {
  awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "== $(awk -v s="$begin" -v e="$(now)" 'BEGIN { printf "%.0f", e - s }') s for all rounds, resets and checks included"
echo "== medians of $REPS runs ($SIZE_MB MiB, $CHANGE_PCT% changed in $REGION-byte regions)"
printf '%-14s %10s %14s %12s %14s %8s\n' tool wall_s sent received total_bytes cpu_s
declare -A W T C
for t in $TOOLS; do
  w=$(median "$work/$t" 1)
  s=$(median "$work/$t" 2)
  r=$(median "$work/$t" 3)
  c=$(median "$work/$t" 4)
  tot=$(awk '{ print $2 + $3 }' "$work/$t" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  W[$t]=$w
  T[$t]=$tot
  C[$t]=$c
  printf '%-14s %10s %14s %12s %14s %8s\n' "$t" "$w" "$s" "$r" "$tot" "$c"
done
if [[ -n ${T[rsync]:-} ]]; then
  echo
  echo "== ratios against rsync --inplace (below 1: blocksync is better)"
  for t in $TOOLS; do
    [[ $t == rsync ]] && continue
    awk -v n="$t" -v w="${W[$t]}" -v rw="${W[rsync]}" -v b="${T[$t]}" -v rb="${T[rsync]}" \
      -v c="${C[$t]}" -v rc="${C[rsync]}" \
      'BEGIN { printf "%-14s wall %.2f  bytes %.3f  cpu %.2f\n", n, w / rw, b / rb, c / rc }'
  done
fi
