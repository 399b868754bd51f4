#!/usr/bin/env bash
# Alternating A/B runs of `aurigraph bench` with two release binaries on the same machine in the
# same session (the machines are shared and noisy: compare pairs, report medians).
#
#   benches/scripts/ab.sh BEFORE_BIN AFTER_BIN PAIRS [bench arguments...]
#
# For each pair it runs both binaries with the same arguments, BEFORE first in odd pairs and
# AFTER first in even pairs (ABBA): on the 2-core development machine consecutive gateway runs
# alternate between a fast and a slow mode whatever the binary (an A/A run of two copies of one
# binary gave the second of each pair 0.754x the first; docs/benchmarks.md), so a fixed order
# would credit one side with the other's position. It prints one line per run:
#   <label> <pair> load_accepted=<tx/s> verify_ceiling=<tx/s> p99_ms=<ms>
# then the median load accepted of each side and their ratio. A run that fails stops the script.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 BEFORE_BIN AFTER_BIN PAIRS [bench arguments...]" >&2
    exit 2
fi
before=$1 after=$2 pairs=$3
shift 3
for bin in "$before" "$after"; do
    [ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for pair in $(seq 1 "$pairs"); do
    order="before after"
    [ $((pair % 2)) -eq 0 ] && order="after before"
    for side in $order; do
        bin=$before
        [ "$side" = after ] && bin=$after
        log="$out/$side-$pair.log"
        if ! "$bin" bench "$@" > "$log" 2>&1; then
            echo "$side run $pair failed:" >&2
            tail -20 "$log" >&2
            exit 1
        fi
        load=$(sed -n 's/^load accepted = \([0-9]*\) tx\/s.*/\1/p' "$log" | tail -1)
        ceiling=$(sed -n 's/.*verify ceiling[^0-9]*\([0-9][0-9]*\) tx\/s.*/\1/p' "$log" | tail -1)
        p99=$(sed -n 's/^batch latency p99 = \([0-9.]*\) ms.*/\1/p' "$log" | tail -1)
        echo "$side $pair load_accepted=${load:-?} verify_ceiling=${ceiling:-?} p99_ms=${p99:-?}"
        echo "${load:-0}" >> "$out/$side.loads"
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
mb=$(median "$out/before.loads")
ma=$(median "$out/after.loads")
echo "median load accepted: before $mb, after $ma, ratio $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", a/b}')"
