"""``regprune show``: a stored plan with the status of each item."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from .context import get_context
from .flags import json_flag
from .render import plan_tables, print_json


def register(app: typer.Typer) -> None:
    @app.command("show", short_help="Show a stored plan and the outcome of each item.")
    def show(
        ctx: typer.Context,
        plan_id: str = typer.Argument(
            ..., metavar="PLAN_ID", help="Plan id (or a unique prefix of 4+ characters)."
        ),
        as_json: bool = json_flag("Print the plan, item statuses and approvals as JSON."),
    ) -> None:
        """Show a stored plan: what it deletes and keeps, its approvals and each item's outcome."""
        state = get_context(ctx).state()
        plan = state.plans.get(plan_id)
        statuses = state.plans.item_statuses(plan.id)
        approvals = state.approvals.of(plan.id)
        if as_json:
            data = plan.to_json_dict()
            for item in data["delete"]:
                item["status"], item["outcome"] = statuses[item["seq"]]
            for entry, untag in zip(data["untag"], plan.untag, strict=True):
                entry["status"], entry["outcome"] = statuses[untag.seq]
            data["approvals"] = [approval.to_json_dict() for approval in approvals]
            print_json(data)
            return
        plan_tables(plan, datetime.now(UTC), statuses=statuses)
        for approval in approvals:
            when = approval.at.strftime("%Y-%m-%d %H:%M:%S UTC") if approval.at else "?"
            note = f" ({approval.note})" if approval.note else ""
            typer.echo(
                f"{approval.decision} by {approval.by} via {approval.method} at {when}{note}"
            )
        counts: dict[str, int] = {}
        for status, _ in statuses.values():
            counts[status] = counts.get(status, 0) + 1
        if counts:
            typer.echo("items: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
