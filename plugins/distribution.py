"""The built-in ``distribution`` registry type: the Distribution (Docker/OCI) registry API.

``[registry.NAME]`` sections without a ``type`` use it.  Every key it reads is common
to all types (``url``, credentials, ``timeout``, ...), so its own options model has
none: any other key in the section is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from regprune import hookimpl
from regprune.config import RegistrySettings
from regprune.registry import DEFAULT_TYPE, BackendType, NoOptions, RegistryClient


def open_client(name: str, settings: RegistrySettings, options: NoOptions) -> RegistryClient:
    """The Distribution API client for ``[registry.NAME]``."""
    return RegistryClient.from_settings(settings)


@hookimpl
def register_registry_backends(register: Callable[[str, BackendType[Any]], None]) -> None:
    register(
        DEFAULT_TYPE,
        BackendType(
            create=open_client,
            options=NoOptions,
            description="the Distribution (Docker/OCI) registry API",
        ),
    )
