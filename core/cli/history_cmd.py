"""``regprune history``: the audit log of plans, approvals, deletions and GC runs."""

from __future__ import annotations

import typer
from rich.table import Table

from .context import get_context
from .render import console, print_json


def register(app: typer.Typer) -> None:
    @app.command("history")
    def history(
        ctx: typer.Context,
        limit: int = typer.Option(50, "--limit", "-n", min=1, help="Most recent events to show."),
        plan: str | None = typer.Option(None, "--plan", help="Only events of this plan."),
        registry: str | None = typer.Option(
            None, "--registry", "-r", help="Only events of this registry."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show the audit log, newest first."""
        state = get_context(ctx).state()
        plan_id = state.get_plan(plan).id if plan else None
        events = state.audit_events(limit=limit, registry=registry, plan_id=plan_id)
        if as_json:
            print_json(events)
            return
        table = Table()
        for column in ("when", "event", "registry", "plan", "actor", "details"):
            table.add_column(column, overflow="fold")
        for event in events:
            details = event.get("details") or {}
            text = ", ".join(f"{k}={v}" for k, v in details.items() if v not in (None, "", [], {}))
            table.add_row(
                str(event.get("at", ""))[:19],
                event["event"],
                event.get("registry") or "",
                event.get("plan_id") or "",
                event.get("actor") or "",
                text,
            )
        console.print(table)
