#!/usr/bin/env bash
# Starts a node N times under load and counts the starts that stalled (an executor that
# recovered nothing within the start-up timeout: the node exits with status 70;
# docs/operations.md, "Lost wake-ups").
#
#   benches/scripts/starts.sh AURIGRAPH_BIN N
#
# The load: while the starts run, `aurigraph bench --gateway` keeps a second node busy on the
# same cores, in a loop (both started and stopped by this script). Each start: the node under
# test starts over the same data directory (recovery every time, a growing log), must report
# healthy, take one batch of transfers (once every shard applied its whole log), and stop on
# SIGTERM with exit status 0; the time from launch to that point is recorded. A start counts as
# stalled when the node exits with status 70 before it is healthy (its log is kept next to the
# work directory, and the script goes on); a node not healthy within 60 s, or any other
# failure, stops the script. With
# STARTS_DIAGNOSE=1, a start not healthy after 10 s has its threads' kernel waits and gdb
# backtraces written to aurigraph-start-N-threads.txt next to the work directory. Prints a line
# per 100 starts and at the end: starts, stalled starts, wall time, start times p50/p99/max.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 AURIGRAPH_BIN N [LOAD_SECONDS_PER_START]" >&2
    exit 2
fi
bin=$1 n=$2
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
work=$(mktemp -d)
load_pid=
load_node_pid=
node_pid=
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
    if [ -n "$load_pid" ]; then
        pkill -P "$load_pid" 2>/dev/null || true
        kill "$load_pid" 2>/dev/null || true
    fi
    [ -n "$load_node_pid" ] && kill "$load_node_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The node under test: the benchmark's gateway genesis and a token, so that one batch can be
# sent with the benchmark itself.
"$bin" bench --gateway --accounts 10 --print-genesis "$work/genesis.json" 2>/dev/null
"$bin" token new --name bench --file "$work/tokens.json" > "$work/token" 2>/dev/null
port=$(free_port)
# Each node has a gRPC listener of its own (two run at once: neither may take the default 9004).
grpc_port=$(free_port)

# The load: a node of its own and a benchmark loop against it.
"$bin" bench --gateway --print-genesis "$work/load-genesis.json" 2>/dev/null
load_port=$(free_port)
load_grpc_port=$(free_port)
"$bin" node --data-dir "$work/load-data" --genesis "$work/load-genesis.json" --tokens "$work/tokens.json" \
    --http-addr "127.0.0.1:$load_port" --grpc-addr "127.0.0.1:$load_grpc_port" --cores 2 --pin-cores false \
    > "$work/load-node.log" 2>&1 &
load_node_pid=$!
( while true; do
    "$bin" bench --gateway --transfers 1000000 --addresses "http://127.0.0.1:$load_port" \
        --gateway-token-file "$work/token" > /dev/null 2>&1 || sleep 1
done ) &
load_pid=$!

stalled=0
start=$(date +%s)
for i in $(seq 1 "$n"); do
    log="$work/node-$i.log"
    launched=$(date +%s%N)
    "$bin" node --data-dir "$work/data" --genesis "$work/genesis.json" --tokens "$work/tokens.json" \
        --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$grpc_port" --cores 2 --pin-cores false \
        > "$log" 2>&1 &
    node_pid=$!
    healthy=
    for attempt in $(seq 1 600); do
        if [ "$attempt" -eq 100 ] && [ -n "${STARTS_DIAGNOSE:-}" ]; then
            # 10 s without becoming healthy: what every thread of the node is doing.
            diag="$(dirname "$work")/aurigraph-start-$i-threads.txt"
            for task in /proc/"$node_pid"/task/*; do
                echo "$(cat "$task/comm") wchan=$(cat "$task/wchan") syscall=$(cut -d' ' -f1 "$task/syscall")"
            done > "$diag" 2>&1
            gdb -batch -ex "thread apply all bt" -p "$node_pid" >> "$diag" 2>&1 || true
        fi
        if curl -sf "http://127.0.0.1:$port/api/v11/health" > /dev/null 2>&1; then
            healthy=1
            break
        fi
        if ! kill -0 "$node_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    # Healthy is "every shard has a leader"; the log's tail may still be applying after a
    # restart (the nonces the benchmark reads would be stale): wait until every shard applied
    # all of its log.
    if [ -n "$healthy" ]; then
        healthy=
        for _ in $(seq 1 600); do
            if curl -sf "http://127.0.0.1:$port/api/v11/consensus/status" | python3 -c '
import json, sys
shards = json.load(sys.stdin)["shards"]
sys.exit(0 if all(s["appliedIndex"] == s["lastIndex"] == s["commitIndex"] for s in shards) else 1)
' 2>/dev/null; then
                healthy=1
                break
            fi
            sleep 0.05
        done
    fi
    if [ -n "$healthy" ]; then
        echo $(( ($(date +%s%N) - launched) / 1000000 )) >> "$work/start-ms"
    fi
    if [ -z "$healthy" ] && ! kill -0 "$node_pid" 2>/dev/null; then
        status=0
        wait "$node_pid" || status=$?
        node_pid=
        if [ "$status" -eq 70 ]; then
            stalled=$((stalled + 1))
            cp "$log" "$(dirname "$work")/aurigraph-stalled-start-$i.log" 2>/dev/null || true
            echo "start $i: stalled (exit 70): $(grep -o 'executor [0-9]* did not recover.*' "$log" | head -1)" >&2
            continue
        fi
    fi
    if [ -z "$healthy" ]; then
        echo "start $i: the node did not become healthy in 60 s; its log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    if ! "$bin" bench --gateway --accounts 10 --transfers 100 --batch-size 100 --concurrency 1 \
        --addresses "http://127.0.0.1:$port" --gateway-token-file "$work/token" > "$work/bench-$i.log" 2>&1; then
        echo "start $i: the batch failed:" >&2
        tail -20 "$work/bench-$i.log" >&2
        exit 1
    fi
    kill -TERM "$node_pid"
    status=0
    wait "$node_pid" || status=$?
    node_pid=
    if [ "$status" -ne 0 ]; then
        echo "start $i: the node exited with status $status; its log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    rm -f "$log" "$work/bench-$i.log"
    if [ $((i % 100)) -eq 0 ]; then
        echo "starts=$i stalled=$stalled wall_s=$(( $(date +%s) - start ))"
    fi
done
# Launch to "every shard applied its whole log", in milliseconds.
times=$(sort -n "$work/start-ms" | awk '{a[NR]=$1} END {p50=int(NR*0.5)+1; if (p50>NR) p50=NR; p99=int(NR*0.99)+1; if (p99>NR) p99=NR; printf "start_ms: p50=%d p99=%d max=%d", a[p50], a[p99], a[NR]}')
echo "done: starts=$n stalled=$stalled failures=0 wall_s=$(( $(date +%s) - start )) $times"
