"""Distribution's filesystem storage, read-only: where tags, revisions and blobs live.

The layout is the same on 2.x and 3.x, under the filesystem driver's ``rootdirectory``::

    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data

A link file holds one digest (``sha256:<hex>``); its modification time is when it
was written: a revision link when the manifest was first pushed to the repository,
a tag's ``current/link`` when the tag last moved.  Nothing here ever writes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError
from ..paths import PathProblem, path_kind, shown_path
from ..repository_names import REPOSITORY_NAME

__all__ = ["Link", "StorageLayout", "StorageUnreadable"]

V2 = Path("docker", "registry", "v2")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{64}")
# Distribution's repository name grammar: anything else is not a repository here (and
# never a path that climbs out of the storage root).
_REPOSITORY = REPOSITORY_NAME
_LINK_LIMIT = 256  # a link holds ~71 bytes; anything longer is not a link


class StorageUnreadable(ConfigError):
    """The configured storage is not a Distribution storage root, or cannot be read."""


@dataclass(frozen=True, slots=True)
class Link:
    """One link file: the digest it names and when it was written (UTC)."""

    digest: str
    written: datetime


def _mtime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _read_to_end(fd: int, size: int) -> bytes:
    """The rest of an open file whose size was ``size``: one read when it still is."""
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    chunks = [data]  # a short read, or a file that grew: read until the end
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a directory; False, not an OSError, when it cannot be told."""
    try:
        return path_kind(path) == "directory"
    except PathProblem:
        return False


