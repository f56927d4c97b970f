"""What every command needs: settings, the state DB and the engine, opened lazily."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy
import typer

from ..config import (
    STATE_ENV,
    Settings,
    default_config_paths,
    find_config,
    find_state_path,
    load_settings,
)
from ..engine import Engine
from ..errors import ConfigError, UsageError
from ..frontends import collect_front_ends
from ..paths import PathProblem, describe_other, path_kind, shown_path
from ..plugin_manager import build_catalog
from ..state import State
from .progress import scan_progress
from .render import err_console

if TYPE_CHECKING:
    from ..notify.dispatch import ConfiguredNotifier
    from .reporting import RunReporting


@dataclass
class CliContext:
    """Global options and the objects built from them, shared by the commands of one run."""

    manager: pluggy.PluginManager
    config_path: str | None = None
    state_path: str | None = None
    verbose: bool = False
    argv: tuple[str, ...] = ()
    metrics_file: str | None = None
    pushgateway: str | None = None
    # The one-line error the command ended with (for its run report).
    last_error: str | None = None
    reporting: RunReporting | None = field(default=None, repr=False)
    # The [notify.NAME] notifiers, built (and so checked) with the settings.
    notifiers: list[ConfiguredNotifier] | None = field(default=None, repr=False)
    _settings: Settings | None = field(default=None, repr=False)
    _state: State | None = field(default=None, repr=False)
    _engines: list[Engine] = field(default_factory=list, repr=False)

    def has_config(self) -> bool:
        """Whether a config file is in use (raises if --config names a missing file)."""
        return self._settings is not None or find_config(self.config_path) is not None

    def settings(self, *, required: bool = True) -> Settings:
        """The config file's settings; an empty config when none exists and none is required."""
        if self._settings is None:
            path = find_config(self.config_path)
            if path is None:
                if required:
                    looked = " or ".join(str(path) for path in default_config_paths())
                    raise ConfigError(
                        f"no config file: there is no {looked}; create one (see "
                        "docs/configuration.md), pass --config or set REGPRUNE_CONFIG; or use "
                        "quick mode: --registry URL --repo GLOB"
                    )
                self._settings = Settings()
            else:
                # Each registry's type and its own keys are checked now, with the file's name;
                # the sections of this run's front ends are valid, any other is an error.
                catalog = build_catalog(self.manager)
                settings = load_settings(
                    Path(path),
                    backends=catalog.registry_backends,
                    front_ends=collect_front_ends(self.manager),
                )
                from ..notify.dispatch import build_notifiers

                # A bad [notify.NAME] is a config error like any other, before any work.
                try:
                    self.notifiers = build_notifiers(settings.notify, catalog)
                except ConfigError as exc:
                    raise ConfigError(f"{path}: {exc.message}") from None
                self._settings = settings
        return self._settings

    def http_requests(self) -> dict[tuple[str, str], int]:
        """Requests sent so far by the engines' registry clients: ``{(registry, method): n}``."""
        counts: dict[tuple[str, str], int] = {}
        for engine in self._engines:
            for name, client in engine._clients.items():
                for method, count in client.requests_by_method.items():
                    counts[(name, method)] = counts.get((name, method), 0) + count
        return counts

    def state(self) -> State:
        if self._state is None:
            path = find_state_path(self.state_path)
            self._check_state_path(path)
            try:
                self._state = State(path, notify=lambda line: typer.echo(line, err=True))
            except (OSError, ValueError, sqlite3.Error) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                filename = getattr(exc, "filename", None)
                if filename and str(filename) != str(path):
                    reason = f"{reason}: {filename}"
                raise UsageError(
                    f"cannot open the state DB {path}: {reason}; pass --state FILE or set "
                    f"{STATE_ENV} to a writable path"
                ) from None
        return self._state

    @staticmethod
    def _check_state_path(path: str | Path) -> None:
        """A state DB that is a directory, a device or a FIFO is refused before SQLite
        opens it (it would leave its -journal files beside /dev/null)."""
        if str(path) == ":memory:":
            return
        try:
            kind = path_kind(path)
        except PathProblem as exc:
            kind, what = "other", str(exc)
        else:
            what = "a directory" if kind == "directory" else describe_other(path)
        if kind in ("directory", "other"):
            raise UsageError(
                f"cannot open the state DB {shown_path(path)}: {what}; pass --state FILE or "
                f"set {STATE_ENV} to a regular file (or one that does not exist yet)"
            )

    def engine(self, settings: Settings | None = None) -> Engine:
        engine = Engine(settings or self.settings(), self.state(), manager=self.manager)
        # Scans draw their progress on stderr when it is a terminal, and nothing otherwise.
        engine.scan_progress = scan_progress(err_console)
        self._engines.append(engine)
        return engine

    def close(self) -> None:
        if self.verbose:
            for engine in self._engines:
                for name, client in engine._clients.items():
                    by_method = ", ".join(
                        f"{m} {n}" for m, n in sorted(client.requests_by_method.items())
                    )
                    typer.echo(
                        f"{name}: {client.request_count} HTTP requests ({by_method or 'none'})",
                        err=True,
                    )
        for engine in self._engines:
            engine.close()
        if self._state is not None:
            self._state.close()


def get_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj
