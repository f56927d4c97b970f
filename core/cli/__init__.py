"""The ``regprune`` command line: a Typer app built by a factory, one module per command.

Commands only parse options, call the engine and render.  Plugins add commands
through the ``register_commands`` hook when the app is built, not at import time.

`run()` is the one place errors become exit codes: 0 success, 1 failure, 2 bad
usage or config.  Every error is printed as ONE line starting with ``error:`` on
stderr; a traceback is only shown when ``REGPRUNE_DEBUG`` is set.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import pluggy
import typer

from .. import __version__, interrupts
from ..errors import Interrupted, RegpruneError, UsageError
from ..hookcalls import call_each
from ..paths import PathProblem, path_kind, shown_path
from ..plugin_manager import get_plugin_manager
from ..terminal_guard import guarded
from ..urls import check_no_userinfo
from . import (
    apply_cmd,
    cancel_cmd,
    gc_cmd,
    history_cmd,
    lost_output,
    ls_cmd,
    plan_cmd,
    plans_cmd,
    plugins_cmd,
    reporting,
    run_cmd,
    show_cmd,
    state_cmd,
    unlock_cmd,
)
from .context import CliContext
from .flags import ConfigPath, MetricsFile, Pushgateway, StatePath
from .usage import plain_usage

COMMAND_MODULES = (
    ls_cmd,
    plan_cmd,
    plans_cmd,
    show_cmd,
    apply_cmd,
    cancel_cmd,
    run_cmd,
    gc_cmd,
    history_cmd,
    plugins_cmd,
    unlock_cmd,
    state_cmd,
)
DEBUG_ENV = "REGPRUNE_DEBUG"
HELP_FLAGS = frozenset({"-h", "--help"})

HELP = """Plan, approve, delete and garbage-collect images in a private registry, safely.

\b
Typical use:
  regprune ls                      list images, oldest first
  regprune plan                    compute and store a plan (deletes nothing)
  regprune plans                   list stored plans, newest first
  regprune apply PLAN_ID           approve and delete exactly what the plan lists
  regprune gc                      run the registry's garbage collector

\b
Quick mode, without a config file:
  regprune plan --registry http://127.0.0.1:5000 --repo 'ci/*' --older-than 14d --keep 5

Exit codes: 0 success, 1 failure, 2 bad usage or config.
"""


def _click_class(name: str) -> type[Exception]:
    """One of click's exception classes, as the installed typer uses it.

    Typer 0.2x vendors click (``typer._click``); older versions use ``click`` itself.
    ``typer.BadParameter`` derives from click's ``UsageError`` and ``ClickException``
    in both cases, so its MRO finds the right classes without a private import.
    """
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise RuntimeError(
        f"typer.BadParameter does not derive from click's {name}"
    )  # pragma: no cover


ClickUsageError = _click_class("UsageError")
ClickException = _click_class("ClickException")


class _ClickError(Protocol):
    """What regprune uses of click's exceptions (their classes are found at run time)."""

    def format_message(self) -> str: ...

    def show(self) -> None: ...


def _version(value: bool) -> None:
    if value:
        typer.echo(f"regprune {__version__}")
        raise typer.Exit(0)


