#!/usr/bin/env bash
# Chaos run (not CI; issue 18 "Faults under load"): players on live streams while publishers
# are killed, players SIGKILLed, the app's guest replaced (every third time by one that traps)
# and the config reloaded by SIGHUP; then checks the gateway came through it.
#
#   scripts/chaos.sh                                        # 10 min, 500 players, 5 publishers
#   CHAOS_SECONDS=60 CHAOS_PLAYERS=100 scripts/chaos.sh     # a one-minute look
#
# Players: CHAOS_FFMPEG_PLAYERS (10) ffprobe processes over RTMPT/RTMPTS, the rest
# `wasmgate-load --chaos` (RTMP, RTMPS, HTTP-FLV, WebSocket-FLV), spread over the streams.
# Publishers: ffmpeg -re -stream_loop -1 over RTMP, RTMPT and RTMPS (the protocol rotates on
# every restart). Every gap without video longer than CHAOS_GAP_MS (2000) is laid over the
# publisher-down windows (kill -> the gateway shows a new publisher, widened by 1.5 s before
# and CHAOS_RECOVER_MS (8000) after); a gap outside them is a player starved while its
# publisher was up.
#
# Fails (exit 1) on: the gateway dying or panicking, an ERROR log line not explained by an
# injected fault, a starved player, a load-tool player that never got a frame, descriptors
# above the idle baseline + CHAOS_FD_TOLERANCE (2), or RSS above the idle baseline +
# CHAOS_RSS_TOLERANCE_MIB (64) after the run, or traps the gateway did not count. Results: $CARGO_TARGET_DIR/chaos/ (or
# target/chaos/): summary.txt, windows.txt, gaps.txt, players.jsonl, samples.csv, wasmgate.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
OUT=$TARGET/chaos

DURATION=${CHAOS_SECONDS:-600}
PLAYERS=${CHAOS_PLAYERS:-500}
PUBLISHERS=${CHAOS_PUBLISHERS:-5}
FF_PLAYERS=${CHAOS_FFMPEG_PLAYERS:-10}
PORT=${CHAOS_PORT:-19711}          # RTMP; HTTP is PORT+1, admin PORT+2
KILL_EVERY=${CHAOS_KILL_EVERY:-20} # s between publisher kills
DOWN_SECS=${CHAOS_DOWN_SECS:-3}    # a killed publisher restarts after this
PLAYER_KILL_EVERY=${CHAOS_PLAYER_KILL_EVERY:-5}
RELOAD_EVERY=${CHAOS_RELOAD_EVERY:-5}
HUP_EVERY=${CHAOS_HUP_EVERY:-30}
GAP_MS=${CHAOS_GAP_MS:-2000}
RECOVER_MS=${CHAOS_RECOVER_MS:-8000}
FF_START_MS=${CHAOS_FF_START_MS:-5000}
FD_TOL=${CHAOS_FD_TOLERANCE:-2}
RSS_TOL_MIB=${CHAOS_RSS_TOLERANCE_MIB:-64}
HTTP_PORT=$((PORT + 1))
ADMIN_PORT=$((PORT + 2))
LOAD_PLAYERS=$((PLAYERS - FF_PLAYERS))
APP=chaos

# ---------------------------------------------------------------- helpers

