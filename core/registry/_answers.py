"""The one validation layer for what registries and token servers answer.

Every field regprune reads from a registry answer is checked here, once, before any
other code touches it: the catalog, tag lists, manifests (Docker v2 manifest and
manifest list, OCI manifest and index, OCI artifacts with ``subject`` and
``artifactType``), image config blobs and token-server answers. A malformed answer
becomes a :class:`~regprune.errors.RegistryError` with one line naming the field
(``layers.0.size: Input should be a valid integer``), never a ``KeyError`` or
``TypeError`` deep inside the engine.

Manifests are checked strictly: their digests, children and subjects decide what is
deleted, so a manifest regprune cannot read with certainty stops the scan. Image
config blobs only give a build time and labels; a ``created`` that is not a string
or a label that is not a string is dropped instead, which leaves the image without
a trustworthy time, and such an image is never selected by age.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..errors import RegistryError
from ..repository_names import MAX_NAME_LENGTH, NAME_PATTERN
from ._text import load_json, one_line

__all__ = [
    "Descriptor",
    "ManifestDocument",
    "load_json",
    "parse_catalog",
    "parse_image_config",
    "parse_manifest",
    "parse_referrers",
    "parse_tag_list",
    "parse_token",
]

DIGEST_PATTERN = r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$"
# RFC 6838 type/subtype (with +suffix), as the OCI image spec restricts media types.
MEDIA_TYPE_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
# Distribution's reference grammar: a tag, and a repository name (path components).
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
REPOSITORY_PATTERN = f"^{NAME_PATTERN}$"
MAX_REPOSITORY_LENGTH = MAX_NAME_LENGTH
_PATTERN_NAMES = {
    DIGEST_PATTERN: "a digest (sha256:<64 hex> or sha512:<128 hex>)",
    MEDIA_TYPE_PATTERN: "a media type",
    TAG_PATTERN: "a valid tag",
    REPOSITORY_PATTERN: "a valid repository name",
}
MAX_TOKEN_LENGTH = 64 * 1024

Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
MediaType = Annotated[str, StringConstraints(pattern=MEDIA_TYPE_PATTERN)]
Size = Annotated[int, Field(ge=0)]
Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]
Repository = Annotated[
    str, StringConstraints(pattern=REPOSITORY_PATTERN, max_length=MAX_REPOSITORY_LENGTH)
]
# RFC 6750 b64token, loosened to any visible ASCII: it goes into an HTTP header as is.
TokenText = Annotated[
    str, StringConstraints(pattern=r"^[\x21-\x7e]+$", max_length=MAX_TOKEN_LENGTH)
]


class _Strict(BaseModel):
    # strict: no "12" for 12, no true for 1; extra keys are the registry's business.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Descriptor(_Strict):
    """An OCI/Docker content descriptor: what a manifest says about one blob or manifest."""

    mediaType: MediaType | None = None  # the JSON field names, as the specs spell them
    digest: Digest
    size: Size | None = None
    artifactType: MediaType | None = None
    annotations: dict[str, str] | None = None


class ManifestDocument(_Strict):
    """The fields of a manifest or index regprune reads (all four media types, artifacts)."""

    mediaType: MediaType | None = None
    artifactType: MediaType | None = None
    config: Descriptor | None = None
    layers: list[Descriptor] | None = None
    manifests: list[Descriptor] | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class _TagList(_Strict):
    tags: list[Tag] | None = None


class _Catalog(_Strict):
    repositories: list[Repository] | None = None


class _Token(_Strict):
    token: TokenText | None = None
    access_token: TokenText | None = None
    expires_in: float | None = None  # strict float still takes JSON integers


_EXPECTED = {
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "missing": "present",
}
_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _problem(error: ValidationError) -> str:
    """``loc: what was expected, what came`` for the first problem, in one short line."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "the document"
    kind = first.get("type", "")
    given = first.get("input")
    if kind == "missing":
        return one_line(f"{where} is missing", 160)
    if kind == "string_pattern_mismatch":
        label = _PATTERN_NAMES.get(str((first.get("ctx") or {}).get("pattern")), "an allowed value")
        return one_line(f"{where}: {str(given)[:60]!r} is not {label}", 160)
    if kind == "greater_than_equal":
        return one_line(f"{where}: {given!r} is negative", 160)
    if kind == "string_too_long":
        return one_line(f"{where}: too long", 160)
    if kind in _EXPECTED:
        got = _JSON_TYPES.get(type(given), type(given).__name__)
        return one_line(f"{where}: expected {_EXPECTED[kind]}, got {got}", 160)
    return one_line(f"{where}: {first.get('msg', 'invalid')}", 160)


def _validate(model: type[_Strict], data: Any, what: str, code: str) -> Any:
    if not isinstance(data, dict):
        raise RegistryError(f"{what} is not a JSON object", code=code)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(f"{what} is invalid: {_problem(exc)}", code=code) from None


def parse_manifest(data: Any, what: str = "the manifest") -> ManifestDocument:
    """Validate a decoded manifest; ``what`` starts the error message."""
    document = _validate(ManifestDocument, data, what, "MANIFEST_INVALID")
    assert isinstance(document, ManifestDocument)
    return document


class _ReferrersIndex(_Strict):
    manifests: list[Descriptor] | None = None


def parse_referrers(data: Any, what: str) -> list[Descriptor]:
    """The ``manifests`` of a referrers answer (an OCI image index; [] when null or absent)."""
    return list(_validate(_ReferrersIndex, data, what, "MANIFEST_INVALID").manifests or [])


def parse_tag_list(data: Any, what: str) -> list[str]:
    """The ``tags`` of a tag-list page ([] when null or absent)."""
    return list(_validate(_TagList, data, what, "TAG_INVALID").tags or [])


def parse_catalog(data: Any, what: str) -> list[str]:
    """The ``repositories`` of a catalog page ([] when null or absent)."""
    return list(_validate(_Catalog, data, what, "NAME_INVALID").repositories or [])


def parse_token(data: Any, what: str, default_lifetime: float) -> tuple[str | None, float]:
    """``(token, lifetime in seconds)`` from a token-server answer; token None if absent."""
    answer = _validate(_Token, data, what, "TOKEN_INVALID")
    lifetime = answer.expires_in
    if lifetime is None or lifetime == 0:
        lifetime = default_lifetime
    if not math.isfinite(lifetime):
        raise RegistryError(f"{what} is invalid: expires_in is not a finite number")
    return answer.token or answer.access_token, max(lifetime, 1.0)


_MAX_CREATED_LENGTH = 64  # RFC 3339 with nanoseconds and an offset is 35 characters


def parse_image_config(body: bytes) -> tuple[str | None, dict[str, str]]:
    """``(created, labels)`` from an image config blob, dropping what is not usable.

    Never raises: a config that is not JSON, a ``created`` that is not a short string
    and labels that are not strings leave the image without those facts (and so
    without a trustworthy build time), which is the safe side.
    """
    try:
        config = load_json(body)
    except ValueError:
        return None, {}
    if not isinstance(config, dict):
        return None, {}
    created = config.get("created")
    if not isinstance(created, str) or len(created) > _MAX_CREATED_LENGTH:
        created = None
    inner = config.get("config")
    raw_labels = inner.get("Labels") if isinstance(inner, dict) else None
    labels = (
        {k: v for k, v in raw_labels.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(raw_labels, dict)
        else {}
    )
    return created, labels
