"""``regprune gc``: run the registry's garbage collector through the configured command."""

from __future__ import annotations

import typer

from .context import get_context
from .options import resolve_registry
from .render import gc_result, print_json


def register(app: typer.Typer) -> None:
    @app.command("gc")
    def gc(
        ctx: typer.Context,
        registry: str | None = typer.Option(
            None, "--registry", "-r", help="Registry name (default: the only one)."
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only report what GC would remove."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Garbage-collect a registry (before/after commands, bytes freed, warnings)."""
        cli = get_context(ctx)
        settings, name = resolve_registry(cli, registry)
        result = cli.engine(settings).gc(name, dry_run=dry_run)
        if as_json:
            print_json(result.to_json_dict())
        else:
            gc_result(result)
        if not result.ok:
            raise typer.Exit(1)
