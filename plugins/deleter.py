"""The built-in deleter: the registry back end's own delete (for the ``distribution``
type, DELETE /v2/<name>/manifests/<digest>)."""

from __future__ import annotations

from regprune import hookimpl
from regprune.registry import RegistryBackend


@hookimpl(trylast=True)
def delete_manifest(client: RegistryBackend, repository: str, digest: str) -> str | None:
    """Delete by digest through the back end; "absent" when it was already gone."""
    return client.delete_manifest(repository, digest)