def make_app(manager: pluggy.PluginManager) -> typer.Typer:
    """Build the CLI: global options, built-in commands, then plugin commands."""
    app = typer.Typer(
        name="regprune",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )

    @app.callback()
    def main_options(
        ctx: typer.Context,
        config: ConfigPath = None,
        state: StatePath = None,
        verbose: bool = typer.Option(
            False,
            "--verbose",
            "-v",
            help="Report HTTP request counts on stderr; `bot slack`: log slack_sdk's own lines too.",
        ),
        metrics_file: MetricsFile = None,
        pushgateway: Pushgateway = None,
        version: bool = typer.Option(
            False,
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ) -> None:
        obj = ctx.obj
        assert isinstance(obj, CliContext)
        for flag, value in (("--config", config), ("--state", state)):
            if value is not None and not value.strip():
                # Empty is a mistake (an unset variable in a script), never "not given".
                raise UsageError(f"{flag} {value!r}: empty; name a file")
        obj.config_path, obj.state_path, obj.verbose = config, state, verbose
        obj.metrics_file = _check_metrics_file(metrics_file)
        obj.pushgateway = _check_pushgateway(pushgateway)
        # From here on the command's outcome is reported ([notify.NAME], metrics);
        # asking for a command's --help is not a run of it.
        if not HELP_FLAGS & set(obj.argv):
            reporting.start(obj, ctx.invoked_subcommand)

    for module in COMMAND_MODULES:
        module.register(app)
    # A plugin whose commands fail to register must not take --help or `plugins` down.
    call_each(manager, "register_commands", tolerate=True, cli=app)
    return app


def _check_metrics_file(value: str | None) -> str | None:
    """``--metrics-file``: a regular file, or none yet, in an existing directory
    (checked before any work).  It is replaced by renaming a temporary file over it:
    over a device or a FIFO that would replace the device itself."""
    if value is None:
        return None
    if not value:
        raise UsageError("--metrics-file '': empty; name a file, e.g. regprune.prom")
    path = Path(value).expanduser()
    try:
        kind = path_kind(path)
        parent = path_kind(path.parent)
    except PathProblem as exc:
        raise UsageError(f"--metrics-file {shown_path(value)}: {exc}; name another file") from None
    if os.path.islink(path):
        raise UsageError(
            f"--metrics-file {value}: a symbolic link (the new file would replace the link, "
            "not its target); name the file itself"
        )
    if kind == "directory":
        raise UsageError(f"--metrics-file {value}: is a directory; name a file, e.g. regprune.prom")
    if kind == "other":
        raise UsageError(
            f"--metrics-file {value}: not a regular file (it is replaced by renaming a new "
            "file over it); name a regular file, e.g. regprune.prom"
        )
    if parent != "directory":
        raise UsageError(f"--metrics-file {value}: directory {path.parent} does not exist")
    return str(path)


def _check_pushgateway(value: str | None) -> str | None:
    """``--pushgateway``: an http:// or https:// URL with a host."""
    if value is None:
        return None
    import httpx  # already loaded by any command that talks to a registry

    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        url = None
    try:
        # Warnings quote the URL: a password in it would be printed (and it is not
        # how prometheus_client authenticates anyway).
        check_no_userinfo(value, where="--pushgateway")
    except ValueError as exc:
        raise UsageError(str(exc).split(": remove it")[0] + ": remove it from the url") from None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"--pushgateway {value}: not an http:// or https:// URL with a host, "
            "e.g. http://pushgateway:9091"
        )
    return value


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def error(message: str) -> None:
    """Print one ``error:`` line on stderr (dropped by a terminal nobody reads, or a
    stderr that went away: the exit code still tells)."""
    with contextlib.suppress(OSError):
        typer.echo(f"error: {_one_line(message)}", file=guarded(sys.stderr))


_print_error = error


def _usage_error(exc: Exception, say: Callable[[str], None] = error) -> int:
    """A click usage error as one line, pointing at the command's --help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `regprune`: show the help
        cast(_ClickError, exc).show()
        return 2
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "regprune"
    message = cast(_ClickError, exc).format_message().rstrip(".")
    say(f"{message[:1].lower()}{message[1:]} (see `{command} --help`)")
    return 2


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (tests swap it),
    guarded on a terminal: a terminal nobody reads drops warnings, never the work."""

    @property
    def stream(self) -> Any:
        return guarded(sys.stderr)

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _show_warnings() -> None:
    """Print regprune's logged warnings (a plugin that failed in an event hook) as
    ``warning:`` lines on stderr.  Long-running front ends that configure logging
    themselves (a bot front end) remove this handler: see ``quiet_cli_warnings``."""
    logger = logging.getLogger("regprune")
    if any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    logger.propagate = False  # one line, not a second copy through the root logger


