#!/usr/bin/env bash
# The multi-core scaling run: `aurigraph bench` with the node on 1, 2, 4, 8, 16 … CPUs of a
# many-core host (its executors pinned, one per CPU: `--node-cpus`), the benchmark's own threads
# on the other CPUs (on all of them for the run that gives the node every CPU), in gateway and
# signed modes; then, optionally, three validators sharing every CPU.
#
#   benches/scripts/scaling.sh [BIN] [OUT_DIR]
#
# BIN: the aurigraph binary (default target/release/aurigraph). OUT_DIR (default
# ./scaling-out): machine.txt (what the host is), one log and one JSON per run, and
# summary.tsv, a line per run:
#   nodes cpus mode concurrency transfers load_accepted verify_ceiling accepted/ceiling p50_ms p99_ms
# Core counts above the host's are skipped. A failed run is recorded (load_accepted=FAILED,
# the log kept) and the script goes on, so that one bad point does not lose the others; the
# exit status is then 1.
#
# Environment (defaults in brackets):
#   SCALING_CPUS [1 2 4 8 16]        node CPU counts
#   SCALING_MODES [gateway signed]
#   SCALING_GATEWAY_PER_CPU [500000] gateway transfers per node CPU (at least 1,000,000)
#   SCALING_SIGNED_PER_CPU [250000]  signed transfers per node CPU (at least 250,000)
#   SCALING_BATCHES_PER_CPU [4]      batches in flight per node CPU (--concurrency, 16 to 256):
#                                    a closed loop moves at most in-flight / latency, so too few
#                                    caps the figure whatever the node could do
#   SCALING_CLUSTER [1]              also three validators sharing every CPU (0: not)
#   SCALING_RUN_S [180]              a run that takes longer is stopped and counted failed
set -uo pipefail
bin=${1:-target/release/aurigraph}
out=${2:-scaling-out}
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
mkdir -p "$out" || exit 2
cpus_list=${SCALING_CPUS:-1 2 4 8 16}
modes=${SCALING_MODES:-gateway signed}
gateway_per_cpu=${SCALING_GATEWAY_PER_CPU:-500000}
signed_per_cpu=${SCALING_SIGNED_PER_CPU:-250000}
batches_per_cpu=${SCALING_BATCHES_PER_CPU:-4}
cluster=${SCALING_CLUSTER:-1}
run_s=${SCALING_RUN_S:-180}
host=$(nproc)

{
    echo "date: $(date -u +%FT%TZ)"
    echo "binary: $("$bin" --version)"
    echo "kernel: $(uname -sr)"
    echo "cpus: $host online"
    lscpu 2>/dev/null | grep -E '^(Model name|Socket|Core|Thread|NUMA node|L3)' || true
    grep -E '^(MemTotal)' /proc/meminfo || true
    echo "temporary directory: ${TMPDIR:-/tmp}"
    df -hT "${TMPDIR:-/tmp}" 2>/dev/null | tail -1 || true
    echo "io_uring_disabled: $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo absent)"
    echo "memlock limit: $(ulimit -l)"
} > "$out/machine.txt"
cat "$out/machine.txt"

printf 'nodes\tcpus\tmode\tconcurrency\ttransfers\tload_accepted\tverify_ceiling\taccepted_over_ceiling\tp50_ms\tp99_ms\n' \
    > "$out/summary.tsv"
status=0

# run NAME NODES CPUS MODE TRANSFERS: one bench run, its line in summary.tsv.
run() {
    local name=$1 nodes=$2 n=$3 mode=$4 transfers=$5
    local client_cpus=$((host - n))
    [ "$client_cpus" -gt 0 ] || client_cpus=$host
    local client_threads=$((client_cpus / 2))
    [ "$client_threads" -ge 2 ] || client_threads=2
    [ "$client_threads" -le 8 ] || client_threads=8
    # A lane per node core; a few batches in flight on each.
    local concurrency=$((batches_per_cpu * n))
    [ "$concurrency" -ge 16 ] || concurrency=16
    [ "$concurrency" -le 256 ] || concurrency=256
    local args=(bench --nodes "$nodes" --node-cpus "0-$((n - 1))" --transfers "$transfers"
        --concurrency "$concurrency" --client-threads "$client_threads"
        --json "$out/$name.json")
    [ "$mode" = gateway ] && args+=(--gateway)
    echo "== $name: $bin ${args[*]}"
    local log="$out/$name.log"
    if timeout -k 10 "$run_s" "$bin" "${args[@]}" > "$log" 2>&1; then
        local load ceiling p50 p99 ratio
        load=$(sed -n 's/^load accepted = \([0-9]*\) tx\/s.*/\1/p' "$log" | tail -1)
        p50=$(sed -n 's/^batch latency p50 = \([0-9]*\) ms.*/\1/p' "$log" | tail -1)
        p99=$(sed -n 's/^batch latency p99 = \([0-9]*\) ms.*/\1/p' "$log" | tail -1)
        ceiling=$(sed -n 's/.*verify ceiling[^0-9]*\([0-9][0-9]*\) tx\/s.*/\1/p' "$log" | tail -1)
        ratio=-
        [ -n "$ceiling" ] && ratio=$(awk -v a="$load" -v c="$ceiling" 'BEGIN { printf "%.3f", a / c }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$nodes" "$n" "$mode" "$concurrency" "$transfers" \
            "$load" "${ceiling:--}" "$ratio" "$p50" "$p99" >> "$out/summary.tsv"
        grep -E '^(load accepted|batch latency p(50|99) |verify ceiling|cpus|steering)' "$log"
    else
        printf '%s\t%s\t%s\t%s\t%s\tFAILED\t-\t-\t-\t-\n' "$nodes" "$n" "$mode" "$concurrency" "$transfers" \
            >> "$out/summary.tsv"
        echo "$name failed; the end of its log:"
        tail -15 "$log"
        status=1
    fi
    # A run stopped by the timeout leaves its node behind: end it before the next run.
    pkill -KILL -f "$bin node" 2>/dev/null || true
}

for n in $cpus_list; do
    if [ "$n" -gt "$host" ]; then
        echo "== skipping $n CPUs: the host has $host"
        continue
    fi
    for mode in $modes; do
        if [ "$mode" = gateway ]; then
            transfers=$((gateway_per_cpu * n))
            [ "$transfers" -ge 1000000 ] || transfers=1000000
        else
            transfers=$((signed_per_cpu * n))
            [ "$transfers" -ge 250000 ] || transfers=250000
        fi
        run "$mode-1x$n" 1 "$n" "$mode" "$transfers"
    done
done
if [ "$cluster" = 1 ]; then
    for mode in $modes; do
        if [ "$mode" = gateway ]; then transfers=$((gateway_per_cpu * host / 3)); else
            transfers=$((signed_per_cpu * host / 3)); fi
        [ "$transfers" -ge 1000000 ] || transfers=1000000
        run "$mode-3x$host" 3 "$host" "$mode" "$transfers"
    done
fi
echo
column -t "$out/summary.tsv" 2>/dev/null || cat "$out/summary.tsv"
exit $status
