#!/usr/bin/env bash
# Benchmarks the Wasm application hooks: connect latency with and without an on_connect hook,
# hook calls per second, and per guest language (Rust and JavaScript token-auth; Python too with
# BENCH_APPS_PYTHON=1) the cold start, memory per instance and cost of one hook call.
# Usage: scripts/bench-apps.sh [CONNECTS]   (the JS guest needs node >= 20.19 and npm; see
# scripts/build-js-guest.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
RUST_LOG=${RUST_LOG:-warn} cargo run --release --example bench_apps -- "${1:-300}"
