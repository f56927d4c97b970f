"""Turn manifest and config JSON into `ManifestFacts`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .mediatypes import IMAGE_CONFIG_TYPES, INDEX_TYPES
from .models import Blob, ManifestFacts


def facts_from_manifest(
    digest: str, media_type: str, content: bytes, data: dict[str, Any]
) -> ManifestFacts:
    """Facts a manifest body gives by itself; `created` and labels come later from its config."""
    media_type = data.get("mediaType") or media_type
    subject = (data.get("subject") or {}).get("digest")
    if media_type in INDEX_TYPES or "manifests" in data:
        children = tuple(entry["digest"] for entry in data.get("manifests") or [])
        return ManifestFacts(
            digest=digest,
            media_type=media_type,
            size=len(content),
            children=children,
            subject=subject,
            artifact_type=data.get("artifactType"),
        )
    config = data.get("config") or {}
    blobs = [Blob(config["digest"], int(config.get("size", 0)))] if config.get("digest") else []
    blobs += [
        Blob(layer["digest"], int(layer.get("size", 0))) for layer in data.get("layers") or []
    ]
    config_type = config.get("mediaType")
    artifact_type = data.get("artifactType")
    if not artifact_type and config_type and config_type not in IMAGE_CONFIG_TYPES:
        # OCI artifacts (cosign, SBOMs, Helm charts) carry their type in the config media type.
        artifact_type = config_type
    return ManifestFacts(
        digest=digest,
        media_type=media_type,
        size=len(content),
        config_digest=config.get("digest"),
        blobs=tuple(blobs),
        subject=subject,
        artifact_type=artifact_type,
    )


def needs_config(facts: ManifestFacts) -> bool:
    """Whether the config blob holds a build time worth fetching (image configs only)."""
    return bool(facts.config_digest) and facts.artifact_type is None


def with_config(facts: ManifestFacts, config_body: bytes) -> ManifestFacts:
    """Add `created` and labels from an image config blob."""
    try:
        config = json.loads(config_body)
    except ValueError:
        return facts
    if not isinstance(config, dict):
        return facts
    labels = (config.get("config") or {}).get("Labels") or {}
    created = config.get("created")
    return dataclasses.replace(
        facts,
        created=created if isinstance(created, str) else None,
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )
