#!/usr/bin/env bash
# Make sure `skopeo` is available: the test kit's pull check (regprune.testing.integrity)
# copies every image with it, as a client independent of regprune.
#
# Looks where regprune.testing.integrity.find_skopeo() looks: $REGPRUNE_SKOPEO_BIN,
# then `skopeo` on PATH. When none is found and we are root, installs Debian's skopeo
# package; otherwise says what to install and exits 1. Idempotent.
set -euo pipefail

if [ -n "${REGPRUNE_SKOPEO_BIN:-}" ]; then
    if found="$(command -v "$REGPRUNE_SKOPEO_BIN")"; then
        echo "skopeo: $found (REGPRUNE_SKOPEO_BIN)"
        exit 0
    fi
    echo "REGPRUNE_SKOPEO_BIN=$REGPRUNE_SKOPEO_BIN is not an executable" >&2
    exit 1
fi

if found="$(command -v skopeo)"; then
    echo "skopeo: $found"
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    cat >&2 <<'MSG'
No skopeo found (looked for $REGPRUNE_SKOPEO_BIN and `skopeo` on PATH); the tests
check that every kept image still pulls with it.
On Debian/Ubuntu:  sudo apt-get install skopeo
Elsewhere: see https://github.com/containers/skopeo/blob/main/install.md
MSG
    exit 1
fi

echo "Installing Debian's skopeo package..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends skopeo </dev/null

found="$(command -v skopeo)" || {
    echo "skopeo installed but not on PATH" >&2
    exit 1
}
echo "skopeo: $found ($("$found" --version 2>/dev/null || true))"
