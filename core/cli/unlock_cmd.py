"""``regprune unlock``: remove a registry's lock left by a process that is gone."""

from __future__ import annotations

import typer

from ..engine import lock_name
from .context import get_context


def register(app: typer.Typer) -> None:
    @app.command("unlock")
    def unlock(
        ctx: typer.Context,
        registry: str = typer.Argument(..., help="Registry name whose apply/gc lock to remove."),
    ) -> None:
        """Remove a stale apply/gc lock. Only when the process holding it is really gone."""
        state = get_context(ctx).state()
        if state.break_lock(lock_name(registry)):
            typer.echo(f"removed the lock of registry {registry!r}")
        else:
            typer.echo(f"registry {registry!r} was not locked")
