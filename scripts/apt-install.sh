#!/usr/bin/env bash
# Install Debian packages for the test suite without starting any service:
#   scripts/apt-install.sh [--reinstall] PACKAGE...
#
# A package's maintainer scripts may start its service through invoke-rc.d
# (docker-registry starts a registry on :5000). A policy-rc.d answering 101
# ("action forbidden") stops that; Docker images usually ship one already, so
# ours is only added (and removed again afterwards) when there is none.
# Needs root and apt-get; the callers check both and say what to do otherwise.
set -euo pipefail

reinstall=""
if [ "${1:-}" = "--reinstall" ]; then
    reinstall=1
    shift
fi
if [ "$#" = 0 ]; then
    echo "usage: $0 [--reinstall] PACKAGE..." >&2
    exit 2
fi

policy=/usr/sbin/policy-rc.d
own_policy=""
cleanup() {
    if [ -n "$own_policy" ]; then rm -f "$policy"; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# added by regprune scripts/apt-install.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends ${reinstall:+--reinstall} \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "$@" </dev/null
