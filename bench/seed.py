"""Fill a Distribution registry with CI-shaped images for the benchmarks.

Two ways, same content:

- ``seed_disk`` writes blobs and links straight into the filesystem storage driver's
  layout (what ``RegistryServer.clone_repository`` relies on too). 2,000 images take
  about a second, so the benchmark's time goes to measuring, not to setting up.
- ``seed_http`` pushes the same images through the registry API with
  ``ImagePusher.push_many`` (slow: five requests per image), to check that the disk
  layout is not what makes the numbers.

Each repository gets ``tags`` tags: ``tags - 1`` builds ``main-<sha>``, one image each,
with build times spread over the last 90 days, and ``latest`` pointing at the newest
build (a shared digest, as in a real CI registry). Layers: one base layer shared by
every image and one small layer of its own.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regprune.mediatypes import OCI_CONFIG, OCI_MANIFEST

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SPREAD = timedelta(days=90)


@dataclass(frozen=True)
class Build:
    """One image to seed: where, under which tags, built when, with which unique layer."""

    repository: str
    tags: tuple[str, ...]
    created: datetime
    layer: bytes


def repository_name(index: int) -> str:
    return f"bench/app-{index:03d}"


def plan_builds(
    repos: int, tags: int, *, seed: int = 1, now: datetime | None = None
) -> list[Build]:
    """The images to seed: ``repos`` repositories of ``tags`` tags each (``tags >= 1``)."""
    if repos < 1 or tags < 1:
        raise ValueError("need at least one repository and one tag")
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    builds: list[Build] = []
    for r in range(repos):
        repository = repository_name(r)
        count = max(1, tags - 1)  # one tag left for "latest" when there is room
        ages = sorted((rng.random() * SPREAD for _ in range(count)), reverse=True)
        for b, age in enumerate(ages):
            sha = hashlib.sha1(f"{repository}/{b}/{seed}".encode()).hexdigest()[:7]
            names = [f"main-{b:05d}-{sha}"]
            if b == count - 1 and tags > 1:
                names.append("latest")
            builds.append(Build(repository, tuple(names), now - age, rng.randbytes(256)))
    return builds


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


BASE_LAYER = random.Random(0).randbytes(4096)


def image_blobs(build: Build) -> tuple[bytes, bytes, list[bytes]]:
    """(manifest, config, layers) for one build, byte for byte what both seeders store."""
    layers = [BASE_LAYER, build.layer]
    config = _dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": _rfc3339(build.created),
            "config": {"Labels": {"org.opencontainers.image.source": build.repository}},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer) for layer in layers]},
        }
    )
    manifest = _dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}
                for layer in layers
            ],
        }
    )
    return manifest, config, layers


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def seed_disk(storage: Path, builds: list[Build]) -> int:
    """Write ``builds`` into a filesystem-driver storage root; returns the tag count.

    The layout is Distribution 2.x's: blobs under ``blobs/sha256/<2>/<hex>/data``, and per
    repository the links that make a blob or manifest visible there. Safe while the
    registry runs (no blob descriptor cache is configured by ``RegistryServer``).
    """
    v2 = storage / "docker" / "registry" / "v2"
    written: set[str] = set()
    tag_count = 0

    def blob(data: bytes) -> str:
        digest = _digest(data)
        if digest not in written:
            hexpart = digest.split(":", 1)[1]
            _write(v2 / "blobs" / "sha256" / hexpart[:2] / hexpart / "data", data)
            written.add(digest)
        return digest

    def link(path: Path, digest: str) -> None:
        _write(path / "sha256" / digest.split(":", 1)[1] / "link", digest.encode())

    for build in builds:
        repo = v2 / "repositories" / build.repository
        manifest, config, layers = image_blobs(build)
        for data in (config, *layers):
            link(repo / "_layers", blob(data))
        digest = blob(manifest)
        link(repo / "_manifests" / "revisions", digest)
        for tag in build.tags:
            tag_dir = repo / "_manifests" / "tags" / tag
            _write(tag_dir / "current" / "link", digest.encode())
            link(tag_dir / "index", digest)
            tag_count += 1
    return tag_count


def seed_http(url: str, builds: list[Build], *, workers: int = 8) -> int:
    """Push ``builds`` through the registry API; returns the tag count."""
    from concurrent.futures import ThreadPoolExecutor

    from regprune.testing import ImagePusher

    with ImagePusher(url) as pusher:
        # The shared base layer first, one repository at a time: concurrent mounts of
        # one blob into one repository race in the filesystem driver (a link file is
        # truncated, then written).
        for repository in dict.fromkeys(build.repository for build in builds):
            pusher.push_blob(repository, BASE_LAYER)

        def push(build: Build) -> None:
            manifest, config, layers = image_blobs(build)
            for data in (*layers[1:], config):
                pusher.push_blob(build.repository, data, fresh=True)
            pusher.push_manifest(build.repository, manifest, OCI_MANIFEST, build.tags)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(push, builds))
    return sum(len(build.tags) for build in builds)


def manifest_paths(builds: list[Build]) -> list[str]:
    """``/v2/<repo>/manifests/<tag>`` for every seeded tag (the capacity probe's targets)."""
    return [f"/v2/{b.repository}/manifests/{tag}" for b in builds for tag in b.tags]


def config_paths(builds: list[Build]) -> list[str]:
    """``/v2/<repo>/blobs/<config digest>`` for every seeded image (a cold plan's 2nd GET)."""
    return [f"/v2/{b.repository}/blobs/{_digest(image_blobs(b)[1])}" for b in builds]
