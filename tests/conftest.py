"""Suite-wide fixtures; the others (registries, pusher, isolated_cli, ...) come from
regprune.testing.pytest_plugin."""

import pytest


@pytest.fixture(autouse=True)
def _no_proxies(clear_proxy_env: None) -> None:
    """No test talks to loopback through a proxy from the environment."""
