"""``regprune plugins``: installed plugins and the hooks they implement."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from ..frontends import collect_front_ends
from ..plugin_manager import build_catalog, plugin_rows
from .context import get_context
from .flags import json_flag
from .render import console, print_json


def register(app: typer.Typer) -> None:
    @app.command("plugins", short_help="List plugins and the hooks they implement.")
    def plugins(
        ctx: typer.Context,
        as_json: bool = json_flag("Print plugins and names as JSON."),
    ) -> None:
        """List installed plugins (built-in ones too), the hooks they implement, and the
        selectors, protectors, approvers, time sources, registry types, notifiers and front
        ends they register."""
        manager = get_context(ctx).manager
        rows = plugin_rows(manager)
        catalog = build_catalog(manager)
        registered = {
            "selectors": sorted(catalog.selectors),
            "protectors": sorted(catalog.protectors),
            "approvers": sorted(catalog.approvers),
            "time_sources": sorted(catalog.time_sources),
            "registry_types": sorted(catalog.registry_backends),
            "notifiers": sorted(catalog.notifiers),
            "front_ends": sorted(collect_front_ends(manager)),
        }
        if as_json:
            print_json({"plugins": rows, "registered": registered})
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("plugin", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("hooks", overflow="fold", ratio=1)
        for row in rows:
            kind = "built-in" if row["builtin"] else (row["distribution"] or "plugin")
            table.add_row(row["name"], kind, ", ".join(row["hooks"]))
        console.print(table)
        for kind, names in registered.items():
            console.print(f"{kind}: {', '.join(names) or '-'}")
