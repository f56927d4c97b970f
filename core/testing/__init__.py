"""Test kit: a real Distribution registry on loopback and a pusher of synthetic images.

Used by regprune's own suite and by plugin authors, through the pytest plugin
``regprune.testing.pytest_plugin`` (registered as the ``regprune`` pytest11 entry
point, so its fixtures are available once regprune is installed)::

    def test_prune(registry_server, pusher):
        image = pusher.push_image("team/app", ["v1", "latest"])
        assert pusher.resolve("team/app", "v1") == image.digest
"""

from .images import ImagePusher, PushedImage, PushError
from .server import (
    RegistryNotFoundError,
    RegistryServer,
    RegistryStartError,
    find_registry_binary,
    make_self_signed_cert,
)

__all__ = [
    "ImagePusher",
    "PushError",
    "PushedImage",
    "RegistryNotFoundError",
    "RegistryServer",
    "RegistryStartError",
    "find_registry_binary",
    "make_self_signed_cert",
]