say() { echo "chaos: $*"; }
die() { say "FAIL: $*"; exit 1; }
# now_ms: sets NOW to the wall clock in ms (no subshell: called per frame by trackers).
now_ms() { NOW=${EPOCHREALTIME//[!0-9]/}; NOW=$((NOW / 1000)); }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
api() { curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/v1/$1"; }
metric() { # name-with-labels -> value (0 when absent)
    curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v m="$1" 'index($0, m " ") == 1 { v = $2 } END { print v + 0 }'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GW/status"; }
fd_count() { find "/proc/$GW/fd" -mindepth 1 -maxdepth 1 | wc -l; }
wait_port() {
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}

CHILDREN=() # every process started, killed by cleanup
cleanup() {
    local p
    for p in "${CHILDREN[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    alive "${GW:-}" && kill "$GW" 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT

# ---------------------------------------------------------------- setup

setup() {
    command -v ffmpeg >/dev/null && command -v rtmpdump >/dev/null || scripts/install-test-deps.sh
    for tool in curl jq openssl stdbuf; do
        command -v "$tool" >/dev/null || scripts/apt-install.sh "$tool"
    done
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    rm -rf "$OUT"
    mkdir -p "$OUT/apps/$APP" "$OUT/logs"
    say "building release binaries and guests"
    nice cargo build --release --bin wasmgate --bin wasmgate-load -q
    rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2 || rustup target add wasm32-wasip2
    CARGO_TARGET_DIR=$TARGET/guests nice cargo build --release --target wasm32-wasip2 \
        --manifest-path guests/Cargo.toml -p chat -p misbehave -q
    GOOD_WASM=$TARGET/guests/wasm32-wasip2/release/chat.wasm
    TRAP_WASM=$TARGET/guests/wasm32-wasip2/release/misbehave.wasm

    FIXTURE=$TARGET/chaos-fixture.flv
    if [ ! -s "$FIXTURE" ]; then
        say "encoding $FIXTURE (30 s, 640x360, 450 kbit/s, 1 s GOP; once)"
        ffmpeg -nostdin -hide_banner -loglevel error -y \
            -f lavfi -i "testsrc2=size=640x360:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
            -t 30 -map 0:v -map 1:a -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 400k \
            -g 25 -keyint_min 25 -sc_threshold 0 -c:a aac -b:a 48k -f flv "$FIXTURE.tmp"
        mv "$FIXTURE.tmp" "$FIXTURE"
    fi
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

    # failure_policy "open": while the trapping guest is in, connects and plays are let
    # through (the fault stays in the app), so players only ever wait for publishers.
    # `mode` is read by the misbehave guest only (trap in on_connect); chat ignores it.
    cat >"$OUT/apps/$APP/app.toml" <<EOF
[settings]
mode = "trap"
[limits]
failure_policy = "open"
EOF
    cp "$GOOD_WASM" "$OUT/apps/$APP/app.wasm"
}

# write_config VARIANT: the gateway's config; SIGHUP toggles the variant, which changes live
# keys (connection limit, RTMPT latency, ping interval, player skips).
write_config() {
    local v=$1 latency=low ping=15 maxconn=10000 skips=10
    if [ "$v" -eq 1 ]; then latency=medium ping=16 maxconn=9000 skips=12; fi
    cat >"$OUT/wasmgate.toml.tmp" <<EOF
log_level = "info"
[rtmp]
listen = ["127.0.0.1:$PORT"]
max_connections = $maxconn
max_connections_per_ip = 5000
ping_interval_secs = $ping
[media]
player_max_skips = $skips
[http]
listen = ["127.0.0.1:$HTTP_PORT"]
latency = "$latency"
hls = false
[tls]
cert = "$OUT/cert.pem"
key = "$OUT/key.pem"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[apps]
dir = "$OUT/apps"
cache_dir = "$OUT/wasm-cache"
EOF
    mv "$OUT/wasmgate.toml.tmp" "$OUT/wasmgate.toml"
}

start_gateway() {
    write_config 0
    RUST_LOG='' "$BIN/wasmgate" --config "$OUT/wasmgate.toml" 2>"$OUT/wasmgate.log" &
    GW=$!
    wait_port "$PORT"
    wait_port "$ADMIN_PORT"
}

# wait_idle: until the gateway has no client connection (RTMPT sessions of killed clients
# expire after http.session_idle_timeout_secs, 30 s), at most 60 s.
wait_idle() {
    local i n
    for i in $(seq 60); do
        n=$(api server | jq '.connections.current') || n=?
        [ "$n" = 0 ] && return 0
        sleep 1
    done
    say "still $n connections after 60 s"
}

# ---------------------------------------------------------------- publishers

declare -a PUB_PID PUB_RUNS PUB_OLD PUB_DOWN PUB_RESTART PUB_KILLED
PROTOS=(rtmp rtmpt rtmps)
pub_url() { # k proto
    case $2 in
        rtmp) echo "rtmp://127.0.0.1:$PORT/$APP/s$1" ;;
        rtmpt) echo "rtmpt://127.0.0.1:$HTTP_PORT/$APP/s$1" ;;
        rtmps) echo "rtmps://127.0.0.1:$PORT/$APP/s$1" ;;
    esac
}
start_publisher() { # k
    local k=$1 proto=${PROTOS[$(((k + PUB_RUNS[k]) % 3))]}
    PUB_RUNS[k]=$((PUB_RUNS[k] + 1))
    echo "--- $(date +%T) start over $proto" >>"$OUT/logs/pub-$k.log"
    ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$FIXTURE" -c copy \
        -f flv "$(pub_url "$k" "$proto")" 2>>"$OUT/logs/pub-$k.log" &
    PUB_PID[k]=$!
    CHILDREN+=("$!")
    PUB_RESTART[k]=0
}
# publisher_of k: the client id publishing s<k> ("null" when none).
publisher_of() { echo "$STREAMS_JSON" | jq -r --arg n "s$1" '[.[] | select(.name == $n and .publishing)][0].publisher // "null"'; }
# open_window k: s<k> is down from NOW until the gateway shows another publisher.
open_window() {
    local k=$1
    [ "${PUB_DOWN[k]:-0}" -gt 0 ] && return 0 # already down
    STREAMS_JSON=$(api streams || echo '[]')
    PUB_OLD[k]=$(publisher_of "$k")
    PUB_DOWN[k]=$NOW
}
kill_publisher() { # k
    local k=$1
    now_ms
    open_window "$k"
    kill -9 "${PUB_PID[k]}" 2>/dev/null || true
    wait "${PUB_PID[k]}" 2>/dev/null || true
    PUB_PID[k]=""
    PUB_RESTART[k]=$((NOW + DOWN_SECS * 1000))
    PUB_KILLS=$((PUB_KILLS + 1))
}
# tend_publishers: restarts killed or exited publishers when due; closes down windows.
tend_publishers() {
    local k awaiting=0 id
    now_ms
    for k in $(seq 0 $((PUBLISHERS - 1))); do
        if [ -n "${PUB_PID[k]}" ] && ! alive "${PUB_PID[k]}"; then
            # Exited by itself (e.g. refused while the killed RTMPT session still holds the
            # name, until takeover_idle_secs): counted, down from now, retried in 1 s.
            wait "${PUB_PID[k]}" 2>/dev/null || true
            PUB_EXITS=$((PUB_EXITS + 1))
            open_window "$k"
            PUB_PID[k]=""
            PUB_RESTART[k]=$((NOW + 1000))
        fi
        if [ -z "${PUB_PID[k]}" ] && [ "$NOW" -ge "${PUB_RESTART[k]}" ]; then
            start_publisher "$k"
        fi
        [ "${PUB_DOWN[k]:-0}" -gt 0 ] && awaiting=1
    done
    [ "$awaiting" -eq 1 ] || return 0
    STREAMS_JSON=$(api streams || echo '[]')
    now_ms
    for k in $(seq 0 $((PUBLISHERS - 1))); do
        [ "${PUB_DOWN[k]:-0}" -gt 0 ] || continue
        id=$(publisher_of "$k")
        if [ "$id" != null ] && [ "$id" != "${PUB_OLD[k]}" ] && alive "${PUB_PID[k]}"; then
            echo "s$k ${PUB_DOWN[k]} $NOW" >>"$OUT/windows.txt"
            PUB_DOWN[k]=0
        fi
    done
}
all_publishing() {
    STREAMS_JSON=$(api streams || echo '[]')
    [ "$(echo "$STREAMS_JSON" | jq '[.[] | select(.publishing)] | length')" -ge "$PUBLISHERS" ]
}

# ---------------------------------------------------------------- ffprobe players

declare -a FF_PID
# track_frames NAME STREAM: reads one line per video packet from ffprobe; appends every gap
# longer than GAP_MS (and the stretch after the last frame) to ff-gaps.txt in the load tool's
# format. Before the first frame FF_START_MS is allowed: ffprobe's own start-up (TLS, RTMPT
# open, probing) on a busy machine is not the gateway's doing.
track_frames() {
    local name=$1 stream=$2 since frames=0 line limit=$FF_START_MS
    now_ms
    since=$NOW
    while read -r line; do
        now_ms
        [ $((NOW - since)) -gt "$limit" ] && echo "$name $stream $since $NOW" >>"$OUT/ff-gaps.txt"
        limit=$GAP_MS
        since=$NOW
        frames=$((frames + 1))
    done
    now_ms
    [ $((NOW - since)) -gt "$GAP_MS" ] && echo "$name $stream $since $NOW" >>"$OUT/ff-gaps.txt"
    echo "$name $stream $frames" >>"$OUT/ff-frames.txt"
}
start_ff_player() { # slot
    local slot=$1 k=$(($1 % PUBLISHERS)) scheme=rtmpt
    [ $((slot % 2)) -eq 1 ] && scheme=rtmpts
    FF_STARTS=$((FF_STARTS + 1))
    # Video packets only, one line each, unbuffered; probing kept short so frames show at once.
    stdbuf -oL ffprobe -v error -analyzeduration 500000 -probesize 100000 -select_streams v \
        -show_entries packet=pts_time -of csv=p=0 "$scheme://127.0.0.1:$HTTP_PORT/$APP/s$k" \
        2>>"$OUT/logs/ff-players.log" > >(track_frames "ff-$slot-$scheme" "s$k") &
    FF_PID[slot]=$!
    CHILDREN+=("$!")
}
tend_ff_players() {
    local s
    for s in $(seq 0 $((FF_PLAYERS - 1))); do
        if ! alive "${FF_PID[s]:-}"; then
            [ -n "${FF_PID[s]:-}" ] && FF_EXITS=$((FF_EXITS + 1))
            start_ff_player "$s"
        fi
    done
}
kill_ff_player() {
    [ "$FF_PLAYERS" -gt 0 ] || return 0
    local s=$((RANDOM % FF_PLAYERS))
    kill -9 "${FF_PID[s]}" 2>/dev/null || true
    wait "${FF_PID[s]}" 2>/dev/null || true
    FF_KILLS=$((FF_KILLS + 1))
    start_ff_player "$s"
}

# ---------------------------------------------------------------- guest and config faults

# replace_guest: the next module into the app folder, then the admin reload; every third one
# traps in on_connect, and a connect is made at once so the trap really happens.
replace_guest() {
    local wasm=$GOOD_WASM code
    GUEST_RELOADS=$((GUEST_RELOADS + 1))
    [ $((GUEST_RELOADS % 3)) -eq 0 ] && wasm=$TRAP_WASM
    cp "$wasm" "$OUT/apps/$APP/app.wasm.tmp"
    mv "$OUT/apps/$APP/app.wasm.tmp" "$OUT/apps/$APP/app.wasm"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
        "http://127.0.0.1:$ADMIN_PORT/api/v1/apps/$APP/reload") || code=000
    [ "$code" = 200 ] || RELOAD_FAILS=$((RELOAD_FAILS + 1))
    if [ "$wasm" = "$TRAP_WASM" ]; then
        GUEST_TRAPS=$((GUEST_TRAPS + 1))
        timeout -s KILL 4 rtmpdump -q -r "rtmp://127.0.0.1:$PORT/$APP/poke" -m 1 -o /dev/null \
            >/dev/null 2>&1 &
        CHILDREN+=("$!")
    fi
}
sighup() {
    HUPS=$((HUPS + 1))
    write_config $((HUPS % 2))
    kill -HUP "$GW"
}

# ---------------------------------------------------------------- the run

setup
start_gateway
say "gateway pid $GW: rtmp $PORT, http $HTTP_PORT, admin $ADMIN_PORT; log $OUT/wasmgate.log"

# Warm-up: every path once (publishers over each protocol, the four player transports, a
# guest reload), then everything stopped; the idle gateway after it is the baseline.
PUB_KILLS=0 PUB_EXITS=0 FF_STARTS=0 FF_EXITS=0 FF_KILLS=0 GUEST_RELOADS=0 GUEST_TRAPS=0
RELOAD_FAILS=0 HUPS=0
for k in $(seq 0 $((PUBLISHERS - 1))); do PUB_RUNS[k]=0 PUB_DOWN[k]=0 PUB_PID[k]=""; done
for k in $(seq 0 $((PUBLISHERS - 1))); do start_publisher "$k"; done
for _ in $(seq 30); do all_publishing && break; sleep 1; done
all_publishing || die "the publishers did not all start (see $OUT/logs/pub-*.log)"
warm_urls=()
for k in $(seq 0 $((PUBLISHERS - 1))); do
    warm_urls+=(--url "rtmp://127.0.0.1:$PORT/$APP/s$k" --url "rtmps://127.0.0.1:$PORT/$APP/s$k"
        --url "http://127.0.0.1:$HTTP_PORT/$APP/s$k.flv" --url "ws://127.0.0.1:$HTTP_PORT/$APP/s$k.flv")
done
"$BIN/wasmgate-load" --chaos "${warm_urls[@]}" --players 40 --duration 8 --label warmup \
    >"$OUT/warmup.json" 2>"$OUT/logs/warmup.stderr"
replace_guest
GUEST_RELOADS=0
for k in $(seq 0 $((PUBLISHERS - 1))); do kill -INT "${PUB_PID[k]}" 2>/dev/null || true; done
for k in $(seq 0 $((PUBLISHERS - 1))); do wait "${PUB_PID[k]}" 2>/dev/null || true; PUB_PID[k]=""; PUB_RUNS[k]=0; done
wait_idle
sleep 2
RSS0=$(rss_kib)
FD0=$(fd_count)
say "baseline after warm-up: RSS $RSS0 KiB, $FD0 fds"

# Load.
: >"$OUT/windows.txt"
: >"$OUT/ff-gaps.txt"
: >"$OUT/ff-frames.txt"
for k in $(seq 0 $((PUBLISHERS - 1))); do start_publisher "$k"; done
for _ in $(seq 30); do all_publishing && break; sleep 1; done
all_publishing || die "the publishers did not all start (see $OUT/logs/pub-*.log)"
say "$PUBLISHERS publishers up; starting $LOAD_PLAYERS load-tool players and $FF_PLAYERS ffprobe players for ${DURATION}s"
"$BIN/wasmgate-load" --chaos "${warm_urls[@]}" --players "$LOAD_PLAYERS" --duration "$DURATION" \
    --gap-ms "$GAP_MS" --report "$OUT/players.jsonl" --gaps "$OUT/load-gaps.txt" --label chaos \
    >"$OUT/load.json" 2>"$OUT/logs/load.stderr" &
LOAD=$!
CHILDREN+=("$LOAD")
tend_ff_players

echo "elapsed_s,rss_kib,fds,connections" >"$OUT/samples.csv"
start=$SECONDS
next_kill=$KILL_EVERY next_pkill=$PLAYER_KILL_EVERY next_reload=$RELOAD_EVERY
next_hup=$HUP_EVERY next_sample=0
while [ $((SECONDS - start)) -lt "$DURATION" ]; do
    alive "$GW" || die "the gateway died (see $OUT/wasmgate.log)"
    t=$((SECONDS - start))
    tend_publishers
    tend_ff_players
    if [ "$t" -ge "$next_kill" ]; then
        # A random publisher that is up (not one still waiting to come back).
        k=$((RANDOM % PUBLISHERS))
        [ "${PUB_DOWN[k]}" -eq 0 ] && [ -n "${PUB_PID[k]}" ] && kill_publisher "$k"
        next_kill=$((next_kill + KILL_EVERY))
    fi
    if [ "$t" -ge "$next_pkill" ]; then kill_ff_player; next_pkill=$((next_pkill + PLAYER_KILL_EVERY)); fi
    if [ "$t" -ge "$next_reload" ]; then replace_guest; next_reload=$((next_reload + RELOAD_EVERY)); fi
    if [ "$t" -ge "$next_hup" ]; then sighup; next_hup=$((next_hup + HUP_EVERY)); fi
    if [ "$t" -ge "$next_sample" ]; then
        conns=$(api server | jq '.connections.current' 2>/dev/null || echo '?')
        echo "$t,$(rss_kib),$(fd_count),$conns" >>"$OUT/samples.csv"
        [ $((next_sample % 60)) -eq 0 ] && say "t=${t}s rss $(rss_kib) KiB, $(fd_count) fds, $conns connections; $PUB_KILLS publisher kills, $FF_KILLS player kills, $GUEST_RELOADS guest reloads, $HUPS SIGHUPs"
        next_sample=$((next_sample + 10))
    fi
    sleep 1
done
now_ms
RUN_END=$NOW

# ---------------------------------------------------------------- after the run

say "stopping: load tool, players, publishers"
wait "$LOAD" || say "the load tool exited with $?"
for s in $(seq 0 $((FF_PLAYERS - 1))); do kill -9 "${FF_PID[s]}" 2>/dev/null || true; done
for k in $(seq 0 $((PUBLISHERS - 1))); do kill -INT "${PUB_PID[k]}" 2>/dev/null || true; done
for k in $(seq 0 $((PUBLISHERS - 1))); do alive "${PUB_PID[k]}" && wait "${PUB_PID[k]}" 2>/dev/null || true; done
sleep 1 # the ffprobe trackers write their last lines
# A window still open at the end lasts to the end.
for k in $(seq 0 $((PUBLISHERS - 1))); do
    [ "${PUB_DOWN[k]}" -gt 0 ] && echo "s$k ${PUB_DOWN[k]} $RUN_END" >>"$OUT/windows.txt"
done
alive "$GW" || die "the gateway died (see $OUT/wasmgate.log)"
TRAPS_COUNTED=$(metric "wasmgate_guest_traps_total{app=\"$APP\"}")
HUPS_APPLIED=$(metric 'wasmgate_config_reloads_total{result="applied"}')
wait_idle
sleep 2
RSS1=$(rss_kib)
FD1=$(fd_count)

# Gaps: explained when inside a publisher-down window of their stream (merged per stream,
# each widened by 1.5 s before the kill and RECOVER_MS after the new publisher showed).
cat "$OUT/load-gaps.txt" "$OUT/ff-gaps.txt" >"$OUT/gaps.txt" 2>/dev/null || true
classify_gaps() {
    awk -v before=1500 -v after="$RECOVER_MS" '
        FNR == NR { n[$1]++; lo[$1, n[$1]] = $2 - before; hi[$1, n[$1]] = $3 + after; next }
        {
            ok = 0
            for (i = 1; i <= n[$2]; i++) {
                # Chain overlapping windows: a restart killed again before it recovered.
                l = lo[$2, i]; h = hi[$2, i]
                for (j = 1; j <= n[$2]; j++)
                    if (lo[$2, j] <= h && hi[$2, j] >= l) { if (lo[$2, j] < l) l = lo[$2, j]; if (hi[$2, j] > h) h = hi[$2, j] }
                if ($3 >= l && $4 <= h) { ok = 1; break }
            }
            if (ok) print "explained", $0; else print "STARVED", $0
        }' "$OUT/windows.txt" "$OUT/gaps.txt"
}
classify_gaps >"$OUT/gaps-classified.txt"
GAPS_EXPLAINED=$(grep -c '^explained' "$OUT/gaps-classified.txt" || true)
GAPS_STARVED=$(grep -c '^STARVED' "$OUT/gaps-classified.txt" || true)
STARVED_PLAYERS=$(awk '$1 == "STARVED" { print $2 }' "$OUT/gaps-classified.txt" | sort -u | wc -l)
LOAD_SUMMARY=$(cat "$OUT/load.json")
NEVER=$(echo "$LOAD_SUMMARY" | jq '.never_played')
GAP_P50=$(echo "$LOAD_SUMMARY" | jq '.max_gap_ms_p50')
GAP_P99=$(echo "$LOAD_SUMMARY" | jq '.max_gap_ms_p99')
GAP_MAX=$(echo "$LOAD_SUMMARY" | jq '.max_gap_ms_max')
LOAD_FRAMES=$(echo "$LOAD_SUMMARY" | jq '.frames')
LOAD_RECONNECTS=$(echo "$LOAD_SUMMARY" | jq '.failures')
FF_FRAMES=$(awk '{ s += $3 } END { print s + 0 }' "$OUT/ff-frames.txt")
DOWN_S=$(awk '{ s += $3 - $2 } END { printf "%.0f", s / 1000 }' "$OUT/windows.txt")

# Log: panics, and every ERROR line matched against what the faults explain.
EXPLAINED_ERRORS=(
    # pattern (extended regex)                         # why it is expected
)
classify_log() {
    local line why re i
    sed 's/\x1b\[[0-9;]*m//g' "$OUT/wasmgate.log" | { grep -E '^\S+ +ERROR ' || true; } | while IFS= read -r line; do
        why=""
        for ((i = 0; i < ${#EXPLAINED_ERRORS[@]}; i += 2)); do
            re=${EXPLAINED_ERRORS[i]}
            if [[ $line =~ $re ]]; then why=${EXPLAINED_ERRORS[i + 1]}; break; fi
        done
        if [ -n "$why" ]; then echo "explained ($why): $line"; else echo "UNEXPLAINED: $line"; fi
    done
}
classify_log >"$OUT/errors-classified.txt"
# A guest's own panic message reaches the log through its stderr (apps::host, stream="stderr"):
# that is the trapping guest doing its job, not the gateway panicking.
PANICS=$(grep 'panicked' "$OUT/wasmgate.log" | grep -vc 'wasmgate::apps::host: .*stream="stderr"' || true)
GUEST_PANICS=$(grep 'panicked' "$OUT/wasmgate.log" | grep -c 'wasmgate::apps::host: .*stream="stderr"' || true)
ERRORS_EXPLAINED=$(grep -c '^explained' "$OUT/errors-classified.txt" || true)
ERRORS_UNEXPLAINED=$(grep -c '^UNEXPLAINED' "$OUT/errors-classified.txt" || true)
# Warnings, by message (timestamp and fields stripped), for the reader.
sed 's/\x1b\[[0-9;]*m//g' "$OUT/wasmgate.log" | grep -E '^\S+ +WARN ' |
    sed -E 's/^.* (wasmgate(::[a-z_]+)*: )/\1/; s/ [a-z_]+=.*$//' | sort | uniq -c | sort -rn >"$OUT/warnings.txt" || true

RSS_LIMIT=$((RSS0 + RSS_TOL_MIB * 1024))
RSS_PEAK=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m + 0 }' "$OUT/samples.csv")
FD_LIMIT=$((FD0 + FD_TOL))
{
    echo "| figure | value |"
    echo "|---|---|"
    echo "| duration | ${DURATION} s |"
    echo "| players | $PLAYERS ($LOAD_PLAYERS wasmgate-load: rtmp/rtmps/http-flv/ws-flv; $FF_PLAYERS ffprobe: rtmpt/rtmpts, $FF_STARTS started) |"
    echo "| publishers | $PUBLISHERS (rtmp/rtmpt/rtmps rotating), $PUB_KILLS killed -9, $PUB_EXITS exited by themselves, $(wc -l <"$OUT/windows.txt") down windows, ${DOWN_S} s down in all |"
    echo "| player faults | $FF_KILLS ffprobe players SIGKILLed, $FF_EXITS exited by themselves; load-tool reconnects $LOAD_RECONNECTS |"
    echo "| guest reloads | $GUEST_RELOADS ($GUEST_TRAPS trapping; $RELOAD_FAILS refused), traps counted by the gateway $TRAPS_COUNTED |"
    echo "| SIGHUPs | $HUPS sent, $HUPS_APPLIED applied |"
    echo "| video frames received | load tool $LOAD_FRAMES, ffprobe $FF_FRAMES |"
    echo "| per-player max gap (load tool) | p50 $GAP_P50 ms, p99 $GAP_P99 ms, max $GAP_MAX ms |"
    echo "| gaps > ${GAP_MS} ms | $GAPS_EXPLAINED inside publisher-down windows, $GAPS_STARVED outside ($STARVED_PLAYERS players starved) |"
    echo "| players never served | $NEVER |"
    echo "| RSS idle before / after | $((RSS0 / 1024)) / $((RSS1 / 1024)) MiB (limit +${RSS_TOL_MIB} MiB) |"
    echo "| fds idle before / after | $FD0 / $FD1 (limit +$FD_TOL) |"
    echo "| RSS peak during the run | $((RSS_PEAK / 1024)) MiB |"
    echo "| panics | $PANICS in the gateway ($GUEST_PANICS guest panics, i.e. the traps, in guest stderr) |"
    echo "| ERROR lines | $ERRORS_EXPLAINED explained, $ERRORS_UNEXPLAINED unexplained |"
    echo "| machine | $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end |"
} | tee "$OUT/summary.txt"
say "warnings by message (all in $OUT/warnings.txt):"
head -8 "$OUT/warnings.txt"

fail=0
[ "$PANICS" -eq 0 ] || { say "FAIL: the gateway panicked (grep panicked $OUT/wasmgate.log)"; fail=1; }
[ "$ERRORS_UNEXPLAINED" -eq 0 ] || { say "FAIL: unexplained errors:"; grep '^UNEXPLAINED' "$OUT/errors-classified.txt" | head -20; fail=1; }
[ "$GAPS_STARVED" -eq 0 ] || { say "FAIL: players starved while their publisher was up:"; grep '^STARVED' "$OUT/gaps-classified.txt" | head -20; fail=1; }
[ "$GUEST_TRAPS" -eq 0 ] || [ "${TRAPS_COUNTED%.*}" -gt 0 ] || { say "FAIL: $GUEST_TRAPS trapping guests deployed but wasmgate_guest_traps_total{app=\"$APP\"} is 0"; fail=1; }
[ "$NEVER" -eq 0 ] || { say "FAIL: $NEVER load-tool players never received a frame"; fail=1; }
[ "$FD1" -le "$FD_LIMIT" ] || { say "FAIL: descriptors not back to the baseline ($FD1 > $FD_LIMIT)"; fail=1; }
[ "$RSS1" -le "$RSS_LIMIT" ] || { say "FAIL: RSS not back near the baseline ($RSS1 KiB > $RSS_LIMIT KiB)"; fail=1; }
[ "$fail" -eq 0 ] && say "OK (details in $OUT)"
exit "$fail"
