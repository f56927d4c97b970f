"""The ``regprune`` command line: a Typer app built by a factory, one module per command.

Commands only parse options, call the engine and render.  Plugins add commands
through the ``register_commands`` hook when the app is built, not at import time.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import pluggy
import typer

from ..errors import RegpruneError
from ..plugin_manager import get_plugin_manager
from . import (
    apply_cmd,
    gc_cmd,
    history_cmd,
    ls_cmd,
    plan_cmd,
    plugins_cmd,
    run_cmd,
    show_cmd,
    unlock_cmd,
)
from .context import CliContext

COMMAND_MODULES = (
    ls_cmd,
    plan_cmd,
    show_cmd,
    apply_cmd,
    run_cmd,
    gc_cmd,
    history_cmd,
    plugins_cmd,
    unlock_cmd,
)


def make_app(manager: pluggy.PluginManager) -> typer.Typer:
    """Build the CLI: global options, built-in commands, then plugin commands."""
    app = typer.Typer(
        name="regprune",
        help="Plan, approve, delete and garbage-collect images in a private registry, safely.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def main_options(
        ctx: typer.Context,
        config: str | None = typer.Option(
            None,
            "--config",
            "-c",
            help="Config file (default: $REGPRUNE_CONFIG, ./regprune.toml, then ~/.config/regprune/config.toml).",
        ),
        state: str | None = typer.Option(
            None,
            "--state",
            help="State DB (default: $REGPRUNE_STATE, then ~/.local/state/regprune/state.db).",
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Report HTTP request counts."),
    ) -> None:
        obj = ctx.obj
        assert isinstance(obj, CliContext)
        obj.config_path, obj.state_path, obj.verbose = config, state, verbose

    for module in COMMAND_MODULES:
        module.register(app)
    manager.hook.register_commands(cli=app)
    return app


def run(argv: Sequence[str] | None = None, *, manager: pluggy.PluginManager | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failure, 2 bad usage or config."""
    try:
        manager = manager or get_plugin_manager()
    except RegpruneError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    context = CliContext(manager=manager)
    command = typer.main.get_command(make_app(manager))
    try:
        result = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="regprune",
            standalone_mode=False,
            obj=context,
        )
        return result if isinstance(result, int) else 0
    except RegpruneError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo(
            "interrupted; a plan being applied can be resumed with `regprune apply PLAN_ID`",
            err=True,
        )
        return 130
    finally:
        context.close()


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
