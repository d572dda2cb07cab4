#!/usr/bin/env bash
# Installs the external tools the end-to-end tests drive: ffmpeg (+ ffprobe), rtmpdump, curl
# (HTTP-FLV responses as a plain HTTP client sees them),
# tinyproxy and squid (the forward proxies the RTMPT tests tunnel through; `tinyproxy-bin` has
# no service), nginx with its RTMP module (reverse proxy in front of the HTTP listener, and
# nginx-rtmp as relay origin/target; the tests run their own instances, never the service), and
# the Rust `wasm32-wasip2` target the sample Wasm guests in guests/ are built for, and python3
# with its venv module (scripts/build-python-guest.sh makes a venv for componentize-py), and node
# with npm (scripts/build-js-guest.sh runs componentize-js; it needs node >= 20.19 and fetches
# that under target/ itself when the distribution's node is older).
# Idempotent: exits immediately when every tool is already on PATH; runs
# `apt-get update` only when something actually has to be installed.
set -euo pipefail
# shellcheck source=apt-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

# command -> Debian package providing it
declare -A PKG_FOR=(
    [ffmpeg]=ffmpeg
    [ffprobe]=ffmpeg
    [rtmpdump]=rtmpdump
    [tinyproxy]=tinyproxy-bin
    [squid]=squid
    [nginx]=nginx-light
    [curl]=curl
)
TOOLS=(ffmpeg ffprobe rtmpdump tinyproxy squid nginx curl)
# nginx-rtmp is a module file, not a command.
NGINX_RTMP=/usr/lib/nginx/modules/ngx_rtmp_module.so

# The guests are built by the tests themselves (tests/apps/mod.rs); they need this target.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        echo "install-test-deps: adding the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2
    fi
else
    echo "install-test-deps: rustup not found; make sure the wasm32-wasip2 target is installed" >&2
fi

missing=()
for tool in "${TOOLS[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        pkg="${PKG_FOR[$tool]}"
        # de-duplicate (ffmpeg provides two tools)
        if [[ " ${missing[*]-} " != *" $pkg "* ]]; then
            missing+=("$pkg")
        fi
    fi
done

[[ -f $NGINX_RTMP ]] || missing+=(libnginx-mod-rtmp)

# Debian splits venv/ensurepip out of python3.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
fi

# The machine image ships Node.js 20 with npm; Debian packages them apart.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-test-deps: ${TOOLS[*]}, nginx-rtmp, python3-venv, node and npm already present"
    exit 0
fi

apt_install install-test-deps "${missing[@]}"

for tool in "${TOOLS[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-test-deps: $tool still missing after installing ${missing[*]}" >&2
        exit 1
    fi
done
if [[ ! -f $NGINX_RTMP ]]; then
    echo "install-test-deps: $NGINX_RTMP still missing after installing ${missing[*]}" >&2
    exit 1
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "install-test-deps: python3 still has no venv/ensurepip after installing ${missing[*]}" >&2
    exit 1
fi
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-test-deps: $tool still missing after installing ${missing[*]}" >&2
        exit 1
    fi
done
echo "install-test-deps: done"
