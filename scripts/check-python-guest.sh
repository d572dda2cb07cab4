#!/usr/bin/env bash
# Builds the Python sample guest (guests/python/stream-gate) through scripts/build-python-guest.sh
# (the same build tests/apps_python.rs uses) and checks it end to end against the real gateway
# binary with ffmpeg: an allowed stream key publishes, an unknown one is refused with the guest's
# reason. `cargo test --release` covers more of it (tests/apps_python.rs); this checks the binary.
# Usage: scripts/check-python-guest.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
work=$(mktemp -d)
trap 'kill "${gw:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/apps/gate"
cp "$(scripts/build-python-guest.sh)" "$work/apps/gate/app.wasm"
cat > "$work/apps/gate/app.toml" <<'TOML'
[settings]
keys = ["cam1"]
[limits]
# CPython's start-up in the guest takes a few hundred ms.
deadline_ms = 1000
memory_mib = 128
TOML
# The same build `cargo test --release` makes (features unified with the dev-dependencies).
cargo test --release --no-run -q
scripts/install-test-deps.sh >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The compile cache the tests use: a warm run does not recompile the 18 MB component.
printf '[apps]\ncache_dir = "%s"\n' "$root/target/wasm-cache" > "$work/wasmgate.toml"
RUST_LOG=info target/release/wasmgate --config "$work/wasmgate.toml" --no-admin \
    --rtmp "127.0.0.1:$port" --apps "$work/apps" \
    >"$work/gw.log" 2>&1 &
gw=$!
for _ in $(seq 1 150); do grep -qs "RTMP listening" "$work/gw.log" && break; sleep 1; done
grep -q "RTMP listening" "$work/gw.log" || { cat "$work/gw.log"; exit 1; }
fixture=target/test-fixtures/av-60s.flv
[[ -f $fixture ]] || fixture=$(ls target/test-fixtures/*.flv | head -1)
ffmpeg -nostdin -hide_banner -loglevel error -re -i "$fixture" -t 3 -c copy -f flv \
    "rtmp://127.0.0.1:$port/gate/cam1"
echo "python guest: allowed key published"
if ffmpeg -nostdin -hide_banner -loglevel error -re -i "$fixture" -t 3 -c copy -f flv \
    "rtmp://127.0.0.1:$port/gate/nope" 2>"$work/denied.txt"; then
    echo "python guest: unknown key was NOT refused" >&2
    exit 1
fi
grep -q "Unknown stream key nope." "$work/denied.txt" || { cat "$work/denied.txt"; exit 1; }
echo "python guest: unknown key refused with the guest's reason"
