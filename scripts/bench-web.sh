#!/usr/bin/env bash
# Browser-delivery benchmark: N HTTP-FLV players against N RTMP players of the same live
# stream on the gateway, in one run: server CPU per delivered megabyte, memory, and whether
# every player got the whole stream.
#
#   scripts/bench-web.sh                  # N = 100 500, 2 rounds, 20 s windows, 2.5 Mbit/s
#   BENCH_WEB_PLAYERS=100 BENCH_REPS=1 BENCH_SECONDS=10 scripts/bench-web.sh   # quick look
#   BENCH_WEB_KINDS="rtmp http-flv" scripts/bench-web.sh   # without the WebSocket-FLV players
#   BENCH_GW_CONFIG=my.toml scripts/bench-web.sh   # gateway config (e.g. media.merge_window_ms)
#
# For each N and round the kinds alternate (RTMP, HTTP-FLV, WS-FLV, RTMP, ...: drift hits all),
# each against a fresh gateway (RTMP and an HTTP listener on loopback). The pre-encoded CBR
# H.264/AAC FLV is published with `ffmpeg -re -stream_loop -1 -c copy` (no encoder runs while
# measuring) and played by `wasmgate-load --transport KIND`: N byte-counting players + 4
# probes that parse every message or FLV tag (drops, stalls, lateness, keyframe start, whole
# tags). The load tool samples the gateway's CPU (utime + stime) and RSS from /proc over the
# window. HTTP-FLV and WS-FLV players count the FLV bytes inside the chunked body or the
# WebSocket frames (the framing is counted apart, as wire bytes); RTMP players count what they
# read (chunk headers included, a few tenths of a percent over the FLV bytes). Output:
# target/bench/web.jsonl and target/bench/web.md (medians, ratios to RTMP, bytes per player
# against the file's bitrate × the window), under CARGO_TARGET_DIR when it is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLAYERS=${BENCH_WEB_PLAYERS:-"100 500"}
KINDS=${BENCH_WEB_KINDS:-"rtmp http-flv ws-flv"}
REPS=${BENCH_REPS:-2}
SECONDS_MEASURED=${BENCH_SECONDS:-20}
BITRATE=${BENCH_BITRATE:-2500k}
PROBES=${BENCH_PROBES:-4}
GW_PORT=${BENCH_GW_PORT:-19441}
HTTP_PORT=${BENCH_HTTP_PORT:-19442}

source scripts/bench-common.sh
bench_setup bench-web no-nginx
trap bench_stop EXIT

GW_CFG=${BENCH_GW_CONFIG:-$OUT/web-wasmgate.toml}
if [ -z "${BENCH_GW_CONFIG:-}" ]; then
    cat >"$GW_CFG" <<EOF
[admin]
enabled = false
EOF
fi

# run_one N KIND: one fresh gateway, one publisher, one load run; appends the result, the load
# average and the gateway's warnings to web.jsonl.
run_one() {
    local n=$1 kind=$2 spid url line warns
    RUST_LOG=warn "$BIN/wasmgate" --config "$GW_CFG" --rtmp "127.0.0.1:$GW_PORT" \
        --http "127.0.0.1:$HTTP_PORT" 2>"$OUT/wasmgate-web.log" &
    spid=$!
    BENCH_PIDS+=("$spid")
    bench_wait_port "$GW_PORT"
    bench_publish "rtmp://127.0.0.1:$GW_PORT/live/bench" "$OUT/publisher-web.log"
    sleep 3
    case $kind in
        rtmp) url="rtmp://127.0.0.1:$GW_PORT/live/bench" ;;
        http-flv) url="http://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
        ws-flv) url="ws://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
        *) echo "bench-web: unknown kind $kind" >&2; return 1 ;;
    esac
    line=$("$BIN/wasmgate-load" --transport "$kind" --url "$url" --players "$n" --probes "$PROBES" \
        --warmup 3 --duration "$SECONDS_MEASURED" --label "wasmgate $kind" --server-pid "$spid" \
        2>>"$OUT/load-web.stderr")
    warns=$(grep -c ' WARN ' "$OUT/wasmgate-web.log" || true)
    line="${line%\}},\"gw_warn_lines\":${warns:-0},\"loadavg\":\"$(bench_loadavg)\"}"
    echo "$line" | tee -a "$OUT/web.jsonl"
    bench_stop
    sleep 1
}

