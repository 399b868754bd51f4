#!/usr/bin/env bash
# The node with its two downstream sinks (the PostgreSQL archive and the Redis cache) on and
# off, with one release binary, on this machine (client, node, sinks and both servers share
# its CPUs).
#
#   benches/scripts/sinks.sh AURIGRAPH_BIN ratio [ROUNDS]        (default 3 rounds)
#   benches/scripts/sinks.sh AURIGRAPH_BIN curve RATE [SECONDS]  (default 60 s)
#
# Self-contained: it starts its own PostgreSQL (Debian's initdb and pg_ctl, the newest under
# /usr/lib/postgresql, in a temporary directory, as user postgres when run as root, default
# settings: fsync on) and its own redis-server (append-only file on, appendfsync everysec, no
# RDB snapshots), each on a free loopback port, and stops both at exit. Every run gets a fresh
# node data directory, a fresh database and a FLUSHALL'ed Redis. The node is started as
#   AURIGRAPH_BIN node --genesis G --data-dir D --http-addr 127.0.0.1:PORT
#       --grpc-addr 127.0.0.1:GRPC_PORT --config CONF --heap-prefault-mib 1024
# (the warm heap `aurigraph bench` gives the node it starts itself) with the genesis of
#   AURIGRAPH_BIN bench --print-genesis G --shards 2
# (10,000 accounts, seed 0, chain 7: the bench's defaults); CONF names archive_url and
# redis_url for "on" and nothing for "off".
#
# ratio: signed transfers, 1 validator, ROUNDS rounds of one "off" and one "on" run (off first
#   in odd rounds, on first in even ones) of
#     AURIGRAPH_BIN bench --addresses http://127.0.0.1:PORT --transfers $TRANSFERS --shards 2
#   (TRANSFERS, default 300000). After each "on" run it waits until the sinks' lag is 0 on
#   every shard and each sink counted every transfer (aurigraph_sink_rows_written_total), then
#   checks that the archive's transfers table and the Redis stream (XLEN; below the stream's
#   default MAXLEN ~ 1,000,000) hold exactly TRANSFERS rows and that no sink reported a gap
#   or dropped an entry. One line per run:
#     <off|on> <round> load_accepted=<tx/s> p99_ms=<ms> [drain_s=<s> archive_rows=<n>
#       stream_len=<n>] cpu_s=node:..,sink_postgres:..,sink_redis:..,postgres:..,redis:..,
#       client:..,kernel:..,other:..
#   then the median of each side and the ratio on/off. cpu_s: CPU seconds from the bench's
#   start (its pre-signing included) until the bench ended ("off") or the lag was 0 ("on"),
#   of the node without its sink threads, each sink's thread, PostgreSQL, redis-server, the
#   bench with this script's tools ("client"), the kernel's threads ("kernel"), and "other":
#   the machine's busy time none of them account for (another program's work: a run with more
#   than a few tenths of a second of it was disturbed; "kernel" and "other" move by a few
#   tenths either way as kernel threads come and go).
# curve: the sinks on, a paced load of RATE tx/s for SECONDS
#     AURIGRAPH_BIN bench --addresses ... --shards 2 --rate RATE --transfers RATE*SECONDS
#   while /metrics is sampled every second into a CSV (SINKS_CSV, default
#   target/aurigraph-bench/sinks-lag.csv under the repository; one line per sample and series:
#   unix_time,metric,sink,shard,value for aurigraph_sink_lag_entries{sink,shard},
#   aurigraph_sink_rows_written_total{sink} and aurigraph_transactions_total summed over
#   results as metric "transactions"). It prints the bench's figures, the CPU seconds of the
#   whole run as above, what the servers did (PostgreSQL's WAL bytes, full-page images and
#   checkpoints, the table's size; Redis's memory and append-only file rewrites), then per
#   5-second step from the first accepted transfer the node's transfers/s and for each sink
#   its largest lag (entries, summed over the shards, the largest sample of the step), how
#   many transfers it was behind (answered minus rows written, the largest sample) and its
#   rows/s, and the time from the end of the load (the bench's exit) until the lag is 0
#   (polled every 0.1 s). The archive must then hold every transfer and Redis must have
#   counted every one.
#
# SINKS (default "postgres redis") names the sinks of "on". SINKS_STORE_DIR puts the PostgreSQL
# and Redis data under another directory (default: the temporary directory, next to the
# node's data; after a 60-second curve at 55,000 tx/s the archive's table alone held 1.8 GB and
# Redis's append-only file 1.9 GB). A failed run or check stops the script.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 AURIGRAPH_BIN ratio [ROUNDS] | $0 AURIGRAPH_BIN curve RATE [SECONDS]" >&2
    exit 2
