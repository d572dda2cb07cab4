#!/usr/bin/env bash
# Installs what the browser tests (tests/admin_dashboard.rs, tests/web_player.rs) drive: Debian's
# chromium, node and npm, playwright-core from tests/dashboard/package-lock.json (`npm ci`, no
# browser download), and the DejaVu fonts ffmpeg's drawtext burns the player test's clock with.
# Idempotent and serialised with flock: a second caller waits, then finds everything present.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/target"
exec 9>"$root/target/.install-dashboard-deps.lock"
flock -w 900 9
# shellcheck source=apt-install.sh
source "$root/scripts/apt-install.sh"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ]] || missing+=(fonts-dejavu-core)

if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install install-dashboard-deps "${missing[@]}"
fi

dash="$root/tests/dashboard"
if [[ ! -f "$dash/node_modules/playwright-core/package.json" ]] \
    || [[ "$dash/package-lock.json" -nt "$dash/node_modules/.package-lock.json" ]]; then
    echo "install-dashboard-deps: npm ci in tests/dashboard"
    # playwright-core never downloads browsers; the test uses /usr/bin/chromium.
    (cd "$dash" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install-dashboard-deps: chromium, node, playwright-core and fonts present"
