# Shared by the benchmarks (sourced, not run): installs what they need, raises the file limit,
# builds the release binaries, encodes the test file, and starts and stops the processes of a
# run.
#
#   source scripts/bench-common.sh; bench_setup NAME [no-nginx]   # sets ROOT, BIN, OUT, FIXTURE
#
# Binaries and results live under CARGO_TARGET_DIR when it is set (else target/): BIN is its
# release/, OUT its bench/.

# bench_setup NAME [no-nginx]: NAME prefixes the messages; BITRATE (e.g. 2500k) picks the
# file; `no-nginx` skips installing nginx-rtmp (benchmarks of the gateway alone).
bench_setup() {
    local name=$1 nginx=${2:-nginx} need=()
    ROOT=$PWD
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    BIN=$target/release
    OUT=$target/bench
    mkdir -p "$OUT"
    command -v ffmpeg >/dev/null || need+=(ffmpeg)
    if [ "$nginx" != no-nginx ]; then
        command -v nginx >/dev/null || need+=(nginx-light)
        [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        echo "$name: installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    echo "$name: building release binaries"
    cargo build --release --bin wasmgate --bin wasmgate-load -q

    # 60 s CBR H.264/AAC at BITRATE with a 2 s GOP, encoded once and kept.
    FIXTURE=$OUT/cbr-$BITRATE.flv
    if [ ! -s "$FIXTURE" ]; then
        echo "$name: encoding $FIXTURE (60 s, CBR $BITRATE, 2 s GOP; once)"
        local kbps=${BITRATE%k}
        local vk=$((kbps - 128))
        ffmpeg -nostdin -hide_banner -loglevel error -y \
            -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
            -t 60 -map 0:v -map 1:a -c:v libx264 -preset veryfast -pix_fmt yuv420p \
            -b:v "${vk}k" -minrate "${vk}k" -maxrate "${vk}k" -bufsize "${vk}k" -x264-params nal-hrd=cbr \
            -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 128k -ar 44100 -f flv "$FIXTURE.tmp"
        mv "$FIXTURE.tmp" "$FIXTURE"
    fi
}

# The processes of one run (gateway, publisher), stopped by bench_stop.
BENCH_PIDS=()

# bench_publish URL LOG: publishes FIXTURE to URL in real time, looped, without re-encoding.
bench_publish() {
    ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$FIXTURE" -c copy \
        -f flv "$1" 2>"$2" &
    BENCH_PIDS+=("$!")
}

# bench_wait_port PORT: waits (up to 5 s) until something listens on 127.0.0.1:PORT.
bench_wait_port() {
    local i
    for i in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# bench_stop: stops what this run started (by pid) and waits for it.
bench_stop() {
    local p
    for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    BENCH_PIDS=()
}

# bench_loadavg: the 1, 5 and 15 minute load averages.
bench_loadavg() {
    cut -d' ' -f1-3 /proc/loadavg
}
