#!/usr/bin/env bash
# Benchmarks the Wasm application hooks: connect latency with and without an on_connect hook,
# and hook calls per second. Usage: scripts/bench-apps.sh [CONNECTS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
RUST_LOG=${RUST_LOG:-warn} cargo run --release --example bench_apps -- "${1:-300}"