fi
bin=$1 mode=$2
shift 2
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
case $mode in
    ratio) rounds=${1:-3} ;;
    curve)
        [ $# -ge 1 ] || { echo "$0: curve needs RATE" >&2; exit 2; }
        rate=$1 seconds=${2:-60} ;;
    *) echo "$0: unknown mode $mode (ratio or curve)" >&2; exit 2 ;;
esac
transfers=${TRANSFERS:-300000}
sinks=${SINKS:-postgres redis}
root=$(cd "$(dirname "$0")/../.." && pwd)
csv=${SINKS_CSV:-$root/target/aurigraph-bench/sinks-lag.csv}
unset AURIGRAPH_CONFIG

work=$(mktemp -d "${TMPDIR:-/tmp}/aurigraph-sinks.XXXXXX")
store=$work
[ -n "${SINKS_STORE_DIR:-}" ] && store=$(mktemp -d "$SINKS_STORE_DIR/aurigraph-sinks-store.XXXXXX")
# The server runs as postgres when this is root: it must reach its directory.
chmod 755 "$store"
pg=$store/pg
rdir=$store/redis
pgbin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "$0: no PostgreSQL server (apt-get install postgresql)" >&2
    exit 2
fi
command -v redis-server > /dev/null || { echo "$0: no redis-server (apt-get install redis-server)" >&2; exit 2; }

node_pid=
sampler_pid=
redis_pid=
pg_started=
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
    local pid
    for pid in "$sampler_pid" "$node_pid" "$redis_pid"; do
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    done
    if [ -n "$pg_started" ]; then
        as_postgres "$pgbin/pg_ctl" -D "$pg/data" -m immediate stop > /dev/null 2>&1 || true
    fi
    wait 2>/dev/null || true
    rm -rf "$work"
    [ "$store" != "$work" ] && rm -rf "$store"
    return 0
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL.
mkdir -p "$pg"
[ "$(id -u)" -eq 0 ] && chown postgres: "$pg"
as_postgres "$pgbin/initdb" -D "$pg/data" -U postgres --auth=trust --no-sync -E UTF8 > "$work/initdb.log" 2>&1 \
    || { cat "$work/initdb.log" >&2; exit 1; }
pg_port=$(free_port)
as_postgres "$pgbin/pg_ctl" -D "$pg/data" -o "-p $pg_port -k $pg -c listen_addresses=127.0.0.1" \
    -l "$pg/server.log" -w start > /dev/null
pg_started=1
psql_do() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -tA "$@"; }

# Redis.
mkdir -p "$rdir"
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$rdir" --appendonly yes \
    --appendfsync everysec --save "" --logfile "$rdir/redis.log" --daemonize no > /dev/null 2>&1 &
