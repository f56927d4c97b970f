"""Suite-wide fixtures; the registry fixtures come from regprune.testing.pytest_plugin."""

import pytest


@pytest.fixture(autouse=True)
def _no_proxies(clear_proxy_env: None) -> None:
    """No test talks to loopback through a proxy from the environment."""


@pytest.fixture
def isolated_cli(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI as a new user runs it in an empty directory: no config or state from the
    environment, no installed plugins, no terminal for prompts."""
    for name in ("REGPRUNE_CONFIG", "REGPRUNE_STATE", "REGPRUNE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGPRUNE_LOAD_PLUGINS", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("regprune.cli.apply_cmd.is_interactive", lambda: False)

