#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 10,000,000), two at a time (libFuzzer,
# ASan, nightly: `cargo install cargo-fuzz` first), then minimises each corpus into
# fuzz/corpus/TARGET, which `cargo test -p aurigraph-fuzz` replays. Prints one line per target:
# executions, seconds, corpus inputs. A crash stops its target with libFuzzer's report and the
# input under fuzz/artifacts/TARGET/ (keep it in fuzz/corpus/TARGET as a regression input).
# Usage: fuzz/run-all.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(binary_batch json_transfers peer_frame peer_message shard_state wal_record beacon_pulse)
fi
out=$(mktemp -d)
fuzz() {
  local target=$1 work="$out/$1"
  mkdir -p "$work"
  cp fuzz/corpus/"$target"/* "$work"/
  cargo +nightly fuzz run "$target" --fuzz-dir fuzz --features libfuzzer "$work" -- \
    -runs="$runs" -rss_limit_mb=2048 -timeout=10 >"$out/$target.log" 2>&1 \
    || { echo "$target: FAILED (log: $out/$target.log)"; tail -30 "$out/$target.log"; return 1; }
  grep -E "^Done [0-9]+ runs" "$out/$target.log" | sed "s/^/$target: /"
}
status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  fuzz "${targets[i]}" & first=$!
  if [ $((i + 1)) -lt ${#targets[@]} ]; then fuzz "${targets[i+1]}" & second=$!; else second=""; fi
  wait $first || status=1
  if [ -n "$second" ]; then wait "$second" || status=1; fi
done
for target in "${targets[@]}"; do
  # Keep a minimal corpus covering what the run reached.
  rm -rf "$out/min-$target" && mkdir -p "$out/min-$target"
  cargo +nightly fuzz run "$target" --fuzz-dir fuzz --features libfuzzer "$out/min-$target" \
    "$out/$target" -- -merge=1 >/dev/null 2>&1
  find fuzz/corpus/"$target" -type f ! -name 'seed-*' ! -name 'crash-*' -delete
  cp "$out/min-$target"/* fuzz/corpus/"$target"/
  echo "$target: $(ls fuzz/corpus/"$target" | wc -l) inputs kept"
done
exit $status
