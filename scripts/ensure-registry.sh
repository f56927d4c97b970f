#!/usr/bin/env bash
# Make sure a CNCF Distribution registry binary is available for the test fixtures.
#
# Looks where regprune.testing.find_registry_binary() looks: $REGPRUNE_REGISTRY_BIN,
# then `registry`, then `docker-registry` on PATH. When none is found and we are
# root, installs Debian's docker-registry package without starting its service;
# otherwise says what to install and exits 1.
set -euo pipefail

reinstall=""
case "${1:-}" in
    --reinstall) reinstall=1 ;;  # force the apt-get path (to check it), even if one is found
    "") ;;
    *) echo "usage: $0 [--reinstall]" >&2; exit 2 ;;
esac

if [ -n "${REGPRUNE_REGISTRY_BIN:-}" ]; then
    if found="$(command -v "$REGPRUNE_REGISTRY_BIN")"; then
        echo "registry binary: $found (REGPRUNE_REGISTRY_BIN)"
        exit 0
    fi
    echo "REGPRUNE_REGISTRY_BIN=$REGPRUNE_REGISTRY_BIN is not an executable" >&2
    exit 1
fi

find_registry() {
    command -v registry || command -v docker-registry
}

if [ -z "$reinstall" ] && found="$(find_registry)"; then
    echo "registry binary: $found"
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    cat >&2 <<'MSG'
No CNCF Distribution registry binary found (looked for $REGPRUNE_REGISTRY_BIN,
`registry` and `docker-registry` on PATH); the tests start a real one.
On Debian/Ubuntu:  sudo apt-get install docker-registry
Elsewhere: build `registry` from github.com/distribution/distribution (v2.8 or 3.x)
and put it on PATH or point REGPRUNE_REGISTRY_BIN at it.
MSG
    exit 1
fi

echo "Installing Debian's docker-registry package (service start disabled)..."
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" ${reinstall:+--reinstall} docker-registry

# Should a service have started anyway (a host whose policy allowed it), stop it
# through its own init script: the fixtures start registries of their own.
if [ -s /var/run/docker-registry.pid ] && kill -0 "$(cat /var/run/docker-registry.pid)" 2>/dev/null; then
    /etc/init.d/docker-registry stop || true
fi

found="$(find_registry)" || {
    echo "docker-registry installed but no registry binary on PATH" >&2
    exit 1
}
echo "registry binary: $found ($("$found" --version 2>/dev/null || true))"
