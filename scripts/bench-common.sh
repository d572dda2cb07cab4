# Shared by the benchmarks that compare wasmgate with nginx-rtmp (sourced, not run): installs
# what they need, raises the file limit, builds the release binaries and encodes the test file.
#
#   source scripts/bench-common.sh; bench_setup NAME    # sets ROOT, OUT and FIXTURE

# bench_setup NAME: NAME prefixes the messages; BITRATE (e.g. 2500k) picks the file.
bench_setup() {
    local name=$1 need=()
    ROOT=$PWD
    OUT=$ROOT/target/bench
    mkdir -p "$OUT"
    command -v ffmpeg >/dev/null || need+=(ffmpeg)
    command -v nginx >/dev/null || need+=(nginx-light)
    [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
    if [ ${#need[@]} -gt 0 ]; then
        echo "$name: installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    echo "$name: building release binaries"
    cargo build --release --bins -q

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
