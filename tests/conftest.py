"""Suite-wide fixtures; the others (registries, pusher, isolated_cli, ...) come from
regprune.testing.pytest_plugin."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distributions import registry_starter


@pytest.fixture(autouse=True)
def _no_proxies(clear_proxy_env: None) -> None:
    """No test talks to loopback through a proxy from the environment."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a real registry, so `make test` can run that subset
    again against Distribution 3.x (``-m registry``)."""
    for item in items:
        if "registry_binary" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.registry)


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[Any]:
    """``start_registry(2 | 3, **RegistryServer_kwargs)``: that Distribution version,
    whatever pass of the suite runs (see tests/distributions.py)."""
    yield from registry_starter(tmp_path)