# The file's own rate: what every player should receive per second.
FILE_BYTES=$(stat -c %s "$FIXTURE")
FILE_SECS=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$FIXTURE")

LOAD_BEFORE=$(bench_loadavg)
: >"$OUT/web.jsonl"
: >"$OUT/load-web.stderr"
for n in $PLAYERS; do
    for round in $(seq 1 "$REPS"); do
        for kind in $KINDS; do
            run_one "$n" "$kind"
        done
    done
done
LOAD_AFTER=$(bench_loadavg)

python3 - "$OUT/web.jsonl" "$BITRATE" "$SECONDS_MEASURED" "$PROBES" "$FILE_BYTES" "$FILE_SECS" \
    "$LOAD_BEFORE" "$LOAD_AFTER" >"$OUT/web.md" <<'PY'
import json, os, statistics, sys
path, bitrate, secs, probes, file_bytes, file_secs, before, after = sys.argv[1:]
probes = int(probes)
file_mbit = int(file_bytes) * 8 / float(file_secs) / 1e6
rows = [json.loads(l) for l in open(path) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault((r["players"] - probes, r["transport"]), []).append(r)
def med(rs, k):
    return statistics.median(r[k] for r in rs)
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
rounds = max((len(v) for v in by.values()), default=0)
loads = ", ".join(r["loadavg"].split()[0] for r in rows)
print(f"Machine: {os.cpu_count()} cores ({cpu}), load tool on the same machine; load average "
      f"{before} before, {after} after (1-min at the end of each run: {loads}). Stream: {bitrate}bit/s "
      f"CBR H.264/AAC, 2 s GOP (the file: {file_mbit:.3f} Mbit/s), published by "
      f"`ffmpeg -re -stream_loop -1 -c copy`; {secs} s windows; medians of {rounds} alternating rounds; "
      f"one fresh gateway per run. MB are delivered media bytes (RTMP as read, HTTP-FLV without "
      f"the HTTP chunk or WebSocket framing).\n")
print("| players | transport | CPU ms per MB | vs RTMP | server CPU % | RSS MB | RSS KB per player "
      "| received per player (avg / min) vs file | drops % | stalls | lateness p50 / p99 ms "
      "| bad starts / tags | failed / starving | load tool CPU % |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
order = {"rtmp": 0, "http-flv": 1, "ws-flv": 2}
for (n, t) in sorted(by, key=lambda k: (k[0], order.get(k[1], 9))):
    rs = by[(n, t)]
    c = med(rs, "cpu_ms_per_mb")
    base = by.get((n, "rtmp"))
    ratio = f"{c / med(base, 'cpu_ms_per_mb'):.2f}x" if base and med(base, "cpu_ms_per_mb") else "-"
    pct = med(rs, "server_cpu_ms") / (med(rs, "seconds") * 10)
    grow = statistics.median((r["server_rss_kb"] - r["server_rss_before_kb"]) / r["players"] for r in rs)
    got = med(rs, "mbit_per_player") / file_mbit
    low = statistics.median(r["player_mb_min"] * 8 / r["seconds"] for r in rs) / file_mbit
    load_pct = med(rs, "load_cpu_ms") / (med(rs, "seconds") * 10)
    print(f"| {n} | {t} | {c:.3f} | {ratio} | {pct:.1f} | {med(rs, 'server_rss_kb')/1024:.1f} | {grow:.1f} "
          f"| {got:.3f} / {low:.3f} | {med(rs, 'drop_pct'):.3f} | {med(rs, 'stalls'):.0f} "
          f"| {med(rs, 'lateness_p50_ms'):.0f} / {med(rs, 'lateness_p99_ms'):.0f} "
          f"| {med(rs, 'probe_bad_starts'):.0f} / {med(rs, 'probe_bad_tags'):.0f} "
          f"| {med(rs, 'failed'):.0f} / {med(rs, 'starving'):.0f} | {load_pct:.1f} |")
bad = [r for r in rows if r["failed"] or r["starving"] or r["probe_bad_starts"] or r["probe_bad_tags"]
       or r["gw_warn_lines"]]
for r in bad:
    print(f"\nrun {r['label']} at {r['players'] - probes}: failed {r['failed']}, starving {r['starving']}, "
          f"bad starts {r['probe_bad_starts']}, bad tags {r['probe_bad_tags']}, gateway WARN lines {r['gw_warn_lines']}")
PY
echo
cat "$OUT/web.md"
