#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints what each one did.
#
#   scripts/fuzz.sh                         # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh chunk session   # chosen targets, 10 min each
#
# This machine has only stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only
# sanitizer flags it needs. Corpora grow in fuzz/corpus/<target> (not in git), seeded from
# fuzz/seeds/<target>. A crashing input is copied to fuzz/regressions/<target>/, where
# `cargo test --test fuzz_regressions` replays it; commit it with the fix. Exit status is
# non-zero when any target found a crash. Not part of CI (bounded, but minutes long).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECS=${FUZZ_SECONDS:-60}
ALL=(handshake chunk amf0 amf3 session config rtmpt shared_object vod)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd "$ROOT/fuzz"
echo "fuzz: building ${TARGETS[*]}"
for t in "${TARGETS[@]}"; do
    cargo fuzz build -O "$t"
done
mkdir -p artifacts
summary=artifacts/summary.txt
: >"$summary"
failed=0
for t in "${TARGETS[@]}"; do
    case $t in
        handshake | chunk | session | rtmpt) max_len=16384 ;;
        *) max_len=4096 ;;
    esac
    mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
    log=artifacts/$t.log
    echo "fuzz: $t for ${SECS}s"
    status=0
    cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        failed=1
        for crash in "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* "artifacts/$t"/leak-*; do
            [ -f "$crash" ] && cp "$crash" "regressions/$t/" && echo "fuzz: $t: saved $crash to regressions/$t/"
        done
        line="$t: FAILED (exit $status) after ${runs:-?} runs; see fuzz/$log"
    else
        line="$t: clean, ${runs:-?} runs in ${SECS}s, coverage ${cov:-?}, corpus $corpus inputs"
    fi
    echo "fuzz: $line"
    echo "$line" >>"$summary"
done
echo "fuzz: summary (fuzz/$summary)"
cat "$summary"
exit $failed
