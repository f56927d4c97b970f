"""``regprune ls``: images ordered by creation time, with tags, digest, size and age."""

from __future__ import annotations

import os
import sys

import typer

from ..engine import images_by_time
from ..errors import UsageError
from ..repository_names import repository_problem
from .context import get_context
from .credentials import read_credentials, with_credentials
from .flags import (
    OutputFormat,
    PasswordStdin,
    Username,
    format_flag,
    json_flag,
    output_format,
    registry_flag,
)
from .options import resolve_registry
from .render import image_json, images_table, print_json
from .tsv import images_tsv


def register(app: typer.Typer) -> None:
    @app.command("ls", short_help="List images, oldest first.")
    def ls(
        ctx: typer.Context,
        repository: str | None = typer.Argument(
            None,
            metavar="REPOSITORY",
            help="Repository or glob, e.g. 'ci/*' (default: every repository).",
        ),
        registry: str | None = registry_flag(
            "Registry URL or a registry name from the config (default: the only one).",
            metavar="URL|NAME",
        ),
        as_json: bool = json_flag("Print the images as JSON (the same as --format json)."),
        fmt: str | None = format_flag(
            "table (default), tsv (a header row, then one tab-separated row per image) or json."
        ),
        username: Username = None,
        password_stdin: PasswordStdin = False,
    ) -> None:
        """List images per repository, oldest first, with tags, digest, size and age.

        An image is a manifest digest with every tag pointing to it; signatures and
        attestations are counted with the image they belong to.
        """
        chosen = output_format(fmt, as_json)
        if repository is not None and (problem := repository_problem(repository)):
            # Before any request: the registry would answer a bad name with a 301 or a 500.
            raise UsageError(f"REPOSITORY: {problem}")
        cli = get_context(ctx)
        settings, name = resolve_registry(cli, registry)
        where = registry or settings.get_registry(name).url
        credentials = read_credentials(username, password_stdin, where, dict(os.environ))
        engine = cli.engine(with_credentials(settings, name, credentials))
        scans = engine.list_images(name, ["*" if repository is None else repository])
        images = images_by_time(scans)
        if chosen is OutputFormat.JSON:
            print_json([image_json(image) for image in images])
        elif chosen is OutputFormat.TSV:
            images_tsv(images, sys.stdout)
        else:
            images_table(images, engine.now())
