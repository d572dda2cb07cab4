#!/usr/bin/env bash
# Shared-object benchmark: N subscribers of one remote shared object, changed 50 times a second,
# against the gateway alone (nginx-rtmp has no shared objects, so there is no baseline server).
#
#   scripts/bench-so.sh                               # N = 100 1000, 2 rounds, 25 s windows
#   BENCH_SO_SUBSCRIBERS=1000 BENCH_REPS=1 BENCH_SECONDS=10 scripts/bench-so.sh   # quick look
#   BENCH_SO_RATE=200 BENCH_SO_WRITERS=4 scripts/bench-so.sh   # more changes, spread over writers
#   BENCH_SO_TICK_MS=10 scripts/bench-so.sh          # [shared_objects] tick_ms (default 50)
#
# Each run starts a fresh gateway on loopback, then `wasmgate-load --so bench`: N subscriber
# connections Use the temporary shared object `bench` in `so/_definst_`, one writer connection
# sends Request Change at BENCH_SO_RATE changes/s over the window, each value stamped with its
# send time, and every subscriber decodes every message and times every Change. The server's
# CPU and memory come from /proc, and the load tool reports its own CPU (it shares the cores).
# The sizes alternate (100, 1000, 100, 1000) so drift hits both. Output: target/bench/so.jsonl
# and the Markdown table target/bench/so.md (medians, and 1000-vs-100 ratios from this run).
#
# The gateway's config raises `[shared_objects] max_subscribers` (default 1000) to 2000: the
# writers are subscribers too (the server only lets subscribers change an object), so 1000
# subscribers + 1 writer is 1001. Everything else is the default: tick_ms 50 (or
# BENCH_SO_TICK_MS), client_queue 256, requests_per_sec 100 per client (BENCH_SO_RATE /
# BENCH_SO_WRITERS must stay under it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUBSCRIBERS=${BENCH_SO_SUBSCRIBERS:-"100 1000"}
REPS=${BENCH_REPS:-2}
SECONDS_MEASURED=${BENCH_SECONDS:-25}
RATE=${BENCH_SO_RATE:-50}
WRITERS=${BENCH_SO_WRITERS:-1}
TICK_MS=${BENCH_SO_TICK_MS:-50}
GW_PORT=${BENCH_GW_PORT:-19431}

ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
OUT=$TARGET/bench
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "bench-so: building release binaries"
cargo build --release --bin wasmgate --bin wasmgate-load -q

GW_CFG=$OUT/so-wasmgate.toml
cat >"$GW_CFG" <<EOF
[admin]
enabled = false
[http]
listen = []
[shared_objects]
dir = "$OUT/so-state"
max_subscribers = 2000
tick_ms = $TICK_MS
EOF

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# run_one N: one fresh gateway, one load run; appends the result (plus the gateway's count of
# "message dropped" log lines) to so.jsonl.
run_one() {
    local n=$1 spid line drops
    PIDS=()
    RUST_LOG=warn "$BIN/wasmgate" --config "$GW_CFG" --rtmp "127.0.0.1:$GW_PORT" \
        2>"$OUT/wasmgate-so.log" &
    spid=$!
    PIDS+=("$spid")
    sleep 0.5
    line=$("$BIN/wasmgate-load" --so bench --url "rtmp://127.0.0.1:$GW_PORT/so" \
        --players "$n" --so-rate "$RATE" --so-writers "$WRITERS" --warmup 3 \
        --duration "$SECONDS_MEASURED" --label "wasmgate so" --server-pid "$spid" \
        2>>"$OUT/load-so.stderr")
    drops=$(grep -c 'message dropped' "$OUT/wasmgate-so.log" || true)
    line="${line%\}},\"gw_drop_lines\":${drops:-0},\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
    echo "$line" | tee -a "$OUT/so.jsonl"
    cleanup
    sleep 1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$OUT/so.jsonl"
: >"$OUT/load-so.stderr"
for round in $(seq 1 "$REPS"); do
    for n in $SUBSCRIBERS; do
        run_one "$n"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT/so.jsonl" "$SECONDS_MEASURED" "$RATE" "$WRITERS" "$LOAD_BEFORE" "$LOAD_AFTER" "$TICK_MS" \
    >"$OUT/so.md" <<'PY'
import json, os, statistics, sys
path, secs, rate, writers, before, after, tick = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["subscribers"], []).append(r)
def med(rs, k):
    return statistics.median(r[k] for r in rs)
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
rounds = max((len(v) for v in by.values()), default=0)
print(f"Machine: {os.cpu_count()} cores ({cpu}), load tool on the same machine; load average "
      f"{before} before, {after} after. One temporary shared object, {rate} changes/s from "
      f"{writers} writer(s) over {secs} s windows, tick_ms {tick}; medians of {rounds} rounds.\n")
print("| subscribers | changes sent | delivered / expected | missing | latency p50 / p99 / max ms "
      "| fan-out spread p99 ms | changes per message | server CPU % | CPU µs per delivered change "
      "| RSS MB | load tool CPU % | load tool µs per change |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sorted(by):
    rs = by[n]
    print(f"| {n} | {med(rs, 'changes_sent'):.0f} | {med(rs, 'delivered'):.0f} / {med(rs, 'expected'):.0f} "
          f"| {med(rs, 'missing'):.0f} | {med(rs, 'latency_p50_ms'):.1f} / {med(rs, 'latency_p99_ms'):.1f} / "
          f"{med(rs, 'latency_max_ms'):.1f} | {med(rs, 'spread_p99_ms'):.1f} | {med(rs, 'changes_per_message'):.2f} "
          f"| {med(rs, 'server_cpu_pct'):.1f} | {med(rs, 'cpu_us_per_change'):.2f} "
          f"| {med(rs, 'server_rss_kb')/1024:.1f} | {med(rs, 'load_cpu_pct'):.1f} | {med(rs, 'load_us_per_change'):.2f} |")
sizes = sorted(by)
if len(sizes) >= 2:
    lo, hi = by[sizes[0]], by[sizes[-1]]
    def ratio(k):
        a = med(lo, k)
        return f"{med(hi, k) / a:.2f}x" if a else "-"
    print(f"\n{sizes[-1]} vs {sizes[0]} subscribers ({sizes[-1] / sizes[0]:.0f}x): deliveries "
          f"{ratio('delivered')}, server CPU {ratio('server_cpu_ms')}, CPU per delivered change "
          f"{ratio('cpu_us_per_change')}, latency p50 {ratio('latency_p50_ms')}, p99 {ratio('latency_p99_ms')}, "
          f"RSS {ratio('server_rss_kb')}.")
bad = [r for r in rows if r["missing"] or r["duplicates"] or r["failed"] or r["changes_refused"] or r["gw_drop_lines"]]
for r in bad:
    print(f"\nrun at {r['subscribers']}: missing {r['missing']}, duplicates {r['duplicates']}, failed {r['failed']}, "
          f"refused {r['changes_refused']}, gateway 'message dropped' log lines {r['gw_drop_lines']}")
PY
echo
cat "$OUT/so.md"
