"""Scans from the registry's storage: a back end that reads files, and deletes through the API.

`StorageReader` answers what a scan asks (catalog, tags, manifests, config blobs,
referrers) from `StorageLayout`, the way the registry itself would answer it over
HTTP, and hands everything else (preflight, deletes, request counts) to the
registry's API back end.  Only scans use it: apply re-checks and deletes through the
API, which stays the source of truth at delete time.

Beyond the API it knows what the API cannot list: every manifest a repository holds,
tagged or not (``revisions``), and when links were written (``tag_links``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from ..errors import ManifestNotFound, RegistryError
from ..mediatypes import OCI_INDEX, OCI_MANIFEST
from ..registry import Manifest, RegistryBackend
from ..registry._answers import Descriptor, parse_manifest
from ..registry._digests import hexdigest, is_digest
from ..registry._text import load_json
from ._layout import Link, StorageLayout

__all__ = ["StorageReader"]

SAMPLE = 8  # tags asked about through the API to check the storage is this registry's
T = TypeVar("T")
R = TypeVar("R")


class StorageReader:
    """A `RegistryBackend` whose reads come from the storage and whose writes go to ``api``."""

    def __init__(self, layout: StorageLayout, api: RegistryBackend) -> None:
        self.layout = layout
        self.api = api
        self._subjects: dict[str, dict[str, list[Descriptor]]] = {}
        # The scan's own listing of each repository's revisions, for the referrers index
        # built right after it (listing them twice was a tenth of a storage plan).
        self._listed: dict[str, dict[str, Link]] = {}
        self._lock = threading.Lock()

    # -- what the API back end keeps doing ---------------------------------------------

    @property
    def request_count(self) -> int:
        return self.api.request_count

    @property
    def requests_by_method(self) -> Mapping[str, int]:
        return self.api.requests_by_method

    def preflight(self, repositories: Iterable[str]) -> None:
        self.api.preflight(repositories)

    def delete_manifest(self, repository: str, digest: str) -> str:
        return self.api.delete_manifest(repository, digest)

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """Through the API: a re-check asks the registry, not the files."""
        return self.api.head_manifest(repository, reference)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        # Files are read faster in one thread than the GIL would let several do it.
        return [fn(item) for item in items]

    def close(self) -> None:
        self.api.close()

    def __getattr__(self, name: str) -> object:
        # The API back end's optional parts (detect_version, delete_tag, ...) stay reachable.
        if name in ("get_manifests", "get_blobs", "referrers") or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.api, name)

    # -- reads, from the storage ---------------------------------------------------------

    def catalog(self) -> list[str]:
        return self.layout.repositories()

    def tags(self, repository: str) -> list[str]:
        return sorted(self.layout.tags(repository))

    def tags_or_none(self, repository: str) -> list[str] | None:
        """Every tag of a repository; None when the storage holds no such repository."""
        if not self.layout.has_repository(repository):
            return None
        return self.tags(repository)

    def tag_links(self, repository: str) -> dict[str, Link]:
        """tag -> its current link (the digest, and when the tag last moved)."""
        return self.layout.tags(repository)

    def revisions(self, repository: str) -> dict[str, Link]:
        """digest -> revision link of every manifest the repository holds, tagged or not."""
        listed = self.layout.revisions(repository)
        with self._lock:
            if repository not in self._subjects:
                self._listed[repository] = listed
        return listed

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """A manifest by tag or digest, as the registry would serve it, digest verified."""
        if is_digest(reference):
            link = self.layout.revision_link(repository, reference)
        else:
            link = self.layout.tag_link(repository, reference)
            if link is not None and self.layout.revision_link(repository, link.digest) is None:
                link = None  # a tag whose manifest is gone: the registry answers 404
        if link is None:
            raise ManifestNotFound(
                f"manifest {repository}:{reference} is not in the storage", status=404
            )
        return self._read_manifest(repository, reference, link.digest)

    def get_manifests(self, references: Sequence[tuple[str, str]]) -> list[Manifest | None]:
        """``get_manifest`` for many ``(repository, reference)``; None for each that is not there."""
        found: list[Manifest | None] = []
        for repository, reference in references:
            try:
                found.append(self.get_manifest(repository, reference))
            except ManifestNotFound:
                found.append(None)
        return found

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A blob the repository links, its digest verified; 404 as the registry would."""
        body = self._blob_or_none(repository, digest)
        if body is None:
            raise RegistryError(f"blob {repository}@{digest} is not in the storage", status=404)
        return body

    def get_blobs(self, references: Sequence[tuple[str, str]]) -> list[bytes | None]:
        return [self._blob_or_none(repository, digest) for repository, digest in references]

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests of the repository whose ``subject`` is ``digest``, from its revisions.

        The storage serves this on every version: 2.x registries keep such manifests
        too, they just cannot list them.  Each manifest is read once per run.
        """
        with self._lock:
            subjects = self._subjects.get(repository)
            if subjects is None:
                subjects = self._subjects[repository] = self._index_subjects(repository)
        listed = subjects.get(digest, [])
        if artifact_type is not None:
            listed = [d for d in listed if d.artifactType == artifact_type]
        return list(listed)

    # -- agreement with the API -----------------------------------------------------------

    def disagreements(
        self, tags: Sequence[tuple[str, str, str]], *, sample: int = SAMPLE
    ) -> list[str]:
        """Ask the API about a few of the tags the storage gave (``(repository, tag,
        digest)``, spread evenly): one line per tag the API resolves otherwise.  A
        different registry or a stale mount shows at once; it costs ``sample`` HEADs."""
        if not tags:
            return []
        step = max(1, len(tags) // sample)
        picked = list(tags[::step])[:sample]
        answers = [self.api.head_manifest(repository, tag) for repository, tag, _ in picked]
        found: list[str] = []
        for (repository, tag, digest), answer in zip(picked, answers, strict=True):
            if answer != digest:
                via_api = answer[:19] if answer else "missing"
                found.append(
                    f"{repository}:{tag} is {digest[:19]} in the storage, {via_api} through the API"
                )
        if not found:
            return []
        more = f" (and {len(found) - 1} more of {len(picked)} checked)" if len(found) > 1 else ""
        return [
            f"{self.layout.key} and the registry's API disagree: {found[0]}{more}; is it a "
            "different registry's storage, or a stale mount? The plan was made from the "
            "storage; apply re-checks every item through the API and skips what changed"
        ]

    # -- helpers -------------------------------------------------------------------------

    def _index_subjects(self, repository: str) -> dict[str, list[Descriptor]]:
        subjects: dict[str, list[Descriptor]] = {}
        listed = self._listed.pop(repository, None)
        if listed is None:
            listed = self.layout.revisions(repository)
        for digest in sorted(listed):
            body = self.layout.read_blob(digest)
            if body is None or b'"subject"' not in body:
                continue  # cheap test first: most manifests have no subject
            try:
                manifest = self._parse(repository, digest, body)
            except RegistryError:
                continue
            document = parse_manifest(manifest.data, f"manifest {digest}")
            if document.subject is None:
                continue
            subjects.setdefault(document.subject.digest, []).append(
                Descriptor(
                    mediaType=manifest.media_type or None,
                    digest=digest,
                    size=len(body),
                    artifactType=document.artifactType
                    or (document.config.mediaType if document.config else None),
                    annotations=document.annotations,
                )
            )
        return subjects

    def _read_manifest(self, repository: str, reference: str, digest: str) -> Manifest:
        body = self.layout.read_blob(digest)
        if body is None:
            raise ManifestNotFound(
                f"manifest {repository}@{digest} has a link but no content in the storage",
                status=404,
            )
        return self._parse(repository, digest, body)

    def _parse(self, repository: str, digest: str, body: bytes) -> Manifest:
        where = f"manifest {repository}@{digest} in the storage"
        if hexdigest(digest.partition(":")[0], body) != digest:
            raise RegistryError(f"{where} does not match its digest (a damaged file?)")
        try:
            data = load_json(body)
        except ValueError:
            raise RegistryError(f"{where} is not JSON", code="MANIFEST_INVALID") from None
        document = parse_manifest(data, where)
        # The registry serves a manifest without a mediaType field as OCI (by its shape).
        media_type = document.mediaType or (
            OCI_INDEX if document.manifests is not None else OCI_MANIFEST
        )
        return Manifest(digest=digest, media_type=media_type, content=body, data=data)

    def _blob_or_none(self, repository: str, digest: str) -> bytes | None:
        if not is_digest(digest) or not self.layout.has_layer(repository, digest):
            return None
        body = self.layout.read_blob(digest)
        if body is None:
            return None
        if hexdigest(digest.partition(":")[0], body) != digest:
            raise RegistryError(
                f"blob {repository}@{digest} in the storage does not match its digest (a damaged file?)"
            )
        return body
