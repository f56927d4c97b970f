"""Push synthetic images, indexes and cosign-style artifacts through the Registry HTTP API.

No docker is needed: blobs are made of random-ish bytes, configs carry whatever
``created`` date and labels a test asks for, and manifests are built by hand in the
Docker v2 or OCI formats. Everything goes through one shared ``httpx.Client``, which
is safe to use from several threads (see :meth:`ImagePusher.push_many`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx

from ..mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
)
from .artifacts import COSIGN_LAYER_TYPES, cosign_payload
from .registry_api import PushError, RegistryApi

__all__ = ["ImagePusher", "PushError", "PushedImage"]

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
CREATED_ANNOTATION = "org.opencontainers.image.created"

Format = Literal["oci", "docker"]


class _Now:
    """Sentinel default for ``created``: the time of the push."""

    def __repr__(self) -> str:
        return "<now>"


NOW: Final = _Now()


@dataclass(frozen=True)
class PushedImage:
    """What was pushed: enough for a test to predict what regprune must find.

    ``size`` counts manifest and blob bytes (for an index: its own bytes plus every
    child's size). ``created`` is the config's ``created`` string as written (None when
    omitted). ``manifest`` is the exact manifest body (left out of repr and equality).
    """

    repository: str
    digest: str
    media_type: str
    tags: tuple[str, ...]
    size: int
    config_digest: str | None
    layer_digests: tuple[str, ...]
    children: tuple[PushedImage, ...] = ()
    created: str | None = None
    platform: str | None = None
    manifest: bytes = field(default=b"", repr=False, compare=False)

    @property
    def reference(self) -> str:
        """``repository@digest``."""
        return f"{self.repository}@{self.digest}"

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Config and layer digests of this image and its children."""
        own = ((self.config_digest,) if self.config_digest else ()) + self.layer_digests
        return own + tuple(d for child in self.children for d in child.blob_digests)


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(value: datetime | str) -> str:
    """Format a datetime as RFC 3339 in UTC with a ``Z``; strings pass through verbatim.

    Naive datetimes are taken as UTC.
    """
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _parse_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], not {platform!r}")
    result = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _tag_tuple(tags: str | Sequence[str]) -> tuple[str, ...]:
    return (tags,) if isinstance(tags, str) else tuple(tags)


