"""Talking to a registry: the back-end protocol and the Distribution API client.

The public surface is small::

    from regprune.registry import RegistryClient, Credentials, Manifest, credentials_for

    with RegistryClient.from_settings(settings) as client:
        client.ping()
        for repository in client.catalog():
            digests = client.map(lambda tag: client.head_manifest(repository, tag),
                                 client.tags(repository))

``RegistryClient`` is the built-in ``distribution`` back end; ``RegistryBackend`` is
the protocol every back end meets, ``BackendType`` what a plugin registers through
``register_registry_backends``, and ``HttpSession`` the HTTP layer (auth, retries,
deadlines, size caps, the credential origin gate) a back end can build on.

Errors are the ones in ``regprune.errors``; each says in one line what is wrong and
how to fix it.
"""

from ._backend import (
    DEFAULT_TYPE,
    BackendType,
    BackendTypes,
    NoOptions,
    RegistryBackend,
    SupportsReferrers,
    backend_options,
    backend_problems,
    check_backend_options,
    referrers_of,
)
from ._client import Manifest, RegistryClient
from ._credentials import Credentials, credentials_for
from ._digests import is_digest
from ._parallel import parallel_map
from ._session import HttpSession
from ._tag_removal import is_throwaway
from ._version import RegistryVersion, version_of

__all__ = [
    "DEFAULT_TYPE",
    "BackendType",
    "BackendTypes",
    "Credentials",
    "HttpSession",
    "Manifest",
    "NoOptions",
    "RegistryBackend",
    "RegistryClient",
    "RegistryVersion",
    "SupportsReferrers",
    "backend_options",
    "backend_problems",
    "check_backend_options",
    "credentials_for",
    "is_digest",
    "is_throwaway",
    "parallel_map",
    "referrers_of",
    "version_of",
]
