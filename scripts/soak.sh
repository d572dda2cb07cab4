#!/usr/bin/env bash
# Soak test (not in CI): 30 minutes of publish/play churn against the release binary, with the
# gateway's RSS, peak RSS, open descriptors and threads sampled every 10 s.
#
#   scripts/soak.sh                              # 30 min, 4 stream keys, up to 20 real players
#   SOAK_SECONDS=300 SOAK_PLAYERS=10 scripts/soak.sh   # a 5-minute look
#
# Churn: ffmpeg publishers (-re -stream_loop) live 20-80 s each and are restarted, one in five
# killed with SIGKILL mid-stream; ffmpeg and rtmpdump players come and go every couple of
# seconds with 5-40 s lives, some SIGKILLed; every minute `wasmgate-load` connects 200 more
# players for a few seconds. Output: target/soak/samples.csv and a summary; exits non-zero when
# the gateway died or panicked, or when its descriptors did not return to the idle level.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/target/soak
mkdir -p "$OUT"
DURATION=${SOAK_SECONDS:-1800}
PORT=${SOAK_PORT:-19511}
KEYS=${SOAK_STREAMS:-4}
MAX_PLAYERS=${SOAK_PLAYERS:-20}
BULK=${SOAK_BULK_PLAYERS:-200}
SAMPLE=${SOAK_SAMPLE_SECS:-10}

command -v ffmpeg >/dev/null && command -v rtmpdump >/dev/null || scripts/install-test-deps.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "soak: building release binaries"
cargo build --release --bins -q

FIXTURE=$OUT/soak.flv
if [ ! -s "$FIXTURE" ]; then
    echo "soak: encoding $FIXTURE (30 s, 640x360, 1 s GOP; once)"
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=640x360:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
        -t 30 -map 0:v -map 1:a -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 800k \
        -g 25 -keyint_min 25 -sc_threshold 0 -c:a aac -b:a 96k -f flv "$FIXTURE.tmp"
    mv "$FIXTURE.tmp" "$FIXTURE"
fi