class ImagePusher(RegistryApi):
    """Pushes synthetic content to the registry at ``url``, and reads it back.

    ``auth`` is a basic-auth ``(user, password)`` pair. Pass ``client`` to reuse your
    own ``httpx.Client`` (it is not closed by :meth:`close`); otherwise one is made
    that ignores proxy variables. ``verify`` is passed to that client; a path is taken
    as a CA bundle (e.g. the certificate of a TLS test registry). The reading side
    (``resolve``, ``tags``, ``catalog``, ``delete``, ...) and the constructor are
    :class:`RegistryApi`'s.
    """

    # -- pushing -------------------------------------------------------------------

    def _upload_to(self, location: str, digest: str, data: bytes) -> None:
        url = httpx.URL(self.url).join(location).copy_merge_params({"digest": digest})
        response = self._request(
            "PUT", url, content=data, headers={"Content-Type": "application/octet-stream"}
        )
        if response.status_code != 201:
            raise PushError(f"blob upload of {digest} failed", response)

    def push_blob(self, repository: str, data: bytes, *, fresh: bool = False) -> str:
        """Make sure a blob with ``data`` is in ``repository``; return its digest.

        Tries, in order: nothing more when ``fresh`` is false and HEAD finds it; a
        cross-repository mount from a repository this pusher put it in; a monolithic
        upload (POST then PUT). ``fresh`` says the bytes were just made up, so no HEAD.
        """
        digest = sha256_digest(data)
        source = self._sources.get(digest)
        if not fresh and (source is None or source == repository):
            response = self._request("HEAD", self._v2(repository, f"blobs/{digest}"))
            if response.status_code == 200:
                self._remember(digest, repository)
                return digest
        params: dict[str, str] = {}
        if source is not None and source != repository:
            params = {"mount": digest, "from": source}
        response = self._request("POST", self._v2(repository, "blobs/uploads/"), params=params)
        if response.status_code == 201 and params:
            self._remember(digest, repository)
            return digest
        if response.status_code != 202:
            raise PushError(f"cannot start an upload of {digest} to {repository}", response)
        self._upload_to(response.headers["Location"], digest, data)
        self._remember(digest, repository)
        return digest

    def _remember(self, digest: str, repository: str) -> None:
        with self._lock:
            self._sources.setdefault(digest, repository)

    def push_manifest(
        self, repository: str, body: bytes, media_type: str, references: Sequence[str] = ()
    ) -> str:
        """PUT a manifest under each reference (tags), or by digest when there are none."""
        digest = sha256_digest(body)
        for reference in references or (digest,):
            response = self._request(
                "PUT",
                self._v2(repository, f"manifests/{reference}"),
                content=body,
                headers={"Content-Type": media_type},
            )
            if response.status_code != 201:
                raise PushError(f"manifest push to {repository}:{reference} failed", response)
            answered = response.headers.get("Docker-Content-Digest")
            if answered and answered != digest:
                raise RuntimeError(f"registry stored {answered}, expected {digest}")
        return digest

    # -- images --------------------------------------------------------------------

    def push_image(
        self,
        repository: str,
        tags: str | Sequence[str] = (),
        *,
        created: datetime | str | _Now | None = NOW,
        layers: int = 1,
        layer_size: int = 1024,
        labels: dict[str, str] | None = None,
        media_type: Format = "oci",
        platform: str = "linux/amd64",
        seed: str | None = None,
        subject: str | None = None,
        artifact_type: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> PushedImage:
        """Push one single-platform image and return what was pushed.

        Layers are random bytes, derived from ``seed`` when given (so the same seed
        gives the same blobs) and unique otherwise. ``created`` defaults to now; None
        leaves the key out of the config; a string is written verbatim (e.g. the
        epoch ``"1970-01-01T00:00:00Z"`` of reproducible builds). The manifest is put
        under each tag, or by digest when there are none.

        OCI only: ``subject`` (a manifest digest in the same repository) makes an OCI
        1.1 referrer; ``artifact_type`` sets ``artifactType`` and uses the empty config
        (``created`` then goes to the ``org.opencontainers.image.created`` annotation).
        """
        if media_type not in ("oci", "docker"):
            raise ValueError(f"media_type must be 'oci' or 'docker', not {media_type!r}")
        if media_type == "docker" and (subject or artifact_type or annotations):
            raise ValueError("subject, artifact_type and annotations need media_type='oci'")
        tag_list = _tag_tuple(tags)
        created_text = (
            rfc3339(datetime.now(UTC))
            if isinstance(created, _Now)
            else (None if created is None else rfc3339(created))
        )
        rng = random.Random(seed) if seed is not None else None
        fresh = rng is None and layer_size >= 16
        layer_blobs = [
            rng.randbytes(layer_size) if rng is not None else os.urandom(layer_size)
            for _ in range(layers)
        ]
        layer_digests = [sha256_digest(blob) for blob in layer_blobs]

        manifest_annotations = dict(annotations or {})
        if artifact_type is not None:
            config_type, config_blob = OCI_EMPTY, b"{}"
            if created_text is not None:
                manifest_annotations.setdefault(CREATED_ANNOTATION, created_text)
        else:
            config_type = OCI_CONFIG if media_type == "oci" else DOCKER_CONFIG
            config: dict[str, Any] = {}
            if created_text is not None:
                config["created"] = created_text
            config.update(_parse_platform(platform))
            config["config"] = {"Labels": dict(labels)} if labels else {}
            config["rootfs"] = {"type": "layers", "diff_ids": layer_digests}
            config_blob = _dumps(config)

        for blob in layer_blobs:
            self.push_blob(repository, blob, fresh=fresh)
        # An image config lists its layers' digests: fresh layers make a fresh config.
        fresh_config = fresh and layers > 0 and artifact_type is None
        config_digest = self.push_blob(repository, config_blob, fresh=fresh_config)

        layer_type = OCI_LAYER if media_type == "oci" else DOCKER_LAYER
        manifest_type = OCI_MANIFEST if media_type == "oci" else DOCKER_MANIFEST
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": manifest_type}
        if artifact_type is not None:
            manifest["artifactType"] = artifact_type
        manifest["config"] = {
            "mediaType": config_type,
            "digest": config_digest,
            "size": len(config_blob),
        }
        manifest["layers"] = [
            {"mediaType": layer_type, "digest": d, "size": len(b)}
            for d, b in zip(layer_digests, layer_blobs, strict=True)
        ]
        if subject is not None:
            manifest["subject"] = self._descriptor(repository, subject)
        if manifest_annotations:
            manifest["annotations"] = manifest_annotations
        body = _dumps(manifest)
        digest = self.push_manifest(repository, body, manifest_type, tag_list)
        return PushedImage(
            repository=repository,
            digest=digest,
            media_type=manifest_type,
            tags=tag_list,
            size=len(body) + len(config_blob) + sum(len(b) for b in layer_blobs),
            config_digest=config_digest,
            layer_digests=tuple(layer_digests),
            created=created_text,
            platform=platform,
            manifest=body,
        )

    def push_index(
        self,
        repository: str,
        tags: str | Sequence[str] = (),
        *,
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
        created: datetime | str | _Now | None = NOW,
        media_type: Format = "oci",
        seed: str | None = None,
        layers: int = 1,
        layer_size: int = 1024,
        labels: dict[str, str] | None = None,
    ) -> PushedImage:
        """Push a multi-platform image: one untagged child per platform, then the index.

        ``media_type="oci"`` makes an OCI image index of OCI manifests, ``"docker"`` a
        Docker manifest list of Docker v2 manifests. ``created``, ``layers``,
        ``layer_size`` and ``labels`` apply to every child; each child's seed is
        ``f"{seed}/{platform}"``.
        """
        children = [
            self.push_image(
                repository,
                (),
                created=created,
                layers=layers,
                layer_size=layer_size,
                labels=labels,
                media_type=media_type,
                platform=platform,
                seed=None if seed is None else f"{seed}/{platform}",
            )
            for platform in platforms
        ]
        index_type = OCI_INDEX if media_type == "oci" else DOCKER_MANIFEST_LIST
        index = {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                {
                    "mediaType": child.media_type,
                    "digest": child.digest,
                    "size": len(child.manifest),
                    "platform": _parse_platform(platform),
                }
                for child, platform in zip(children, platforms, strict=True)
            ],
        }
        body = _dumps(index)
        tag_list = _tag_tuple(tags)
        digest = self.push_manifest(repository, body, index_type, tag_list)
        return PushedImage(
            repository=repository,
            digest=digest,
            media_type=index_type,
            tags=tag_list,
            size=len(body) + sum(child.size for child in children),
            config_digest=None,
            layer_digests=(),
            children=tuple(children),
            created=children[0].created if children else None,
            manifest=body,
        )

    def push_index_of(
        self, repository: str, manifests: Sequence[PushedImage], tags: str | Sequence[str] = ()
    ) -> str:
        """Push an OCI index listing manifests already pushed; return its digest.

        For an index that shares a child with another, or that lists a plain tagged
        image: what ``push_index`` cannot make, since it pushes its own children.
        """
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": m.media_type, "digest": m.digest, "size": len(m.manifest)}
                for m in manifests
            ],
        }
        return self.push_manifest(repository, _dumps(index), OCI_INDEX, _tag_tuple(tags))

    def push_signature(
        self,
        repository: str,
        subject_digest: str,
        kind: Literal["sig", "att", "sbom"] = "sig",
    ) -> PushedImage:
        """Push a cosign-style artifact tagged ``sha256-<hex>.<kind>`` for a subject.

        An OCI manifest with one layer of cosign's media type for the kind; its tag
        names the subject, as cosign does (no ``subject`` field: use
        ``push_image(subject=...)`` for OCI 1.1 referrers).
        """
        if kind not in COSIGN_LAYER_TYPES:
            raise ValueError(f"kind must be sig, att or sbom, not {kind!r}")
        algorithm, _, hex_part = subject_digest.partition(":")
        tag = f"{algorithm}-{hex_part}.{kind}"
        reference = f"{self.url.split('://', 1)[-1]}/{repository}"
        payload, annotations = cosign_payload(kind, reference, subject_digest)
        layer_digest = self.push_blob(repository, payload)
        config_blob = _dumps(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            }
        )
        config_digest = self.push_blob(repository, config_blob)
        layer: dict[str, Any] = {
            "mediaType": COSIGN_LAYER_TYPES[kind],
            "digest": layer_digest,
            "size": len(payload),
        }
        if annotations:
            layer["annotations"] = annotations
        body = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config_blob),
                },
                "layers": [layer],
            }
        )
        digest = self.push_manifest(repository, body, OCI_MANIFEST, (tag,))
        return PushedImage(
            repository=repository,
            digest=digest,
            media_type=OCI_MANIFEST,
            tags=(tag,),
            size=len(body) + len(config_blob) + len(payload),
            config_digest=config_digest,
            layer_digests=(layer_digest,),
            manifest=body,
        )

    def push_many(
        self,
        items: Iterable[str | tuple[str, str | Sequence[str]] | Mapping[str, Any]],
        *,
        workers: int = 8,
        **common: Any,
    ) -> list[PushedImage]:
        """Push many images concurrently; results come back in the order of ``items``.

        Each item is a repository name, a ``(repository, tags)`` pair, or a mapping of
        :meth:`push_image` arguments including ``repository``; ``common`` arguments
        apply to every item (the item wins). With a common ``seed`` every image shares
        the same blobs, which are then mounted across repositories instead of uploaded:
        the fastest way to fill a catalog.
        """

        def one(item: str | tuple[str, str | Sequence[str]] | Mapping[str, Any]) -> PushedImage:
            if isinstance(item, str):
                return self.push_image(item, **common)
            if isinstance(item, tuple):
                return self.push_image(item[0], **{**common, "tags": item[1]})
            kwargs = {**common, **item}
            return self.push_image(kwargs.pop("repository"), **kwargs)

        todo = list(items)
        if not todo:
            return []
        # Push the first one alone so its blobs exist before others try to mount them.
        first = one(todo[0])
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return [first, *pool.map(one, todo[1:])]

    # -- reading back --------------------------------------------------------------

    def tag(self, repository: str, reference: str, new_tag: str) -> str:
        """Put the manifest at ``reference`` under ``new_tag``; return its digest."""
        response = self.get_manifest(repository, reference)
        media_type = response.headers["Content-Type"].split(";")[0].strip()
        return self.push_manifest(repository, response.content, media_type, (new_tag,))