redis_pid=$!
rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
for _ in $(seq 1 100); do
    [ "$(rcli ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
[ "$(rcli ping 2>/dev/null)" = PONG ] || { echo "$0: redis-server did not start" >&2; cat "$rdir/redis.log" >&2; exit 1; }

echo "servers: $("$pgbin/postgres" --version), redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') (appendonly yes, appendfsync everysec)"

genesis=$work/genesis.json
"$bin" bench --print-genesis "$genesis" --shards 2 2>/dev/null
port=$(free_port)
grpc_port=$(free_port)
url=http://127.0.0.1:$port
: > "$work/off.toml"
: > "$work/on.toml"
has_pg=0 has_redis=0
for sink in $sinks; do
    case $sink in
        postgres)
            has_pg=1
            echo "archive_url = \"host=127.0.0.1 port=$pg_port user=postgres dbname=aurigraph\"" >> "$work/on.toml" ;;
        redis)
            has_redis=1
            echo "redis_url = \"redis://127.0.0.1:$redis_port/\"" >> "$work/on.toml" ;;
        *) echo "$0: unknown sink $sink in SINKS (postgres, redis)" >&2; exit 2 ;;
    esac
done
series=$((2 * (has_pg + has_redis)))
[ "$series" -gt 0 ] || { echo "$0: SINKS names no sink" >&2; exit 2; }
echo "on: $(tr '\n' ' ' < "$work/on.toml")"

# Fresh stores: an empty database, an empty Redis.
fresh_stores() {
    psql_do -d postgres -c 'DROP DATABASE IF EXISTS aurigraph WITH (FORCE)' -c 'CREATE DATABASE aurigraph'
    [ "$(rcli flushall)" = OK ]
}

# Starts the node with config $1 (a fresh data directory) and waits until it is healthy.
start_node() {
    local data=$work/data log=$work/node.log
    rm -rf "$data"
    "$bin" node --genesis "$genesis" --data-dir "$data" --http-addr "127.0.0.1:$port" \
        --grpc-addr "127.0.0.1:$grpc_port" --config "$1" --heap-prefault-mib 1024 > "$log" 2>&1 &
    node_pid=$!
    for _ in $(seq 1 600); do
        curl -sf "$url/api/v11/health" > /dev/null 2>&1 && return 0
        kill -0 "$node_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$0: the node did not become healthy; its log:" >&2
    tail -20 "$log" >&2
    exit 1
}

stop_node() {
    kill -TERM "$node_pid"
    local status=0
    wait "$node_pid" || status=$?
    node_pid=
    if [ "$status" -ne 0 ]; then
        echo "$0: the node exited with status $status; its log:" >&2
        tail -20 "$work/node.log" >&2
        exit 1
    fi
}

