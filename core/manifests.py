"""Turn manifest and config JSON into `ManifestFacts`.

The documents are validated by `regprune.registry`'s one validation layer first
(`parse_manifest`, `parse_image_config`): what reaches the facts is typed and
well-formed, or the caller got a `RegistryError` naming the bad field.
"""

from __future__ import annotations

import dataclasses
from sys import intern
from typing import Any

from .mediatypes import IMAGE_CONFIG_TYPES, INDEX_TYPES
from .models import Blob, ManifestFacts
from .registry._answers import parse_image_config, parse_manifest


def facts_from_manifest(
    digest: str, media_type: str, content: bytes, data: dict[str, Any]
) -> ManifestFacts:
    """Facts a manifest body gives by itself; `created` and labels come later from its config.

    Raises `RegistryError` when ``data`` is not a well-formed manifest.
    """
    document = parse_manifest(data, f"manifest {digest}")
    # A handful of media types, from every manifest: held once each (interned).
    media_type = intern(document.mediaType or media_type)
    subject = document.subject.digest if document.subject else None
    if media_type in INDEX_TYPES or document.manifests is not None:
        return ManifestFacts(
            digest=digest,
            media_type=media_type,
            size=len(content),
            children=tuple(entry.digest for entry in document.manifests or ()),
            subject=subject,
            artifact_type=document.artifactType,
        )
    config = document.config
    blobs = [Blob(config.digest, config.size or 0)] if config else []
    blobs += [Blob(layer.digest, layer.size or 0) for layer in document.layers or ()]
    config_type = config.mediaType if config else None
    artifact_type = document.artifactType
    if not artifact_type and config_type and config_type not in IMAGE_CONFIG_TYPES:
        # OCI artifacts (cosign, SBOMs, Helm charts) carry their type in the config media type.
        artifact_type = intern(config_type)
    return ManifestFacts(
        digest=digest,
        media_type=media_type,
        size=len(content),
        config_digest=config.digest if config else None,
        blobs=tuple(blobs),
        subject=subject,
        artifact_type=artifact_type,
    )


def needs_config(facts: ManifestFacts) -> bool:
    """Whether the config blob holds a build time worth fetching (image configs only)."""
    return bool(facts.config_digest) and facts.artifact_type is None


def with_config(facts: ManifestFacts, config_body: bytes) -> ManifestFacts:
    """Add `created` and labels from an image config blob (unusable values are dropped)."""
    created, labels = parse_image_config(config_body)
    # Label names and values repeat from image to image of a repository.
    labels = {intern(name): intern(value) for name, value in labels.items()}
    return dataclasses.replace(facts, created=created, labels=labels)
