"""``regprune unlock``: remove a registry's lock left by a process that is gone."""

from __future__ import annotations

import typer

from ..engine import lock_name
from .context import get_context
from .render import print_json


def register(app: typer.Typer) -> None:
    @app.command("unlock", short_help="Remove a stale apply/gc lock (or list locks).")
    def unlock(
        ctx: typer.Context,
        registry: str | None = typer.Argument(
            None,
            metavar="REGISTRY",
            help="Registry name whose lock to remove; without it, list the current locks.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the current locks as JSON."),
    ) -> None:
        """Remove a registry's apply/gc lock, only when the process holding it is really gone.

        Only one apply or gc per registry runs at a time. A lock whose process died
        on this host is taken over automatically; use this for one left by a process
        on another machine. Without REGISTRY, list the current locks.
        """
        state = get_context(ctx).state()
        if registry is None:
            locks = state.locks()
            if as_json:
                print_json(locks)
            elif not locks:
                typer.echo("no locks")
            for lock in [] if as_json else locks:
                since = lock["acquired_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
                stale = " (stale)" if lock["stale"] else ""
                typer.echo(
                    f"{lock['name']}: {lock['purpose']} by "
                    f"{lock['hostname']}:{lock['pid']} since {since}{stale}"
                )
            return
        name = registry
        if state.break_lock(lock_name(name)):
            typer.echo(f"removed the lock of registry {name!r}")
        else:
            typer.echo(f"registry {name!r} was not locked")
