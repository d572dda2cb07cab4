#!/usr/bin/env bash
# Builds the Python sample guest (guests/python/stream-gate) with componentize-py and checks it
# end to end against the real gateway binary with ffmpeg: an allowed stream key publishes, an
# unknown one is refused with the guest's reason. Kept out of `cargo test` because the cold
# path (pip install, componentize, compiling an 18 MB component) takes about two minutes.
# Usage: scripts/check-python-guest.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
venv=target/py-venv
if [[ ! -x $venv/bin/componentize-py ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q componentize-py==0.25.1
fi
work=$(mktemp -d)
trap 'kill "${gw:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/apps/gate"
(cd guests/python/stream-gate && "$root/$venv/bin/componentize-py" -d "$root/wit" -w app \
    componentize app -o "$work/apps/gate/app.wasm")
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
RUST_LOG=info target/release/wasmgate --rtmp "127.0.0.1:$port" --apps "$work/apps" \
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
