#!/usr/bin/env bash
# Refreshes the browser players the gateway's player page embeds (src/web/page.rs):
# mpegts.js (HTTP-FLV, WS-FLV) and hls.js (LL-HLS), fetched from the npm registry with
# `npm pack` at the pinned versions, checked against the pinned sha256 of each file, and copied
# with their licence texts into assets/player/vendor/. The copies are committed, so building the
# gateway needs no npm; run this only to check them or after changing a pin (then update the
# sums below from the script's error message, read the release notes, and commit the result).
#
#   scripts/vendor-player-js.sh           # fetch, verify, copy
#   scripts/vendor-player-js.sh --check   # fetch, verify, and compare with assets/player/vendor/
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/assets/player/vendor"

MPEGTS_VERSION=1.8.2
HLS_VERSION=1.7.4
# "package file sha256 target" per vendored file.
FILES=(
    "mpegts.js dist/mpegts.js bda31748736a69cb610c2edf4623e633f1f4f47b5bda83668c8d287e51b0c3a8 mpegts.js"
    "mpegts.js dist/mpegts.js.LICENSE.txt - mpegts.js.LICENSE.txt"
    "mpegts.js LICENSE - LICENSE.mpegts.js.txt"
    "hls.js dist/hls.min.js cfc70cc9e9fc63d071919e087670abc760c8fd1bc889b88588026e4d22193bbe hls.min.js"
    "hls.js LICENSE - LICENSE.hls.js.txt"
)

check=false
[[ "${1:-}" == "--check" ]] && check=true

command -v npm >/dev/null || { echo "vendor-player-js: npm is needed (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for spec in "mpegts.js@$MPEGTS_VERSION" "hls.js@$HLS_VERSION"; do
    name="${spec%@*}"
    echo "vendor-player-js: npm pack $spec"
    (cd "$tmp" && npm pack --silent --loglevel=error "$spec" >"$name.tgz.name")
    mkdir -p "$tmp/$name"
    tar -xzf "$tmp/$(cat "$tmp/$name.tgz.name")" -C "$tmp/$name"
    license="$(cd "$tmp/$name/package" && node -p 'require("./package.json").license')"
    if [[ "$license" != "Apache-2.0" ]]; then
        echo "vendor-player-js: $spec is licensed $license, not Apache-2.0: check before vendoring" >&2
        exit 1
    fi
done

mkdir -p "$out"
status=0
for entry in "${FILES[@]}"; do
    read -r pkg file sum target <<<"$entry"
    src="$tmp/$pkg/package/$file"
    got="$(sha256sum "$src" | cut -d' ' -f1)"
    if [[ "$sum" != "-" && "$got" != "$sum" ]]; then
        echo "vendor-player-js: $pkg/$file has sha256 $got, pinned $sum" >&2
        exit 1
    fi
    if $check; then
        if ! cmp -s "$src" "$out/$target"; then
            echo "vendor-player-js: assets/player/vendor/$target differs from $pkg/$file" >&2
            status=1
        fi
    else
        cp "$src" "$out/$target"
    fi
done
if $check; then
    [[ $status -eq 0 ]] && echo "vendor-player-js: assets/player/vendor/ matches mpegts.js $MPEGTS_VERSION and hls.js $HLS_VERSION"
    exit $status
fi
echo "vendor-player-js: mpegts.js $MPEGTS_VERSION and hls.js $HLS_VERSION copied into assets/player/vendor/"
