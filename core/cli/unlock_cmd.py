"""``regprune unlock``: remove a registry's lock left by a process that is gone."""

from __future__ import annotations

import typer

from ..engine import lock_name
from ..errors import UsageError
from .context import CliContext, get_context
from .options import is_url
from .render import print_json


def register(app: typer.Typer) -> None:
    @app.command("unlock", short_help="Remove a stale apply/gc lock (or list locks).")
    def unlock(
        ctx: typer.Context,
        registry: str | None = typer.Argument(
            None,
            metavar="REGISTRY",
            help="Registry whose lock to remove: the name `regprune unlock` lists, a configured "
            "registry name or its URL; without it, list the current locks.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the current locks as JSON."),
    ) -> None:
        """Remove a registry's apply/gc lock, only when the process holding it is really gone.

        Only one apply or gc per registry runs at a time. A lock whose process died
        on this host is taken over automatically; use this for one left by a process
        on another machine. Without REGISTRY, list the current locks.
        """
        cli = get_context(ctx)
        state = cli.state()
        if registry is None:
            locks = state.locks.current()
            if as_json:
                print_json([lock.to_json_dict() for lock in locks])
            elif not locks:
                typer.echo("no locks")
            for lock in [] if as_json else locks:
                since = lock.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC")
                stale = " (stale)" if lock.stale else ""
                typer.echo(
                    f"{lock.name}: {lock.purpose} by "
                    f"{lock.hostname}:{lock.pid} since {since}{stale}"
                )
            return
        name = _lock_to_break(cli, registry, {lock.name for lock in state.locks.current()})
        shown = registry if name == registry else f"{registry} ({name})"
        if state.locks.break_lock(name):
            typer.echo(f"removed the lock of registry {shown!r}")
        else:
            typer.echo(f"registry {shown!r} was not locked")


def _lock_to_break(cli: CliContext, registry: str, held: set[str]) -> str:
    """The lock a REGISTRY argument means: a lock name as listed (and as LockHeld names
    it), a registry URL in any spelling, or a registry name from the config."""
    if registry in held:
        return registry
    if is_url(registry):
        try:
            return lock_name(registry)
        except ValueError as exc:
            raise UsageError(f"REGISTRY: {exc}") from None
    if cli.has_config():
        settings = cli.settings().registry.get(registry)
        if settings is not None:
            return lock_name(settings.url)
    return registry
