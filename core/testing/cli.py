"""regprune's command line, end to end and in-process, as a new user runs it.

``isolate_cli(monkeypatch, directory)`` gives the CLI an empty world: no config or
state from the environment, the working directory or the home directory, no
installed plugins (so an unrelated plugin in the environment cannot change the
output) and no terminal for prompts.  ``run_cli(capsys, *argv)`` runs it and hands
back what it printed::

    def test_plan_json(regprune_cli, registry_server, pusher):
        pusher.push_image("ci/app", ["b-1"])
        result = regprune_cli(
            "plan", "--registry", registry_server.url, "--repo", "ci/*", "--keep", "0", "--json"
        )
        assert result.code == 0
        assert result.json()["summary"]["images"] == 1

The ``isolated_cli`` and ``regprune_cli`` fixtures wrap them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pluggy
    import pytest

__all__ = ["CLI_ENV", "CliResult", "CliRunner", "isolate_cli", "run_cli"]

CLI_ENV = (
    "REGPRUNE_CONFIG",
    "REGPRUNE_STATE",
    "REGPRUNE_DEBUG",
    "REGPRUNE_USERNAME",
    "REGPRUNE_PASSWORD",
)
"""Variables that point the CLI at a config, a state DB, debug output or quick-mode
credentials: removed."""


def isolate_cli(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Run the CLI in ``directory`` as a new user would, with nothing from this machine.

    ``XDG_CONFIG_HOME`` and ``XDG_STATE_HOME`` point under ``directory``, the working
    directory is ``directory``, ``REGPRUNE_LOAD_PLUGINS`` is empty (built-in plugins
    only) and ``cli`` approvals see no terminal (``--yes`` or a refusal, never a prompt).
    """
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGPRUNE_LOAD_PLUGINS", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(directory / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(directory / "xdg-state"))
    monkeypatch.chdir(directory)
    # Tests never have a person at the terminal, however pytest was started.
    monkeypatch.setattr("regprune.cli.apply_cmd.is_interactive", lambda: False)


class CliResult(NamedTuple):
    """What one run printed: unpacks as ``code, out, err``."""

    code: int
    out: str
    err: str

    def json(self) -> Any:  # JSON of any shape: the caller knows which command it ran
        """``out`` parsed as JSON (the output of a ``--json`` run)."""
        return json.loads(self.out)


def run_cli(
    capture: pytest.CaptureFixture[str],
    *argv: str,
    manager: pluggy.PluginManager | None = None,
) -> CliResult:
    """Run ``regprune ARGV`` in-process; ``capture`` is pytest's ``capsys``.

    Output printed before the call is dropped, so the result holds this run's alone.
    ``manager`` replaces the plugin manager (to add plugins that are not installed).
    """
    from ..cli import run

    capture.readouterr()
    code = run(list(argv), manager=manager)
    out, err = capture.readouterr()
    return CliResult(code, out, err)


class CliRunner:
    """``regprune_cli(*argv) -> CliResult``: :func:`run_cli` bound to one test's ``capsys``."""

    def __init__(
        self, capture: pytest.CaptureFixture[str], *, manager: pluggy.PluginManager | None = None
    ) -> None:
        self.capture = capture
        self.manager = manager

    def __call__(self, *argv: str) -> CliResult:
        """Run ``regprune ARGV``; the exit code is in the result, nothing is raised."""
        return run_cli(self.capture, *argv, manager=self.manager)
