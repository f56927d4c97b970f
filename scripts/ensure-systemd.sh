#!/usr/bin/env bash
# Make sure `systemd-analyze` is available: tests/test_deploy.py verifies the
# systemd recipe in deploy/systemd/ with it.
#
# When it is missing and we are root, installs Debian's systemd package (only its
# files are needed: nothing is started, the tests only run `systemd-analyze verify`);
# otherwise says what to install and exits 1.
set -euo pipefail

if found="$(command -v systemd-analyze)"; then
    echo "systemd-analyze: $found"
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    cat >&2 <<'MSG'
systemd-analyze not found; the tests verify deploy/systemd/ with it.
On Debian/Ubuntu:  sudo apt-get install systemd
MSG
    exit 1
fi

echo "Installing Debian's systemd package (for systemd-analyze)..."
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" systemd

found="$(command -v systemd-analyze)" || {
    echo "systemd installed but no systemd-analyze on PATH" >&2
    exit 1
}
echo "systemd-analyze: $found ($("$found" --version | head -n 1))"
