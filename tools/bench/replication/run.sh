#!/usr/bin/env bash
# Continuous replication benchmark (agent/replication), replica on the same
# machine: for each transport in TRANSPORTS, either opened in the engine's
# process (local) or behind two real TCP transports over loopback (tcp:
# TLS 1.3 with enrolled identities, zstd, remote.Server/remote.Dial).
# Transports alternate within each run, so that they share the machine's
# moods.
#
# lag: for each capture backend in LAG_BACKENDS, REPS times: start an
#   engine on a fresh master, write LAG_RATE small files a second for
#   LAG_SECONDS, and time each file from the end of its write on the master
#   to its appearance, complete, in the replica (seen with inotify); the
#   engine's own capture → durable apply lag is printed beside it.
# throughput: write a mixed tree of TOTAL_MB MiB once, then REPS times, in
#   an order that alternates: the engine's initial synchronization into an
#   empty replica (Start → Phase replicating, fsyncs included, trees
#   checked), and `cp -a` of the same tree followed by `sync` (cp alone
#   does not make the copy durable). Page cache is dropped before each run
#   when /proc/sys/vm/drop_caches is writable.
# A file still missing 30 s after the last write counts as infinitely
# late (+Inf). Prints each run, the medians and, for throughput, our rate against cp's.
#
# Environment: MODES ("lag throughput"), TRANSPORTS ("local"; "local tcp"
# for both), REPS (3), LAG_RATE (1000),
# LAG_SECONDS (10), LAG_SIZE (256 bytes), LAG_BACKENDS ("auto inotify"),
# TOTAL_MB (2048), TMPDIR (needs about 3x TOTAL_MB free).
set -euo pipefail

MODES=${MODES:-"lag throughput"}
TRANSPORTS=${TRANSPORTS:-local}
REPS=${REPS:-3}
LAG_RATE=${LAG_RATE:-1000}
LAG_SECONDS=${LAG_SECONDS:-10}
LAG_SIZE=${LAG_SIZE:-256}
LAG_BACKENDS=${LAG_BACKENDS:-"auto inotify"}
TOTAL_MB=${TOTAL_MB:-2048}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/replication-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

bench=$work/replication-bench
(cd "$repo" && go build -o "$bench" ./tools/bench/replication)

fs=$(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }')
echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r), $fs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# drop_caches: write back, then drop the page cache, dentries and inodes,
# so that every run reads its source from disk. Says once if it cannot.
can_drop=1
drop_caches() {
  sync
  if ((can_drop)) && ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    can_drop=0
    echo "== cannot write /proc/sys/vm/drop_caches: caches are NOT dropped between runs"
  fi
}

now() { date +%s.%N; }

# field NAME LINE: the value of NAME=... in a key=value line.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# median FILE COLUMN
median() {
  awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

begin=$(now)

if [[ " $MODES " == *" lag "* ]]; then
  echo "== lag: $LAG_RATE files/s of $LAG_SIZE bytes for $LAG_SECONDS s, backends: $LAG_BACKENDS, transports: $TRANSPORTS"
  for rep in $(seq "$REPS"); do
    for b in $LAG_BACKENDS; do
      for t in $TRANSPORTS; do
        d=$work/lag-$b-$t-$rep
        mkdir -p "$d"
        out=$("$bench" -mode lag -transport "$t" -backend "$b" -dir "$d" -rate "$LAG_RATE" -duration "${LAG_SECONDS}s" -size "$LAG_SIZE")
        echo "   $t $b #$rep: $out"
        echo "$(field ext_p50_ms "$out") $(field ext_p99_ms "$out") $(field eng_p50_ms "$out") $(field eng_p99_ms "$out") $(field rate "$out") $(field backend "$out") $(field missing "$out")" >>"$work/lag-$b-$t"
        rm -rf "$d"
      done
    done
  done
  echo "== lag medians of $REPS runs (ms; ext: write closed on master -> complete in replica, via inotify; eng: engine's capture -> durable apply)"
  printf '%-9s %-10s %-9s %10s %10s %10s %10s %8s %8s\n' transport asked backend ext_p50 ext_p99 eng_p50 eng_p99 rate/s missing
  for b in $LAG_BACKENDS; do
    for t in $TRANSPORTS; do
      printf '%-9s %-10s %-9s %10s %10s %10s %10s %8s %8s\n' "$t" "$b" "$(awk 'END { print $6 }' "$work/lag-$b-$t")" \
        "$(median "$work/lag-$b-$t" 1)" "$(median "$work/lag-$b-$t" 2)" "$(median "$work/lag-$b-$t" 3)" "$(median "$work/lag-$b-$t" 4)" "$(median "$work/lag-$b-$t" 5)" "$(median "$work/lag-$b-$t" 7)"
    done
  done
fi

if [[ " $MODES " == *" throughput "* ]]; then
  src=$work/master
  echo "== throughput: generating about $TOTAL_MB MiB under $src"
  gen=$("$bench" -mode gen -dir "$src" -total-mb "$TOTAL_MB")
  files=$(field files "$gen")
  bytes=$(field bytes "$gen")
  echo "   $files files, $bytes bytes ($(du -sh "$src" | cut -f1) on disk)"

  run_hf() {
    local out
    drop_caches
    out=$("$bench" -mode throughput -transport "$1" -master "$src" -replica "$work/replica" -spool "$work/spool")
    echo "   holdfast $1: $out"
    echo "$(field identical_s "$out") $(field wall_s "$out")" >>"$work/tp-hf-$1"
    rm -rf "$work/replica" "$work/spool"
  }
  run_cp() {
    local t0 t1 t2
    drop_caches
    t0=$(now)
    cp -a "$src" "$work/copy"
    t1=$(now)
    sync
    t2=$(now)
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "   cp -a: cp_s=%.3f cp_sync_s=%.3f\n", b - a, c - a }'
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%.3f %.3f\n", c - a, b - a }' >>"$work/tp-cp"
    rm -rf "$work/copy"
  }
  for rep in $(seq "$REPS"); do
    echo "== throughput round $rep of $REPS"
    # Alternate which goes first, so that neither always runs right after
    # the other's deletion and writeback.
    # The transports in the order given, forwards then backwards.
    if ((rep % 2)); then
      for t in $TRANSPORTS; do run_hf "$t"; done
      run_cp
    else
      run_cp
      for t in $(tr ' ' '\n' <<<"$TRANSPORTS" | tac); do run_hf "$t"; done
    fi
  done
  cps=$(median "$work/tp-cp" 1)
  cpo=$(median "$work/tp-cp" 2)
  echo "== throughput medians of $REPS runs ($files files, $bytes bytes)"
  for t in $TRANSPORTS; do
    hf=$(median "$work/tp-hf-$t" 1)
    awk -v b="$bytes" -v h="$hf" -v s="$cps" -v t="$t" 'BEGIN {
      printf "holdfast initial sync, %-5s %8.3f s  %8.1f MiB/s  (rate / cp -a + sync: %.2f)\n", t, h, b / h / 1048576, s / h
    }'
  done
  awk -v b="$bytes" -v s="$cps" -v o="$cpo" 'BEGIN {
    printf "cp -a + sync                 %8.3f s  %8.1f MiB/s\n", s, b / s / 1048576
    printf "cp -a alone (not durable)    %8.3f s  %8.1f MiB/s\n", o, b / o / 1048576
  }'
fi

echo "== $(awk -v s="$begin" -v e="$(now)" 'BEGIN { printf "%.0f", e - s }') s in all"
