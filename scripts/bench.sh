#!/usr/bin/env bash
# Fan-out benchmark: wasmgate against nginx-rtmp on this machine, in one run.
#
#   scripts/bench.sh                      # N = 100 500 1000, 2 rounds, 20 s windows, 2.5 Mbit/s
#   BENCH_PLAYERS="100" BENCH_REPS=1 BENCH_SECONDS=10 scripts/bench.sh   # quick look
#   BENCH_BITRATE=500k scripts/bench.sh   # the 500 kbit/s variant
#   BENCH_GW_CONFIG=my.toml scripts/bench.sh   # gateway with a config (e.g. media.merge_window_ms)
#
# For each N it alternates the servers A B A B (so drift hits both), publishes a pre-encoded
# CBR H.264/AAC FLV with `ffmpeg -re -stream_loop -1 -c copy` (no encoder runs while measuring),
# plays it with `wasmgate-load` (N byte-counting players + 4 parsing probes) and samples the
# server's CPU and memory from /proc. Output: target/bench/results.jsonl and a Markdown table
# (target/bench/results.md) with medians and the wasmgate/nginx ratio.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLAYERS=${BENCH_PLAYERS:-"100 500 1000"}
REPS=${BENCH_REPS:-2}
SECONDS_MEASURED=${BENCH_SECONDS:-20}
BITRATE=${BENCH_BITRATE:-2500k}
PROBES=${BENCH_PROBES:-4}
GW_PORT=${BENCH_GW_PORT:-19411}
NGX_PORT=${BENCH_NGX_PORT:-19412}

source scripts/bench-common.sh
bench_setup bench

NGX_DIR=$OUT/nginx
mkdir -p "$NGX_DIR/logs"
cat >"$NGX_DIR/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/logs/error.log warn;
events { worker_connections 8192; }
rtmp {
    server {
        listen 127.0.0.1:$NGX_PORT;
        chunk_size 4096;
        application live { live on; }
    }
}
EOF

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# run_one SERVER N KIND [extra wasmgate-load args...]
run_one() {
    local server=$1 n=$2 kind=$3 port pid_args url spid
    shift 3
    PIDS=()
    if [ "$server" = wasmgate ]; then
        port=$GW_PORT
        local cfg_args=()
        [ -n "${BENCH_GW_CONFIG:-}" ] && cfg_args=(--config "$BENCH_GW_CONFIG")
        RUST_LOG=warn "$BIN/wasmgate" "${cfg_args[@]}" --rtmp "127.0.0.1:$port" \
            2>"$OUT/wasmgate.log" &
        spid=$!
        PIDS+=("$spid")
        pid_args=(--server-pid "$spid")
    else
        port=$NGX_PORT
        nginx -p "$NGX_DIR" -c "$NGX_DIR/nginx.conf" 2>>"$OUT/nginx.stderr" &
        PIDS+=("$!")
        sleep 0.5
        spid=$(pgrep -P "$(cat "$NGX_DIR/nginx.pid")" | head -1)
        pid_args=(--server-pid "$spid")
    fi
    sleep 0.5
    url="rtmp://127.0.0.1:$port/live/bench"
    ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$FIXTURE" -c copy -f flv "$url" \
        2>"$OUT/publisher.log" &
    PIDS+=("$!")
    sleep 3
    "$BIN/wasmgate-load" --url "$url" --players "$n" --probes "${LOAD_PROBES:-$PROBES}" \
        --warmup "${LOAD_WARMUP:-3}" --duration "${LOAD_DURATION:-$SECONDS_MEASURED}" --label "$server $kind" "${pid_args[@]}" "$@" \
        2>>"$OUT/load.stderr" | tee -a "$OUT/results.jsonl"
    cleanup
    if [ "$server" = nginx ] && [ -f "$NGX_DIR/nginx.pid" ]; then
        kill "$(cat "$NGX_DIR/nginx.pid")" 2>/dev/null || true
    fi
    sleep 1
}

: >"$OUT/results.jsonl"
for n in $PLAYERS; do
    for round in $(seq 1 "$REPS"); do
        run_one wasmgate "$n" fanout
        run_one nginx "$n" fanout
    done
done
# Memory of idle connections (handshake + connect, nothing played).
IDLE=${BENCH_IDLE:-1000}
if [ "$IDLE" -gt 0 ]; then
    LOAD_PROBES=0 LOAD_WARMUP=2 LOAD_DURATION=2 run_one wasmgate "$IDLE" idle --idle
    LOAD_PROBES=0 LOAD_WARMUP=2 LOAD_DURATION=2 run_one nginx "$IDLE" idle --idle
fi
# Optional search for the most players served without drops: BENCH_MAX_PLAYERS="2000 3000".
for n in ${BENCH_MAX_PLAYERS:-}; do
    run_one wasmgate "$n" max
    run_one nginx "$n" max
done

python3 "$ROOT/scripts/bench-summary.py" "$OUT/results.jsonl" "$BITRATE" "$SECONDS_MEASURED" "$PROBES" \
    >"$OUT/results.md"
echo
cat "$OUT/results.md"
