"""The built-in deleter: DELETE /v2/<name>/manifests/<digest> on the registry."""

from __future__ import annotations

from regprune import hookimpl
from regprune.registry import RegistryClient


@hookimpl(trylast=True)
def delete_manifest(client: RegistryClient, repository: str, digest: str) -> str | None:
    """Delete by digest through the Registry API; "absent" when it was already gone."""
    return client.delete_manifest(repository, digest)
