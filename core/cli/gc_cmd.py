"""``regprune gc``: run the registry's garbage collector through the configured command."""

from __future__ import annotations

import typer

from .context import get_context
from .flags import json_flag, registry_flag
from .options import resolve_registry
from .render import gc_result, print_json

GC_HELP = """Garbage-collect a registry with its configured command, to free the disk.

Runs [registry.NAME.gc] command (with its before/after commands, e.g. read-only
mode and a restart), under the registry's lock so no apply runs meanwhile.
Records the bytes freed when storage_path is set. --dry-run only reports what
the collector would remove; with [registry.NAME] storage set it also shows what
it would free per repository, worked out from the registry's storage.

Refused before anything runs (exit 2): a command that cannot run, and
--delete-untagged (-m) while the registry holds multi-arch images, unless
version = 3 is set or --allow-delete-untagged is given. Ctrl-C or SIGTERM stops
the GC command and still runs the after commands (exit 130).

Exit code 1 when the command failed.
"""


def register(app: typer.Typer) -> None:
    @app.command("gc", help=GC_HELP, short_help="Run the registry's garbage collector.")
    def gc(
        ctx: typer.Context,
        registry: str | None = registry_flag(
            "Configured registry to collect (default: the only one)."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Only report what GC would remove; change nothing."
        ),
        allow_delete_untagged: bool = typer.Option(
            False,
            "--allow-delete-untagged",
            help="Run a command with --delete-untagged on Distribution 2.x even though "
            "it deletes the platform manifests of multi-arch images.",
        ),
        as_json: bool = json_flag("Print the GC run as JSON."),
    ) -> None:
        cli = get_context(ctx)
        settings, name = resolve_registry(cli, registry, allow_url=False)
        result = cli.engine(settings).gc(
            name, dry_run=dry_run, allow_delete_untagged=allow_delete_untagged
        )
        if as_json:
            print_json(result.to_json_dict())
        else:
            gc_result(result)
        if not result.ok:
            raise typer.Exit(1)
