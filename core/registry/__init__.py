"""Talking to a Distribution (Docker/OCI) registry.

The public surface is small::

    from regprune.registry import RegistryClient, Credentials, Manifest, credentials_for

    with RegistryClient.from_settings(settings) as client:
        client.ping()
        for repository in client.catalog():
            digests = client.map(lambda tag: client.head_manifest(repository, tag),
                                 client.tags(repository))

Errors are the ones in ``regprune.errors``; each says in one line what is wrong and
how to fix it.
"""

from ._client import Manifest, RegistryClient
from ._credentials import Credentials, credentials_for

__all__ = ["Credentials", "Manifest", "RegistryClient", "credentials_for"]
