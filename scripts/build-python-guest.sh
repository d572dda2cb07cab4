#!/usr/bin/env bash
# Builds a Python guest (default guests/python/stream-gate) with a pinned componentize-py in
# target/py-venv and prints the path of the component. The test harness and check-python-guest.sh
# both build through here.
#
# componentize-py's output is not byte-reproducible, so a build is kept under target/py-guest/,
# named by the hash of its inputs (the guest's .py files, wit/, the componentize-py version): an
# unchanged guest is not rebuilt and keeps hitting the gateway's compile cache (keyed by SHA-256).
# Usage: scripts/build-python-guest.sh [GUEST_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
guest=$(cd "${1:-guests/python/stream-gate}" && pwd)
version=0.25.1
venv=$root/target/py-venv
out_dir=$root/target/py-guest
mkdir -p "$out_dir"

# One build at a time (parallel test binaries, a concurrent check script).
exec 9>"$out_dir/.lock"
flock 9

if [[ ! -x $venv/bin/componentize-py ]] || ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q " $version"; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        # A fresh Debian has python3 but not always its venv module.
        echo "build-python-guest: python3 venv/ensurepip missing; running install-test-deps.sh" >&2
        scripts/install-test-deps.sh >&2
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$version" >&2
fi

key=$( { echo "componentize-py $version"; (cd "$guest" && find . -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum); (cd "$root/wit" && find . -name '*.wit' | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-16)
name=$(basename "$guest")
out=$out_dir/$name-$key.wasm
if [[ ! -s $out ]]; then
    tmp=$out.partial
    (cd "$guest" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/componentize-py" -d "$root/wit" -w app \
        componentize app -o "$tmp" >&2)
    mv "$tmp" "$out"
    # Older builds of the same guest are dead weight (18 MB each).
    find "$out_dir" -name "$name-*.wasm" ! -name "$(basename "$out")" -delete
fi
echo "$out"
