#!/usr/bin/env bash
# VOD benchmark: N players of one FLV file, wasmgate against nginx-rtmp's `play` directory on
# the same file, in one run.
#
#   scripts/bench-vod.sh                                  # N = 100 500, 2 rounds, 20 s windows
#   BENCH_PLAYERS="100" BENCH_REPS=1 BENCH_SECONDS=10 scripts/bench-vod.sh   # quick look
#
# The file is the fan-out benchmark's 60 s CBR H.264/AAC FLV (made once by ffmpeg). Every
# player plays it from 0 (`play(name, 0)`) with `wasmgate-load` (N byte-counting players +
# probes); the servers alternate A B A B and their CPU and memory are sampled from /proc over
# the window. Output: target/bench/vod.jsonl and the Markdown table target/bench/vod.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLAYERS=${BENCH_PLAYERS:-"100 500"}
REPS=${BENCH_REPS:-2}
SECONDS_MEASURED=${BENCH_SECONDS:-20}
BITRATE=${BENCH_BITRATE:-2500k}
PROBES=${BENCH_PROBES:-4}
GW_PORT=${BENCH_GW_PORT:-19421}
NGX_PORT=${BENCH_NGX_PORT:-19422}

source scripts/bench-common.sh
bench_setup bench-vod

# One copy of the file for both servers: wasmgate's <vod_dir>/vod/_definst_/, nginx's play dir.
VOD=$OUT/vod
mkdir -p "$VOD/vod/_definst_"
cp "$FIXTURE" "$VOD/vod/_definst_/bench.flv"
GW_CFG=$OUT/vod-wasmgate.toml
cat >"$GW_CFG" <<EOF
[admin]
enabled = false
[http]
listen = []
[media]
vod_dir = "$VOD"
EOF

NGX_DIR=$OUT/nginx-vod
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
        application vod { play $VOD/vod/_definst_; }
    }
}
EOF

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# run_one SERVER N
run_one() {
    local server=$1 n=$2 port spid
    PIDS=()
    if [ "$server" = wasmgate ]; then
        port=$GW_PORT
        RUST_LOG=warn "$BIN/wasmgate" --config "$GW_CFG" --rtmp "127.0.0.1:$port" \
            2>"$OUT/wasmgate-vod.log" &
        spid=$!
        PIDS+=("$spid")
    else
        port=$NGX_PORT
        nginx -p "$NGX_DIR" -c "$NGX_DIR/nginx.conf" 2>>"$OUT/nginx-vod.stderr" &
        PIDS+=("$!")
        sleep 0.5
        spid=$(pgrep -P "$(cat "$NGX_DIR/nginx.pid")" | head -1)
    fi
    sleep 0.5
    "$BIN/wasmgate-load" --url "rtmp://127.0.0.1:$port/vod/bench.flv" --start 0 \
        --players "$n" --probes "$PROBES" --warmup 3 --duration "$SECONDS_MEASURED" \
        --label "$server vod" --server-pid "$spid" \
        2>>"$OUT/load-vod.stderr" | tee -a "$OUT/vod.jsonl"
    cleanup
    if [ "$server" = nginx ] && [ -f "$NGX_DIR/nginx.pid" ]; then
        kill "$(cat "$NGX_DIR/nginx.pid")" 2>/dev/null || true
    fi
    sleep 1
}

: >"$OUT/vod.jsonl"
for n in $PLAYERS; do
    for round in $(seq 1 "$REPS"); do
        run_one wasmgate "$n"
        run_one nginx "$n"
    done
done

python3 "$ROOT/scripts/bench-summary.py" "$OUT/vod.jsonl" "$BITRATE" "$SECONDS_MEASURED" "$PROBES" \
    >"$OUT/vod.md"
echo
cat "$OUT/vod.md"
