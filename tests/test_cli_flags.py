"""Flags declared once (core/cli/flags.py): the quick-mode bundle and the shared spellings."""

from __future__ import annotations

from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from regprune.cli import flags, make_app
from regprune.cli.flags import QuickFlags, json_flag, with_quick_flags
from regprune.plugin_manager import get_plugin_manager

QUICK_SPELLINGS = [
    "--registry",
    "--repo",
    "--exclude",
    "--tags",
    "--older-than",
    "--keep",
    "--keep-tag",
    "--keep-semver",
    "--approval",
]


def options_of(command: str) -> dict[str, tuple[str, ...]]:
    """Each ``--flag`` of ``command`` with the click option behind it (names, help)."""
    app = make_app(get_plugin_manager(load_entrypoints=False))
    group = typer.main.get_command(app)
    click_command = group.commands[command]  # type: ignore[attr-defined]  # a click Group
    return {
        param.opts[0]: (*param.opts, *param.secondary_opts, param.help or "")
        for param in click_command.params
        if isinstance(param, typer.core.TyperOption)
    }


def test_plan_and_run_take_the_same_quick_flags_in_the_bundles_order() -> None:
    plan, run = options_of("plan"), options_of("run")

    assert [name for name in plan if name in QUICK_SPELLINGS] == QUICK_SPELLINGS
    assert [name for name in run if name in QUICK_SPELLINGS] == QUICK_SPELLINGS
    for name in QUICK_SPELLINGS:
        assert plan[name] == run[name]
        assert plan[name][-1].startswith("Quick mode: ")
    assert [item.name for item in fields(QuickFlags)] == list(flags.QUICK_NAMES)


def test_the_bundle_folds_the_flags_into_one_argument() -> None:
    seen: list[QuickFlags] = []
    app = typer.Typer()

    @app.command()
    @with_quick_flags
    def probe(as_json: bool = json_flag("JSON."), *, quick: QuickFlags) -> None:
        seen.append(quick)

    argv = ["--json", "-r", "http://127.0.0.1:5000", "--repo", "a/*", "--repo", "b/*"]
    argv += ["--keep", "3", "--keep-tag", "^v", "--tags", "^pr-", "--approval", "auto"]
    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 0, result.output
    assert seen == [
        QuickFlags(
            registry="http://127.0.0.1:5000",
            repo=["a/*", "b/*"],
            tags="^pr-",
            keep=3,
            keep_tag=["^v"],
            approval="auto",
        )
    ]
    assert seen[0].selects


def test_no_quick_flag_means_no_quick_policy() -> None:
    assert not QuickFlags().selects
    assert not QuickFlags(registry="http://127.0.0.1:5000").selects  # --registry alone
    assert QuickFlags(exclude=["x"]).selects


def test_a_command_without_the_bundle_parameter_is_refused() -> None:
    def no_quick(as_json: bool = False) -> None:
        """Forgot ``quick``."""

    with pytest.raises(TypeError, match="quick: QuickFlags"):
        with_quick_flags(no_quick)
