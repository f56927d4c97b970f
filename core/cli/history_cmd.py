"""``regprune history``: the audit log of plans, approvals, deletions and GC runs."""

from __future__ import annotations

import sys

import typer
from rich import box
from rich.table import Table

from ..errors import UsageError
from .context import get_context
from .flags import OutputFormat, format_flag, json_flag, output_format, registry_flag
from .render import console, event_summary, print_json
from .tsv import events_tsv


def register(app: typer.Typer) -> None:
    @app.command("history", short_help="Show the audit log, newest first.")
    def history(
        ctx: typer.Context,
        limit: int = typer.Option(
            50,
            "--limit",
            "-n",
            min=1,
            max=1_000_000,
            metavar="N",
            help="How many recent events to show (1 to 1000000).",
        ),
        plan: str | None = typer.Option(
            None, "--plan", metavar="PLAN_ID", help="Only the events of this plan."
        ),
        registry: str | None = registry_flag("Only the events of this registry."),
        as_json: bool = json_flag("Print the events as JSON (the same as --format json)."),
        fmt: str | None = format_flag(
            "table (default), tsv (a header row, then one tab-separated row per event) or json."
        ),
    ) -> None:
        """Show the audit log, newest first: plans, approvals, deletions, skips and GC runs."""
        chosen = output_format(fmt, as_json)
        state = get_context(ctx).state()
        # A plan removed by retention keeps its events: --plan still finds them.
        if plan is not None and not plan.strip():
            raise UsageError("--plan '': empty; give a plan ID (see `regprune plans`)")
        plan_id = state.plans.id_of(plan) if plan else None
        events = state.audit_log.events(limit=limit, registry=registry, plan_id=plan_id)
        if chosen is OutputFormat.JSON:
            print_json([event.to_json_dict() for event in events])
            return
        if chosen is OutputFormat.TSV:
            events_tsv(events, sys.stdout, event_summary)
            return
        if not events:
            console.print("no events")
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("when (UTC)", no_wrap=True)
        table.add_column("event", no_wrap=True)
        table.add_column("plan", no_wrap=True)
        table.add_column("registry", overflow="fold", ratio=1)
        table.add_column("details", overflow="fold", ratio=4)
        for event in events:
            at = event.at
            table.add_row(
                at.strftime("%Y-%m-%d %H:%M") if at else "",
                event.event,
                event.plan_id or "",
                event.registry or "",
                event_summary(event),
            )
        console.print(table)
