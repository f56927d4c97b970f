"""Removing one tag while its manifest stays: the two ways Distribution allows.

Functions of a ``RegistryClient`` (its methods of the same names call them):

- ``delete_tag``: Distribution 3.x's ``DELETE /v2/<name>/manifests/<tag>``.  2.x
  answers it ``400 DIGEST_INVALID``, which is an error here, never a reason to delete
  by digest instead.
- ``untag_by_overwrite``: for 2.x, which cannot delete a tag.  The tag is pointed at a
  throwaway manifest unique to this removal (an empty config and a random
  annotation, so no other tag can share its digest), and that manifest is deleted by
  its digest, taking only the tag with it.  Needs push (``pull,push``) and delete.

Races, stated in docs/safety.md: between the PUT and the DELETE a pull of the tag
gets the throwaway; a push of the tag in between survives (the DELETE names the
throwaway's digest, not the tag).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from ..errors import RegistryError, UsageError
from ..lifecycle import DeleteAnswer
from ..mediatypes import OCI_MANIFEST
from ._digests import hexdigest
from ._errors import error_code
from ._origin import origin, parse_http_url, redact

if TYPE_CHECKING:
    from ._client import RegistryClient

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = hexdigest("sha256", EMPTY_BLOB)
THROWAWAY_ANNOTATION = "org.regprune.untag"


def throwaway_manifest(repository: str, tag: str) -> tuple[bytes, str]:
    """``(bytes, digest)`` of a manifest no other tag can point to: an empty config,
    no layers, and a random nonce in its annotations."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)},
        "layers": [],
        "annotations": {
            THROWAWAY_ANNOTATION: f"{repository}:{tag} removed by regprune",
            f"{THROWAWAY_ANNOTATION}.nonce": secrets.token_hex(16),
        },
    }
    content = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return content, hexdigest("sha256", content)


def is_throwaway(data: object, repository: str, tag: str) -> bool:
    """Whether a manifest (parsed JSON) is the throwaway regprune puts on ``tag`` of
    ``repository`` to remove it (an interrupted removal finishes by deleting it)."""
    if not isinstance(data, dict):
        return False
    annotations = data.get("annotations")
    return (
        isinstance(annotations, dict)
        and annotations.get(THROWAWAY_ANNOTATION) == f"{repository}:{tag} removed by regprune"
        and data.get("layers") == []
    )


def delete_tag(client: RegistryClient, repository: str, tag: str) -> str:
    """Remove one tag, its manifest staying (Distribution 3.x): ``"deleted"``, or
    ``"absent"`` when the tag does not exist."""
    if tag.startswith("sha256:") or ":" in tag:
        raise UsageError(f"cannot untag {repository}:{tag}: not a tag")
    scope = f"repository:{repository}:delete"
    response = client._request("DELETE", f"{client._v2}{repository}/manifests/{tag}", scope)
    if response.status_code == 202 or response.is_success:
        return DeleteAnswer.DELETED
    if response.status_code == 404:
        return DeleteAnswer.ABSENT
    if response.status_code == 400:
        code = error_code(response) or "400"
        raise RegistryError(
            f"registry {client.url} refused to delete the tag {repository}:{tag} ({code}): "
            "it cannot delete a single tag, as Distribution 2.x cannot; nothing was "
            "deleted. Set the registry's version = 2 and the policy's untag_2x = "
            '"overwrite", or remove untag',
            status=400,
            code=code,
        )
    client._check(response, scope)
    return DeleteAnswer.DELETED


def untag_by_overwrite(
    client: RegistryClient,
    repository: str,
    tag: str,
    *,
    started: Callable[[str], None] | None = None,
) -> str:
    """Remove one tag on Distribution 2.x: PUT a throwaway manifest on the tag, then
    DELETE that manifest by digest.  ``started(digest)`` is called with the
    throwaway's digest before the PUT (so an interrupted removal can be finished by
    deleting that digest).  Returns ``"deleted"``."""
    push = f"repository:{repository}:pull,push"
    _ensure_empty_blob(client, repository, push)
    content, digest = throwaway_manifest(repository, tag)
    if started is not None:
        started(digest)
    response = client._request(
        "PUT",
        f"{client._v2}{repository}/manifests/{tag}",
        push,
        {"Content-Type": OCI_MANIFEST},
        content=content,
    )
    client._check(response, push)
    answered = response.headers.get("docker-content-digest")
    if answered and answered != digest:
        raise RegistryError(
            f"registry {client.url} stored the throwaway manifest for {repository}:{tag} "
            f"as {answered}, not {digest}; not deleting anything by that digest"
        )
    client.delete_manifest(repository, digest)
    return DeleteAnswer.DELETED


def check_push_allowed(client: RegistryClient, repository: str) -> None:
    """Raise ``MissingScope`` (or another refusal) if a push to ``repository`` would be
    refused; changes nothing: it starts a blob upload and cancels it."""
    push = f"repository:{repository}:pull,push"
    start = client._request("POST", f"{client._v2}{repository}/blobs/uploads/", push)
    client._check(start, push)
    location = start.headers.get("location", "")
    target = parse_http_url(urljoin(str(start.url), location.strip())) if location else None
    if target is not None and origin(target) == client._origin:
        client._request("DELETE", str(target), push)  # cancel; whatever it answers


def _ensure_empty_blob(client: RegistryClient, repository: str, push: str) -> None:
    """The throwaway's config blob (``{}``), uploaded once per repository."""
    blob = f"{client._v2}{repository}/blobs/{EMPTY_DIGEST}"
    head = client._request("HEAD", blob, f"repository:{repository}:pull")
    if head.status_code == 200:
        return
    start = client._request("POST", f"{client._v2}{repository}/blobs/uploads/", push)
    client._check(start, push)
    location = start.headers.get("location", "")
    target = parse_http_url(urljoin(str(start.url), location.strip())) if location else None
    if target is None or origin(target) != client._origin:
        raise RegistryError(
            f"registry {client.url} answered a blob upload with the Location "
            f"{redact(location)!r}, which is not on the registry itself; not uploading"
        )
    separator = "&" if "?" in str(target) else "?"
    done = client._request(
        "PUT",
        f"{target}{separator}digest={EMPTY_DIGEST}",
        push,
        {"Content-Type": "application/octet-stream"},
        content=EMPTY_BLOB,
    )
    client._check(done, push)