class StorageLayout:
    """The storage root of one registry (``rootdirectory``), read through plain files.

    Construction checks the root and raises `StorageUnreadable` with what to fix;
    ``key`` names the config key for that message (``registry.NAME.storage``).
    """

    def __init__(self, root: str | os.PathLike[str], *, key: str = "storage") -> None:
        self.root = Path(root).expanduser()
        self.key = key
        self.v2 = self.root / V2
        # Paths below are built as strings: a scan reads several files per tag, and
        # pathlib's joins were the largest part of a storage plan's time.
        self._repositories = os.path.join(self.v2, "repositories")
        self._blobs = os.path.join(self.v2, "blobs")
        self._check()

    def _check(self) -> None:
        where = f"{self.key} = {shown_path(self.root)!r}"
        try:
            kind = path_kind(self.root)
        except PathProblem as exc:
            raise StorageUnreadable(
                f"{where}: {exc}; set it to the registry's storage rootdirectory"
            ) from None
        if kind == "missing":
            raise StorageUnreadable(
                f"{where}: no such directory; set it to the registry's storage rootdirectory"
            )
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageUnreadable(
                f"{where}: not readable by this user; grant read access (a read-only mount is enough)"
            )
        if not _is_dir(self.v2 / "repositories") and not _is_dir(self.v2 / "blobs"):
            if _is_dir(self.root / "repositories") or _is_dir(self.root / "blobs"):
                hint = f"; it looks like the v2 directory itself: use {str(self.root.parents[2])!r}"
            else:
                hint = "; set it to the directory the filesystem driver's rootdirectory names"
            raise StorageUnreadable(
                f"{where}: not a Distribution storage root (no {V2}/repositories or {V2}/blobs){hint}"
            )
        for part in ("repositories", "blobs"):
            path = self.v2 / part
            if _is_dir(path) and not os.access(path, os.R_OK | os.X_OK):
                raise StorageUnreadable(
                    f"{where}: {V2 / part} is not readable by this user; grant read access"
                )

    # -- repositories -------------------------------------------------------------------

    def repository_dir(self, repository: str) -> Path:
        """The repository's directory; a name outside Distribution's grammar gets one
        that does not exist (so it holds nothing), never a path outside the root."""
        return Path(self._repository(repository))

    def _repository(self, repository: str) -> str:
        if not _REPOSITORY.fullmatch(repository):
            return f"{self._repositories}/_invalid_"
        return f"{self._repositories}/{repository}"

    def repositories(self) -> list[str]:
        """Every repository name (nested names joined with ``/``), sorted.

        A directory is a repository when it holds ``_manifests`` or ``_layers``; a
        repository may hold other repositories (``a`` and ``a/b``).  Names whose
        components start with ``_`` are the registry's own and never repositories.
        """
        found: list[str] = []
        top = self.v2 / "repositories"
        if not top.is_dir():
            return found
        stack = [("", top)]
        while stack:
            prefix, path = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError as exc:
                raise self._unreadable(path, exc) from exc
            names = {entry.name for entry in entries}
            if prefix and ("_manifests" in names or "_layers" in names):
                found.append(prefix)
            for entry in entries:
                if not entry.name.startswith("_") and entry.is_dir(follow_symlinks=False):
                    stack.append(
                        (f"{prefix}/{entry.name}" if prefix else entry.name, Path(entry.path))
                    )
        return sorted(found)

    def has_repository(self, repository: str) -> bool:
        """Whether ``repositories()`` lists this name (without walking the whole tree)."""
        if any(part.startswith("_") for part in repository.split("/")):
            return False  # the registry's own directories, never repositories
        path = self.repository_dir(repository)
        return (path / "_manifests").is_dir() or (path / "_layers").is_dir()

    def tags(self, repository: str) -> dict[str, Link]:
        """tag -> its ``current/link``; a tag directory without one (half deleted) is left out."""
        base = f"{self._repository(repository)}/_manifests/tags"
        result: dict[str, Link] = {}
        for name in self._names(base):
            link = self._read_link(f"{base}/{name}/current/link")
            if link is not None:
                result[name] = link
        return result

    def tag_link(self, repository: str, tag: str) -> Link | None:
        """The tag's ``current/link``, or None when the tag does not exist."""
        if "/" in tag or tag in ("", ".", ".."):
            return None
        return self._read_link(f"{self._repository(repository)}/_manifests/tags/{tag}/current/link")

    def revision_link(self, repository: str, digest: str) -> Link | None:
        """The revision link of ``digest`` in the repository, or None when it holds no such manifest."""
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or not _HEX.fullmatch(hex_digest):
            return None
        link = self._read_link(
            f"{self._repository(repository)}/_manifests/revisions/sha256/{hex_digest}/link"
        )
        return link if link is not None and link.digest == digest else None

    def has_layer(self, repository: str, digest: str) -> bool:
        """Whether the repository links the blob (the registry serves a blob only then)."""
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or not _HEX.fullmatch(hex_digest):
            return False
        path = f"{self._repository(repository)}/_layers/sha256/{hex_digest}/link"
        return self._read_link(path) is not None

    def revisions(self, repository: str) -> dict[str, Link]:
        """digest -> its revision link: every manifest the repository holds, tagged or not."""
        base = f"{self._repository(repository)}/_manifests/revisions/sha256"
        result: dict[str, Link] = {}
        for hex_digest in self._names(base):
            if _HEX.fullmatch(hex_digest):
                link = self._read_link(f"{base}/{hex_digest}/link")
                if link is not None and link.digest == f"sha256:{hex_digest}":
                    result[link.digest] = link
        return result

    def layer_links(self, repository: str) -> dict[str, Link]:
        """digest -> its ``_layers`` link: every blob the repository may serve."""
        base = f"{self._repository(repository)}/_layers/sha256"
        result: dict[str, Link] = {}
        for hex_digest in self._names(base):
            if _HEX.fullmatch(hex_digest):
                link = self._read_link(f"{base}/{hex_digest}/link")
                if link is not None:
                    result[link.digest] = link
        return result

    # -- blobs --------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return Path(self._blob_file(digest))

    def _blob_file(self, digest: str) -> str:
        algorithm, _, hex_digest = digest.partition(":")
        return f"{self._blobs}/{algorithm}/{hex_digest[:2]}/{hex_digest}/data"

    def read_blob(self, digest: str) -> bytes | None:
        """The blob's bytes, or None when it is not stored (a GC'd or never-pushed blob)."""
        if not _DIGEST.fullmatch(digest):
            return None
        path = self._blob_file(digest)
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                return _read_to_end(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(path, exc) from exc

    def blob_size(self, digest: str) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""
        if not _DIGEST.fullmatch(digest):
            return None
        path = self._blob_file(digest)
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(path, exc) from exc

    def blobs(self) -> Iterator[tuple[str, int]]:
        """(digest, size) of every blob in the storage: what a GC sweep looks at."""
        base = f"{self._blobs}/sha256"
        for prefix in self._names(base):
            for hex_digest in self._names(f"{base}/{prefix}"):
                if not _HEX.fullmatch(hex_digest) or hex_digest[:2] != prefix:
                    continue
                try:
                    info = os.stat(f"{base}/{prefix}/{hex_digest}/data")
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise self._unreadable(f"{base}/{prefix}/{hex_digest}", exc) from exc
                if stat.S_ISREG(info.st_mode):
                    yield f"sha256:{hex_digest}", info.st_size

    # -- helpers ------------------------------------------------------------------------

    def _names(self, path: str | Path) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(path) if entry.is_dir()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._unreadable(path, exc) from exc

    def _read_link(self, path: str) -> Link | None:
        """The link at ``path``, or None when it is missing or does not hold a digest."""
        # os.open and os.read, not open(): no buffered file object per link (a scan
        # reads one per tag and revision; this took a third off each read).
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                info = os.fstat(fd)
                raw = os.read(fd, _LINK_LIMIT)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(path, exc) from exc
        text = raw.decode("ascii", errors="replace").strip()
        if not _DIGEST.fullmatch(text):
            return None
        return Link(text, _mtime(info.st_mtime))

    def _unreadable(self, path: str | Path, exc: OSError) -> StorageUnreadable:
        reason = exc.strerror or type(exc).__name__
        path = Path(path)
        return StorageUnreadable(
            f"{self.key} = {str(self.root)!r}: cannot read {path.relative_to(self.root) if path.is_relative_to(self.root) else path} ({reason}); grant read access"
        )
