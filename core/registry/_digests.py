"""Digests: what a reference that is a digest looks like, and checking a manifest's.

A manifest is content-addressed: its digest is the hash of the exact bytes the
registry stores.  regprune trusts a digest only after hashing the body itself, since
that digest is what an apply deletes.
"""

from __future__ import annotations

import hashlib
import re

from ._text import one_line

__all__ = ["check_manifest_digest", "hexdigest", "is_digest", "reference"]

_DIGEST = re.compile(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
# Signed schema 1 manifests are digested without their signatures: the body cannot be checked.
_SCHEMA1 = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    }
)


def is_digest(value: str) -> bool:
    """Whether a reference is a digest (``sha256:<hex>``) rather than a tag."""
    return _DIGEST.match(value) is not None


def hexdigest(algorithm: str, content: bytes) -> str:
    """``algorithm:hex`` of ``content``."""
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


def reference(repository: str, ref: str) -> str:
    """``repo@sha256:...`` for a digest, ``repo:tag`` for a tag."""
    return f"{repository}@{ref}" if is_digest(ref) else f"{repository}:{ref}"


def check_manifest_digest(
    registry: str,
    header: str | None,
    repository: str,
    ref: str,
    content: bytes,
    media_type: str,
) -> str:
    """The digest of a manifest fetched by ``ref``, checked against its body.

    ``header`` is the registry's ``Docker-Content-Digest`` (None when absent).  Raises
    ``ValueError`` with a one-line message (the caller makes it a ``RegistryError``)
    when the header is malformed, the body hashes to something else, or a digest
    reference was answered with another manifest.
    """
    if header and not is_digest(header):
        raise ValueError(
            f"registry {registry} sent an invalid Docker-Content-Digest "
            f"{one_line(header, 80)!r} for {reference(repository, ref)}"
        )
    algorithm = (header or (ref if is_digest(ref) else "sha256:")).partition(":")[0]
    computed = hexdigest(algorithm, content)
    digest = header or computed
    if computed != digest and media_type not in _SCHEMA1:
        raise ValueError(
            f"manifest {reference(repository, ref)} from registry {registry} does not match "
            f"its digest {digest} (body hashes to {computed}); a proxy may be rewriting it"
        )
    if is_digest(ref) and digest != ref:
        raise ValueError(
            f"registry {registry} answered {repository}@{ref} with a manifest of digest {digest}"
        )
    return digest
