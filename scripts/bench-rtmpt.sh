#!/usr/bin/env bash
# Benchmark (not a test): the latency RTMPT adds over native RTMP on loopback, and whether an
# RTMPT player keeps up with a 5 Mbit/s stream in real time.
#
#   scripts/bench-rtmpt.sh [SECONDS]      (default 30; needs ffmpeg, ffprobe, python3)
#
# One ffmpeg publishes a CBR 5 Mbit/s H.264/AAC stream over RTMP; two ffprobe players read it
# at the same time, one over rtmp:// and one over rtmpt:// (HTTP port). Every video packet is
# stamped with the wall clock when it reaches each player; the script reports the difference
# per packet (median, p95, max), each player's received bitrate, and how far behind real time
# the RTMPT player ends up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS="${1:-30}"
WORK="target/bench"
mkdir -p "$WORK"
SRC="$WORK/cbr-5mbit-${SECS}s.flv"

cargo build --release -q

if [[ ! -s "$SRC" ]]; then
    echo "bench: encoding a ${SECS}s CBR 5 Mbit/s source (once) -> $SRC"
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=1280x720:rate=30" \
        -f lavfi -i "sine=frequency=440:sample_rate=44100" \
        -t "$SECS" -c:v libx264 -preset ultrafast -tune zerolatency -g 30 \
        -b:v 5M -minrate 5M -maxrate 5M -bufsize 2M -x264-params nal-hrd=cbr:force-cfr=1 \
        -c:a aac -b:a 128k -f flv "$SRC"
fi

python3 - "$SRC" "$SECS" <<'PY'
import os, signal, socket, statistics, subprocess, sys, threading, time

src, secs = sys.argv[1], int(sys.argv[2])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

rtmp_port, http_port = free_port(), free_port()
gw = subprocess.Popen(["target/release/wasmgate", "--rtmp", f"127.0.0.1:{rtmp_port}",
                       "--http", f"127.0.0.1:{http_port}"],
                      stderr=open("target/bench/gateway.log", "w"), env={**os.environ, "RUST_LOG": "warn"})
procs = [gw]
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", rtmp_port), 0.1).close(); break
        except OSError:
            time.sleep(0.05)
    pub = subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-i", src,
                            "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{rtmp_port}/live/bench"])
    procs.append(pub)
    time.sleep(1.5)

    arrivals = {}  # url -> {pts: (t, size)}
    def player(name, url):
        cmd = ["stdbuf", "-oL", "ffprobe", "-v", "error", "-rw_timeout", "10000000",
               "-analyzeduration", "500000", "-probesize", "200000",
               "-show_entries", "packet=codec_type,pts_time,size", "-of", "csv=p=0", "-i", url]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
        procs.append(p)
        seen = arrivals.setdefault(name, {})
        for line in p.stdout:
            t = time.monotonic()
            parts = line.strip().split(",")
            if len(parts) < 3 or parts[0] != "video":
                continue
            try:
                seen[float(parts[1])] = (t, int(parts[2]))
            except ValueError:
                pass

    urls = {"rtmp": f"rtmp://127.0.0.1:{rtmp_port}/live/bench",
            "rtmpt": f"rtmpt://127.0.0.1:{http_port}/live/bench"}
    threads = [threading.Thread(target=player, args=(n, u), daemon=True) for n, u in urls.items()]
    start = time.monotonic()
    for th in threads: th.start()
    pub.wait(timeout=secs + 30)
    time.sleep(2)
    end = time.monotonic()
finally:
    for p in procs[::-1]:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    time.sleep(0.5)
    for p in procs:
        if p.poll() is None:
            p.kill()

a, b = arrivals.get("rtmp", {}), arrivals.get("rtmpt", {})
if not a or not b:
    sys.exit(f"bench: a player received nothing (rtmp {len(a)}, rtmpt {len(b)} packets); see target/bench/gateway.log")
# Skip the first 3 s of media: both players' probing delays their first packets.
first = min(min(a), min(b)) + 3.0
common = sorted(p for p in a if p in b and p >= first)
deltas = sorted((b[p][0] - a[p][0]) * 1000 for p in common)
def pct(v, q): return v[min(len(v) - 1, int(q * len(v)))]
def rate(d):
    ts = [t for t, _ in d.values()]
    return sum(s for _, s in d.values()) * 8 / max(1e-9, max(ts) - min(ts)) / 1e6
print(f"packets compared: {len(common)} video packets after the first 3 s")
print(f"RTMPT minus RTMP arrival (ms): median {statistics.median(deltas):.1f}  p95 {pct(deltas, 0.95):.1f}  max {deltas[-1]:.1f}")
print(f"video received: rtmp {len(a)} packets at {rate(a):.2f} Mbit/s, rtmpt {len(b)} packets at {rate(b):.2f} Mbit/s")
lag = max(a) - max(b)
print(f"RTMPT player's last packet is {lag:+.3f} s of media behind the RTMP player's"
      f" ({'keeps up' if lag < 0.5 and len(b) >= 0.98 * len(a) else 'FALLS BEHIND'})")
PY
