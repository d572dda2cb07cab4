#!/usr/bin/env python3
"""Admin API latency under load (a benchmark script, not a test).

Starts target/release/wasmgate (build it first: cargo build --release) on free ports, has ffmpeg
publish the test fixture and N rtmpdump players play it, then times keep-alive GETs of the
admin endpoints and reports requests/s and p50/p99 latency per endpoint.

Usage: scripts/bench-admin.py [--players 20] [--requests 500]
"""
import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--players", type=int, default=20)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()

    fixture = os.path.join(ROOT, "target/test-fixtures")
    flv = [f for f in os.listdir(fixture) if f.endswith(".flv")] if os.path.isdir(fixture) else []
    if not flv:
        sys.exit("no fixture FLV in target/test-fixtures (run cargo test --release --test e2e_live once)")
    flv = os.path.join(fixture, sorted(flv, key=lambda f: -os.path.getsize(os.path.join(fixture, f)))[0])

    rtmp, admin = free_port(), free_port()
    gw = subprocess.Popen(
        [os.path.join(ROOT, "target/release/wasmgate"), "--rtmp", f"127.0.0.1:{rtmp}", "--admin", f"127.0.0.1:{admin}"],
        stderr=subprocess.DEVNULL,
    )
    procs = []
    try:
        time.sleep(0.5)
        url = f"rtmp://127.0.0.1:{rtmp}/live/bench"
        procs.append(subprocess.Popen(
            ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", flv, "-c", "copy", "-f", "flv", url],
            stdin=subprocess.DEVNULL))
        time.sleep(1.5)
        for _ in range(args.players):
            procs.append(subprocess.Popen(["rtmpdump", "-q", "-v", "-r", url, "-o", "/dev/null"],
                                          stderr=subprocess.DEVNULL))
        time.sleep(3)
        conn = http.client.HTTPConnection("127.0.0.1", admin)
        clock = os.sysconf("SC_CLK_TCK")

        def cpu():
            fields = open(f"/proc/{gw.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / clock

        print(f"{args.players} players + 1 publisher, {args.requests} keep-alive requests per endpoint")
        for path in ["/api/v1/server", "/api/v1/clients", "/api/v1/streams", "/metrics"]:
            lat = []
            c0, t0 = cpu(), time.perf_counter()
            for _ in range(args.requests):
                s = time.perf_counter()
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                lat.append(time.perf_counter() - s)
                assert r.status == 200, (path, r.status, body[:200])
            wall, used = time.perf_counter() - t0, cpu() - c0
            lat.sort()
            print(f"{path:18} {args.requests / wall:7.0f} req/s  p50 {statistics.median(lat) * 1e3:6.2f} ms"
                  f"  p99 {lat[int(len(lat) * 0.99) - 1] * 1e3:6.2f} ms  body {len(body):6} B"
                  f"  gateway CPU {used * 1e3 / args.requests:5.2f} ms/req (incl. media)")
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        gw.send_signal(signal.SIGTERM)
        gw.wait()


if __name__ == "__main__":
    main()