# Prints "LAG ROWS_POSTGRES ROWS_REDIS GAPS DROPPED" from /metrics: the largest lag of any
# sink and shard, each sink's rows written, gaps of both, entries both sinks dropped or lost.
sink_state() {
    curl -sf "$url/metrics" | awk -v series="$series" '
        /^aurigraph_sink_lag_entries\{/ { if ($2 > lag) lag = $2; n++ }
        /^aurigraph_sink_rows_written_total\{sink="postgres"\}/ { pg = $2 }
        /^aurigraph_sink_rows_written_total\{sink="redis"\}/ { rd = $2 }
        /^aurigraph_sink_gaps_total\{/ { gaps += $2 }
        /^aurigraph_sink_pending_dropped_total\{/ { dropped += $2 }
        /^aurigraph_sink_entries_total\{.*outcome="dropped"/ { dropped += $2 }
        END { if (n < series) lag = -1; printf "%d %d %d %d %d\n", lag, pg, rd, gaps, dropped }'
}

# Waits (polling every 0.1 s, up to 600 s) until both sinks' lag is 0 on every shard and each
# counted $1 rows; prints the seconds it took.
wait_drained() {
    local want=$1 start lag pgrows rdrows gaps dropped
    start=$(date +%s.%N)
    for _ in $(seq 1 6000); do
        read -r lag pgrows rdrows gaps dropped < <(sink_state)
        if [ "$lag" -eq 0 ] && { [ "$has_pg" -eq 0 ] || [ "$pgrows" -ge "$want" ]; } \
            && { [ "$has_redis" -eq 0 ] || [ "$rdrows" -ge "$want" ]; }; then
            awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f\n", b - a}'
            return 0
        fi
        sleep 0.1
    done
    echo "$0: the sinks did not catch up in 600 s: lag=$lag postgres_rows=$pgrows redis_rows=$rdrows gaps=$gaps dropped=$dropped" >&2
    exit 1
}

# Checks the stores after an "on" run of $1 transfers; prints "archive_rows=N stream_len=N".
check_stores() {
    local want=$1 rows=- xlen=- lag pgrows rdrows gaps dropped bad=0
    read -r lag pgrows rdrows gaps dropped < <(sink_state)
    if [ "$has_pg" -eq 1 ]; then
        rows=$(psql_do -d aurigraph -c 'SELECT count(*) FROM transfers')
        if [ "$rows" -ne "$want" ] || [ "$pgrows" -ne "$want" ]; then bad=1; fi
    fi
    if [ "$has_redis" -eq 1 ]; then
        xlen=$(rcli xlen aurigraph:transfers)
        if [ "$rdrows" -ne "$want" ]; then bad=1; fi
    fi
    if [ "$bad" -ne 0 ] || [ "$gaps" -ne 0 ] || [ "$dropped" -ne 0 ]; then
        echo "$0: stores do not match: archive_rows=$rows (want $want) postgres_rows_written=$pgrows redis_rows_written=$rdrows stream_len=$xlen gaps=$gaps dropped=$dropped" >&2
        exit 1
    fi
    if [ "$has_redis" -eq 1 ] && [ "$want" -le 1000000 ] && [ "$xlen" -ne "$want" ]; then
        echo "$0: stream length $xlen, want $want" >&2
        exit 1
    fi
    echo "archive_rows=$rows stream_len=$xlen"
}

# Runs the bench against the node; prints "load_accepted=N p99_ms=N" (the log in $work/bench.log).
run_bench() {
    if ! "$bin" bench --addresses "$url" --shards 2 "$@" > "$work/bench.log" 2>&1; then
        echo "$0: the bench failed:" >&2
        tail -20 "$work/bench.log" >&2
        exit 1
    fi
    local load p99
    load=$(sed -n 's/^load accepted = \([0-9]*\) tx\/s.*/\1/p' "$work/bench.log" | tail -1)
    p99=$(sed -n 's/^batch latency p99 = \([0-9.]*\) ms.*/\1/p' "$work/bench.log" | tail -1)
    echo "load_accepted=${load:-?} p99_ms=${p99:-?}"
}

clk_tck=$(getconf CLK_TCK)
# CPU time of /proc entry $1 (utime + stime; with $2 = 1 also its reaped children's), in ticks.
ticks() {
    awk -v c="${2:-0}" '{ sub(/^.*\) /, ""); t = $12 + $13; if (c) t += $14 + $15; print t }' "$1" 2>/dev/null \
        || echo 0
}

# CPU ticks used so far: "NODE SINK_POSTGRES SINK_REDIS POSTGRES REDIS CLIENT KERNEL BUSY": the node
# without its sink threads, the archive's thread, the Redis sink's thread (both in the node),
# PostgreSQL (the postmaster, its live processes and the ones it reaped), redis-server (and its
# forks), this script and what it ran and waited for (the bench, curl, psql; the sampler), the
# kernel's threads (children of kthreadd: softirqs run there when they pile up, kworkers), and
# every CPU of the machine together (user, nice, system, irq, softirq; not idle, iowait, steal).
cpu_now() {
    local total sinkpg=0 sinkrd=0 t postmaster pgt child client
    total=$(ticks "/proc/$node_pid/stat")
    for t in /proc/"$node_pid"/task/*; do
        case $(cat "$t/comm" 2>/dev/null) in
            aurigraph-postg*) sinkpg=$((sinkpg + $(ticks "$t/stat"))) ;;
            aurigraph-redis*) sinkrd=$((sinkrd + $(ticks "$t/stat"))) ;;
        esac
    done
    postmaster=$(head -1 "$pg/data/postmaster.pid")
    pgt=$(ticks "/proc/$postmaster/stat" 1)
    for child in $(ps -o pid= --ppid "$postmaster"); do
        pgt=$((pgt + $(ticks "/proc/$child/stat")))
    done
    client=$(ticks "/proc/$$/stat" 1)
    if [ -n "$sampler_pid" ]; then client=$((client + $(ticks "/proc/$sampler_pid/stat" 1))); fi
    echo "$((total - sinkpg - sinkrd)) $sinkpg $sinkrd $pgt $(ticks "/proc/$redis_pid/stat" 1) $client" \
        "$(cat /proc/[0-9]*/stat 2>/dev/null | awk '{ sub(/^[0-9]+ \(.*\) /, ""); if ($2 == 2) t += $12 + $13 } END { print t + 0 }')" \
        "$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)"
}

# "cpu_s=node:N,sink_postgres:N,sink_redis:N,postgres:N,redis:N,client:N,kernel:N,other:N"
# between two cpu_now readings, in CPU seconds; "other" is the machine's busy time that none of
# these account for: other programs (a run with more than a few tenths of a second of it was
# disturbed).
cpu_used() {
    awk -v hz="$clk_tck" -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        split("node sink_postgres sink_redis postgres redis client kernel", name, " ")
        out = "cpu_s="; ours = 0
        for (i = 1; i <= 7; i++) {
            out = out (i > 1 ? "," : "") name[i] ":" sprintf("%.2f", (y[i] - x[i]) / hz)
            ours += y[i] - x[i]
        }
        print out ",other:" sprintf("%.2f", (y[8] - x[8] - ours) / hz) }'
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

if [ "$mode" = ratio ]; then
    for round in $(seq 1 "$rounds"); do
        order="off on"
        [ $((round % 2)) -eq 0 ] && order="on off"
        for side in $order; do
            [ "$side" = on ] && fresh_stores
            start_node "$work/$side.toml"
            cpu_before=$(cpu_now)
            figures=$(run_bench --transfers "$transfers")
            extra=
            if [ "$side" = on ]; then
                drain=$(wait_drained "$transfers")
                extra=" drain_s=$drain $(check_stores "$transfers")"
            fi
            extra="$extra $(cpu_used "$cpu_before" "$(cpu_now)")"
            stop_node
            echo "$side $round $figures$extra"
            load=${figures%% *}
            echo "${load#load_accepted=}" >> "$work/$side.loads"
        done
    done
    off=$(median "$work/off.loads")
    on=$(median "$work/on.loads")
    echo "median load accepted: off $off, on $on, ratio on/off $(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a/b}')"
    exit 0
fi

# curve
total=$((rate * seconds))
mkdir -p "$(dirname "$csv")"
echo "unix_time,metric,sink,shard,value" > "$csv"
fresh_stores
start_node "$work/on.toml"
(
    while true; do
        t=$(date +%s.%N)
        curl -sf "$url/metrics" | awk -v t="$t" '
            /^aurigraph_sink_lag_entries\{/ {
                match($0, /sink="[^"]*"/); s = substr($0, RSTART + 6, RLENGTH - 7)
                match($0, /shard="[^"]*"/); h = substr($0, RSTART + 7, RLENGTH - 8)
                printf "%s,lag,%s,%s,%s\n", t, s, h, $2 }
            /^aurigraph_sink_rows_written_total\{/ {
                match($0, /sink="[^"]*"/); s = substr($0, RSTART + 6, RLENGTH - 7)
                printf "%s,rows,%s,,%s\n", t, s, $2 }
            /^aurigraph_transactions_total\{/ { tx += $2 }
            END { printf "%s,transactions,,,%d\n", t, tx }' >> "$csv" || true
        sleep 1
    done
) &
sampler_pid=$!
cpu_before=$(cpu_now)
figures=$(run_bench --rate "$rate" --transfers "$total")
load_end=$(date +%s.%N)
drain=$(wait_drained "$total")
cpu=$(cpu_used "$cpu_before" "$(cpu_now)")
sleep 2
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
stores=$(check_stores "$total")
# What the servers did: PostgreSQL's WAL (full-page images) and checkpoints, Redis's memory
# and append-only file rewrites.
pgstats=$(psql_do -d aurigraph -F ' ' -c "SELECT 'wal_bytes=' || wal_bytes, 'wal_fpi=' || wal_fpi FROM pg_stat_wal" \
    -c "SELECT 'checkpoints_timed=' || checkpoints_timed, 'checkpoints_req=' || checkpoints_req, 'buffers_backend=' || buffers_backend FROM pg_stat_bgwriter" \
    -c "SELECT 'transfers_bytes=' || pg_total_relation_size('transfers')" | tr '\n' ' ')
redisstats=$(rcli info | grep -E '^(used_memory|aof_rewrites|aof_current_size):' | tr -d '\r' | tr ':\n' '= ')
late=$(grep '^late batches' "$work/bench.log" | tail -1 || true)
stop_node
echo "curve: --rate $rate --transfers $total: $figures; $stores"
echo "from the bench's start (pre-signing included) until the lag was 0: $cpu"
echo "postgres: $pgstats"
echo "redis: $redisstats"
[ -n "$late" ] && echo "bench: $late"
echo "both sinks' lag back to 0 ${drain} s after the load ended (polled every 0.1 s)"
python3 - "$csv" "$load_end" <<'EOF'
import collections, csv, sys

path, load_end = sys.argv[1], float(sys.argv[2])
samples = collections.defaultdict(dict)  # time -> {(metric, sink): value}
for row in csv.DictReader(open(path)):
    t = float(row["unix_time"])
    key = (row["metric"], row["sink"])
    value = float(row["value"])
    if row["metric"] == "lag":
        samples[t][key] = samples[t].get(key, 0) + value  # summed over the shards
    else:
        samples[t][key] = value
times = sorted(samples)
sinks = sorted({s for t in times for (m, s) in samples[t] if m == "lag"})
# t0: the last sample before the first accepted transfer.
t0 = next((times[i - 1] for i in range(1, len(times))
           if samples[times[i]].get(("transactions", ""), 0) > 0), times[0])
print(f"per 5 s from the first accepted transfer (t=0; samples every ~1 s; the load ended at "
      f"t={load_end - t0:.1f} s); max_lag: entries not yet written, summed over the shards; "
      f"behind: transfers answered minus rows written (largest sample of the step)")
head = "step_s".ljust(9) + "node_tx/s".rjust(11)
for s in sinks:
    head += f"{s + '_max_lag':>18}{s + '_behind':>17}{s + '_rows/s':>16}"
print(head)
step, prev = 0, max((t for t in times if t <= t0), default=times[0])
while True:
    lo, hi = t0 + 5 * step, t0 + 5 * (step + 1)
    inside = [t for t in times if lo < t <= hi]
    if not inside:
        break
    last = inside[-1]
    dt = last - prev
    line = f"{5 * step:>3}-{5 * step + 5:<4}"
    tx = samples[last].get(("transactions", ""), 0) - samples[prev].get(("transactions", ""), 0)
    line += f"{tx / dt:>11,.0f}"
    for s in sinks:
        lag = max(samples[t].get(("lag", s), 0) for t in inside)
        behind = max(samples[t].get(("transactions", ""), 0) - samples[t].get(("rows", s), 0)
                     for t in inside)
        rows = samples[last].get(("rows", s), 0) - samples[prev].get(("rows", s), 0)
        line += f"{lag:>18,.0f}{max(behind, 0):>17,.0f}{rows / dt:>16,.0f}"
    print(line)
    prev, step = last, step + 1
EOF