RUST_LOG=${RUST_LOG:-warn} "$ROOT/target/release/wasmgate" --rtmp "127.0.0.1:$PORT" 2>"$OUT/wasmgate.log" &
GW=$!
declare -A PUB=()   # key -> pid
PLAYERS=()
stop_clients() { # players run under `timeout`: kill its child too
    for p in "${PUB[@]}" "${PLAYERS[@]}"; do
        pkill -9 -P "$p" 2>/dev/null || true
        kill -9 "$p" 2>/dev/null || true
    done
}
cleanup() {
    stop_clients
    kill "$GW" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

sample() { # elapsed -> csv line
    local rss hwm fds thr
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$GW/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$GW/status")
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$GW/status")
    fds=$(find "/proc/$GW/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "$1,$rss,$hwm,$fds,$thr,${#PUB[@]},${#PLAYERS[@]}"
}
alive() { kill -0 "$1" 2>/dev/null; }

FDS_IDLE=$(find "/proc/$GW/fd" -mindepth 1 -maxdepth 1 | wc -l)
echo "elapsed_s,rss_kib,hwm_kib,fds,threads,publishers,players" >"$OUT/samples.csv"
echo "soak: gateway pid $GW on 127.0.0.1:$PORT, ${DURATION}s, idle fds $FDS_IDLE"
start=$SECONDS
next_sample=0
next_bulk=60
pub_started=0
players_started=0
kills=0
bulk_runs=0
while [ $((SECONDS - start)) -lt "$DURATION" ]; do
    alive "$GW" || { echo "soak: gateway died"; exit 1; }
    now=$((SECONDS - start))
    # Publishers: one per key, restarted when their life ends; one in five killed -9.
    for k in $(seq 0 $((KEYS - 1))); do
        p=${PUB[$k]:-}
        if [ -z "$p" ] || ! alive "$p"; then
            ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$FIXTURE" \
                -t $((20 + RANDOM % 60)) -c copy -f flv "rtmp://127.0.0.1:$PORT/live/s$k" \
                2>>"$OUT/publishers.log" &
            PUB[$k]=$!
            disown "$!" # no "Killed" job notices when churn SIGKILLs it
            pub_started=$((pub_started + 1))
        elif [ $((RANDOM % 100)) -eq 0 ]; then
            kill -9 "$p" 2>/dev/null || true
            kills=$((kills + 1))
        fi
    done
    # Players: drop finished ones, start new ones, SIGKILL a few.
    live=()
    for p in "${PLAYERS[@]}"; do alive "$p" && live+=("$p"); done
    PLAYERS=("${live[@]}")
    if [ ${#PLAYERS[@]} -lt "$MAX_PLAYERS" ]; then
        key=s$((RANDOM % KEYS))
        life=$((5 + RANDOM % 36))
        if [ $((RANDOM % 2)) -eq 0 ]; then
            timeout -s INT $((life + 20)) ffmpeg -nostdin -hide_banner -loglevel error \
                -i "rtmp://127.0.0.1:$PORT/live/$key" -t "$life" -c copy -f null - \
                2>>"$OUT/players.log" &
        else
            timeout -s INT "$life" rtmpdump -q -r "rtmp://127.0.0.1:$PORT/live/$key" -m 10 \
                -o /dev/null 2>>"$OUT/players.log" &
        fi
        PLAYERS+=("$!")
        disown "$!"
        players_started=$((players_started + 1))
    fi
    if [ ${#PLAYERS[@]} -gt 0 ] && [ $((RANDOM % 10)) -eq 0 ]; then
        victim=${PLAYERS[$((RANDOM % ${#PLAYERS[@]}))]}
        pkill -9 -P "$victim" 2>/dev/null || true # the player under `timeout`
        kills=$((kills + 1))
    fi
    # Bulk connect/play/disconnect through the load tool.
    if [ "$now" -ge "$next_bulk" ]; then
        "$ROOT/target/release/wasmgate-load" --url "rtmp://127.0.0.1:$PORT/live/s0" --players "$BULK" \
            --probes 0 --warmup 1 --duration 3 --label soak >>"$OUT/load.jsonl" 2>>"$OUT/load.stderr" &
        PLAYERS+=("$!")
        bulk_runs=$((bulk_runs + 1))
        next_bulk=$((now + 60))
    fi
    if [ "$now" -ge "$next_sample" ]; then
        line=$(sample "$now")
        echo "$line" >>"$OUT/samples.csv"
        echo "soak: $line"
        next_sample=$((now + SAMPLE))
    fi
    sleep 2
done

echo "soak: stopping clients"
stop_clients
PUB=()
PLAYERS=()
sleep 5
alive "$GW" || { echo "soak: gateway died"; exit 1; }
final=$(sample $((SECONDS - start)))
echo "$final" >>"$OUT/samples.csv"
FDS_END=$(echo "$final" | cut -d, -f4)
summary=$(awk -F, 'NR > 2 { if (!first) first = $2; if ($2 > max) max = $2; last = $2; if ($4 > fmax) fmax = $4 }
    END { printf "RSS first %d KiB, max %d KiB, last %d KiB; max fds %d", first, max, last, fmax }' "$OUT/samples.csv")
panics=$(grep -c panicked "$OUT/wasmgate.log" || true)
echo "soak: ${DURATION}s: $pub_started publisher runs, $players_started players, $bulk_runs bulk runs of $BULK, $kills SIGKILLs"
echo "soak: $summary; fds idle $FDS_IDLE before, $FDS_END after; panics in log: $panics"
[ "$panics" -eq 0 ] || { echo "soak: FAIL: the gateway panicked (see $OUT/wasmgate.log)"; exit 1; }
[ "$FDS_END" -le $((FDS_IDLE + 2)) ] || { echo "soak: FAIL: descriptors leaked"; exit 1; }
echo "soak: OK (samples in $OUT/samples.csv)"
