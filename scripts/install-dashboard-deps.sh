#!/usr/bin/env bash
# Installs what the dashboard test (tests/admin_dashboard.rs) drives: Debian's chromium, node and
# npm, and playwright-core from tests/dashboard/package-lock.json (`npm ci`, no browser download).
# Idempotent and serialised with flock: a second caller waits, then finds everything present.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/target"
exec 9>"$root/target/.install-dashboard-deps.lock"
flock -w 900 9

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [[ ${#missing[@]} -gt 0 ]]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-dashboard-deps: missing ${missing[*]} and apt-get is not available" >&2
        exit 1
    fi
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo -n)
        else
            echo "install-dashboard-deps: not root and no sudo; cannot install ${missing[*]}" >&2
            exit 1
        fi
    fi
    APT_OPTS=(-o DPkg::Lock::Timeout=300)
    echo "install-dashboard-deps: installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${missing[@]}"
fi

dash="$root/tests/dashboard"
if [[ ! -f "$dash/node_modules/playwright-core/package.json" ]] \
    || [[ "$dash/package-lock.json" -nt "$dash/node_modules/.package-lock.json" ]]; then
    echo "install-dashboard-deps: npm ci in tests/dashboard"
    # playwright-core never downloads browsers; the test uses /usr/bin/chromium.
    (cd "$dash" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install-dashboard-deps: chromium, node and playwright-core present"
