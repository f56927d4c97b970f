"""``regprune ls``: images ordered by creation time, with tags, digest, size and age."""

from __future__ import annotations

import typer

from ..engine import images_by_time
from .context import get_context
from .options import resolve_registry
from .render import image_json, images_table, print_json


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls(
        ctx: typer.Context,
        repository: str | None = typer.Argument(
            None, help="Repository or glob (default: every repository)."
        ),
        registry: str | None = typer.Option(
            None, "--registry", "-r", help="Registry name from the config, or a URL."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List images, oldest first, with tags, digest, size and age."""
        cli = get_context(ctx)
        settings, name = resolve_registry(cli, registry)
        engine = cli.engine(settings)
        scans = engine.list_images(name, [repository or "*"])
        images = images_by_time(scans)
        if as_json:
            print_json([image_json(image) for image in images])
        else:
            images_table(images, engine.now())
