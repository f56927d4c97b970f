"""Both Distribution versions, started explicitly: for tests that need one of them.

The registry-facing suite runs twice (``make test``: the second pass sets
``REGPRUNE_REGISTRY_BIN`` to 3.x), but a test about a version difference must know
which server it talks to, whatever pass it runs in.  ``binary_for(2)`` is the 2.x
``registry`` / ``docker-registry`` on ``PATH``; ``binary_for(3)`` is
``$REGPRUNE_REGISTRY3_BIN``, else ``../shared/bin/registry-3.1.1`` from the project
root.  A missing one fails the test: nothing skips for want of a server.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regprune.testing import ImagePusher, RegistryServer
from regprune.testing.prerequisites import BINARY_ENV, BINARY_NAMES

ROOT = Path(__file__).resolve().parent.parent
REGISTRY3_ENV = "REGPRUNE_REGISTRY3_BIN"
REGISTRY3_DEFAULT = ROOT / ".." / "shared" / "bin" / "registry-3.1.1"


def _major(binary: str) -> int | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except OSError:
        return None
    for word in out.split():
        digits = word.lstrip("v").split(".")[0]
        if digits.isdigit() and "." in word:
            return int(digits)
    return None


@functools.cache
def binary_for(major: int) -> str:
    """The path of a Distribution ``major``.x binary; ``pytest.fail`` saying how to get one."""
    if major == 3:
        candidates = [os.environ.get(REGISTRY3_ENV) or str(REGISTRY3_DEFAULT)]
    else:
        candidates = [os.environ.get(BINARY_ENV, ""), *BINARY_NAMES]
    for candidate in candidates:
        found = shutil.which(candidate) if candidate else None
        if found and _major(found) == major:
            return os.path.abspath(found)
    hint = (
        f"set {REGISTRY3_ENV} to a Distribution 3.x registry binary"
        if major == 3
        else "install Distribution 2.8 (`apt-get install docker-registry`)"
    )
    pytest.fail(f"no Distribution {major}.x registry binary found: {hint}")


def registry_starter(tmp_path: Path) -> Iterator[Any]:
    """``start(major, **RegistryServer_kwargs) -> RegistryServer``; every server is
    stopped when the generator closes (the ``start_registry`` fixture of conftest)."""
    servers: list[RegistryServer] = []

    def start(major: int, **kwargs: Any) -> RegistryServer:
        kwargs.setdefault("delete_enabled", True)
        root = tmp_path / f"registry{major}-{len(servers)}"
        server = RegistryServer(root, binary=binary_for(major), **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()


def pusher_for(server: RegistryServer) -> ImagePusher:
    """An ImagePusher for ``server`` (close it, or use it as a context manager)."""
    return ImagePusher(server.url)