def quiet_cli_warnings() -> None:
    """Undo ``_show_warnings`` for a front end that logs through the root logger."""
    logger = logging.getLogger("regprune")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    logger.propagate = True


def run(argv: Sequence[str] | None = None, *, manager: pluggy.PluginManager | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failure, 2 bad usage or config."""
    debug = bool(os.environ.get(DEBUG_ENV))
    lost_output.open_missing_streams()
    _show_warnings()
    try:
        manager = manager or get_plugin_manager()
    except RegpruneError as exc:
        error(exc.message)
        return exc.exit_code
    context = CliContext(manager=manager)
    # SIGTERM unwinds like Ctrl-C, so `finally` blocks run (locks, GC children, `after`).
    with interrupts.termination_as_interrupt():
        code = 1  # what a REGPRUNE_DEBUG traceback reports
        try:
            code = _invoke(manager, context, argv, debug)
            return code
        finally:
            # Before close(): the report counts the registry clients' requests.
            reporting.finish(context, code)
            context.close()


def _invoke(
    manager: pluggy.PluginManager, context: CliContext, argv: Sequence[str] | None, debug: bool
) -> int:
    def error(message: str) -> None:
        context.last_error = _one_line(message)  # the run report's error
        _print_error(message)

    try:
        command = plain_usage(typer.main.get_command(make_app(manager)))
        # make_context + invoke rather than main(): typer's main() turns Ctrl-C into a
        # silent exit code 130, and the interruption must be reported in one line.
        args = list(sys.argv[1:] if argv is None else argv)
        context.argv = tuple(args)
        with command.make_context("regprune", args, obj=context) as ctx:
            result = command.invoke(ctx)
        return result if isinstance(result, int) else 0
    except Interrupted as exc:
        if debug:
            raise
        error(_interrupted_line(exc.message))
        return exc.exit_code
    except RegpruneError as exc:
        if debug:
            raise
        for line in exc.lines():  # a config with several problems: one line each
            error(line)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except ClickUsageError as exc:
        return _usage_error(exc, error)
    except ClickException as exc:
        error(cast(_ClickError, exc).format_message())
        return getattr(exc, "exit_code", 1)
    except typer.Abort:
        error("aborted")
        return 1
    except EOFError:
        error("aborted: end of input")
        return 1
    except KeyboardInterrupt:
        return _interrupted(error)
    except Exception as exc:
        if lost_output.is_lost_output(exc):
            lost_output.silence_stdout()
            if cast(OSError, exc).errno == errno.EIO:  # a closed terminal; a pipe's end is routine
                error("standard output went away (its terminal closed); what was done stays done")
            return 1
        if lost_output.is_full_output(exc):
            lost_output.silence_stdout()
            error(
                f"cannot write the output: {cast(OSError, exc).strerror}; what was done stays done"
            )
            return 1
        if debug:
            raise
        detail = _one_line(str(exc)) or "no message"
        error(
            f"unexpected {type(exc).__name__}: {detail} (a bug in regprune or a plugin; "
            f"set {DEBUG_ENV}=1 to see the traceback and report it)"
        )
        return 1


def _interrupted_line(message: str) -> str:
    """An `Interrupted` message as the one ``interrupted ...`` line it is printed as."""
    return message if message.lower().startswith("interrupted") else f"interrupted: {message}"


def _interrupted(say: Callable[[str], None] = error) -> int:
    """A Ctrl-C or SIGTERM that no command turned into an `Interrupted` with its own story."""
    what = interrupts.signal_name(interrupts.last_signal())
    say(
        f"interrupted ({what}) before the command finished; what was done so far stays done:"
        " an interrupted apply resumes with `regprune apply PLAN_ID` (see `regprune show"
        " PLAN_ID`), and plan, ls and gc can simply run again"
    )
    return 130


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
