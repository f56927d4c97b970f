#!/usr/bin/env bash
# The second pass of `make test`: every test that starts a real registry, again against
# Distribution 3.x.  The binary comes from $REGPRUNE_REGISTRY3_BIN (.ci/run sets it from
# ../shared/bin), else ../shared/bin/registry-3.1.1 when it is there.  In CI a missing
# 3.x binary is a failure, never a skip; elsewhere this pass says how to run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${REGPRUNE_REGISTRY3_BIN:-../shared/bin/registry-3.1.1}"
if [ ! -x "$bin" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "error: no Distribution 3.x binary at '$bin'; set REGPRUNE_REGISTRY3_BIN to one" >&2
        exit 1
    fi
    echo "note: the Distribution 3.x pass did not run: set REGPRUNE_REGISTRY3_BIN to a 3.x registry binary" >&2
    exit 0
fi
bin="$(realpath "$bin")"  # the fixtures start it from their own temporary directories
echo "== registry-facing tests again, against $("$bin" --version 2>/dev/null | head -1 || echo "$bin")"
REGPRUNE_REGISTRY_BIN="$bin" .venv/bin/pytest -n "${WORKERS:-4}" -m registry -q ${PYTEST_ARGS:-}
