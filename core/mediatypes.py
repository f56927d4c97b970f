"""Manifest and artifact media types, and the Accept header that asks for all of them."""

from __future__ import annotations

import re

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})

# Every type listed, so a 2.x registry never converts or substitutes the manifest:
# the digest we delete must be the digest the tag really points to.
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)

# cosign stores signatures, attestations and SBOMs as tags named after their subject
# (``.sig``, ``.att``, ``.sbom``); the OCI 1.1 referrers tag schema, used by clients where
# the registry has no referrers API, tags an index listing a subject's referrers with the
# bare ``<algorithm>-<hex>``.
ARTIFACT_TAG = re.compile(
    r"^(?P<algorithm>sha256|sha512)-(?P<hex>[0-9a-f]{64}|[0-9a-f]{128})"
    r"(?:\.(?P<kind>sig|att|sbom))?$"
)

ZERO_DIGEST = "sha256:" + "0" * 64


def is_index(media_type: str | None) -> bool:
    """Whether a manifest of this media type lists other manifests (multi-arch)."""
    return media_type in INDEX_TYPES


def artifact_subject(tag: str) -> str | None:
    """The subject digest a cosign-style artifact tag or a referrers tag-schema tag
    names, or None for an ordinary tag."""
    match = ARTIFACT_TAG.match(tag)
    if not match:
        return None
    return f"{match['algorithm']}:{match['hex']}"
