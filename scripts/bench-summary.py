import json, statistics, sys, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
probes = int(sys.argv[4])
by = {}
for r in rows:
    server, kind = r["label"].split()[:2]
    n = r["players"] - (0 if kind == "idle" else probes)
    by.setdefault((kind, n, server), []).append(r)
def med(rs, k):
    return statistics.median(r[k] for r in rs)
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
rounds = max((len(v) for k, v in by.items() if k[0] in ("fanout", "vod")), default=0)
vod = any(k[0] == "vod" for k in by)
source = ("played from one FLV file by every player from 0 (`play(name, 0)`; wasmgate `vod_dir`, "
          "nginx-rtmp `play` directory)" if vod else
          "published by `ffmpeg -re -stream_loop -1 -c copy`")
print(f"Machine: {os.cpu_count()} cores ({cpu}), load tool on the same machine. Stream: {sys.argv[2]}bit/s "
      f"CBR H.264/AAC, 2 s GOP, {source}; {sys.argv[3]} s windows; "
      f"medians of {rounds} alternating rounds; nginx-rtmp: one worker, chunk_size 4096.\n")
print("| players | server | CPU ms per MB | vs nginx | server CPU % | RSS MB | drops % | stalls | lateness p50 / p99 ms | starving players |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for kind in ("fanout", "vod", "max"):
    for n in sorted({k[1] for k in by if k[0] == kind}):
        ngx = by.get((kind, n, "nginx"))
        for server in ("wasmgate", "nginx"):
            rs = by.get((kind, n, server))
            if not rs:
                continue
            c = med(rs, "cpu_ms_per_mb")
            ratio = f"{c / med(ngx, 'cpu_ms_per_mb'):.2f}x" if ngx and med(ngx, "cpu_ms_per_mb") else "-"
            pct = med(rs, "server_cpu_ms") / (med(rs, "seconds") * 10)
            print(f"| {n}{' (max)' if kind == 'max' else ''} | {server} | {c:.3f} | {ratio} | {pct:.1f} | "
                  f"{med(rs, 'server_rss_kb')/1024:.1f} | {med(rs, 'drop_pct'):.3f} | {med(rs, 'stalls'):.0f} | "
                  f"{med(rs, 'lateness_p50_ms'):.0f} / {med(rs, 'lateness_p99_ms'):.0f} | {med(rs, 'starving'):.0f} |")
idle = [(k, v) for k, v in by.items() if k[0] == "idle"]
if idle:
    print("\n| idle connections | server | RSS before MB | RSS after MB | KB per connection |")
    print("|---:|---|---:|---:|---:|")
    for (kind, n, server), rs in sorted(idle):
        before, after = med(rs, "server_rss_before_kb"), med(rs, "server_rss_kb")
        print(f"| {n} | {server} | {before/1024:.1f} | {after/1024:.1f} | {(after-before)/max(n,1):.1f} |")
