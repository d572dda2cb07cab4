# Sourced by the install-*-deps.sh scripts: `apt_install TAG PACKAGE...` installs Debian packages
# with apt-get (as root, or through `sudo -n`), waiting for a concurrent apt/dpkg run instead of
# failing, and runs `apt-get update` only because something has to be installed. Exits on failure
# with a message prefixed by TAG.

apt_install() {
    local tag=$1
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$tag: missing $* and apt-get is not available; install them by hand" >&2
        exit 1
    fi
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo -n)
        else
            echo "$tag: not root and sudo is not available; cannot install $*" >&2
            exit 1
        fi
    fi
    local opts=(-o DPkg::Lock::Timeout=300)
    echo "$tag: installing $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" update -q
    # Packages with a service (nginx, squid) must not start it: the tests run their own
    # instances on random ports, and a system nginx would hold port 80. policy-rc.d exit 101
    # ("action forbidden") is Debian's switch for that; one that exists already is left alone.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -q --no-install-recommends "$@" || rc=$?
    if [[ -n $made_policy ]]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    return "$rc"
}
