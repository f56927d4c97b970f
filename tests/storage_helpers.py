"""Helpers for tests of storage-backed scans: a registry's storage, aged on purpose.

Link files' modification times are the push and tag times a storage scan reads; a
test backdates them with ``os.utime`` (what a registry that has run for days holds).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from regprune.testing import RegistryServer

DAY = 86400.0


def repositories_dir(server: RegistryServer) -> Path:
    return Path(server.storage_path) / "docker" / "registry" / "v2" / "repositories"


def age_links(server: RegistryServer, days: float, digests: Iterable[str] | None = None) -> None:
    """Set the mtime of link files to ``days`` ago: every link, or only the revision
    and tag links naming one of ``digests``."""
    stamp = time.time() - days * DAY
    wanted = None if digests is None else set(digests)
    for root, _, files in os.walk(repositories_dir(server)):
        if "link" not in files:
            continue
        path = Path(root) / "link"
        if wanted is None or path.read_text().strip() in wanted:
            os.utime(path, (stamp, stamp))


def storage_options(server: RegistryServer) -> dict[str, str]:
    """``registry_options`` for the testing helpers: scan this server's storage."""
    return {"storage": str(server.storage_path)}
