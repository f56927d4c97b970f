"""``regprune show``: a stored plan with the status of each item."""

from __future__ import annotations

import typer

from .context import get_context
from .render import plan_tables, print_json


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show(
        ctx: typer.Context,
        plan_id: str = typer.Argument(..., help="Plan id (or a unique prefix)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show a stored plan, its approvals and the outcome of each item."""
        cli = get_context(ctx)
        state = cli.state()
        plan = state.get_plan(plan_id)
        statuses = state.item_statuses(plan.id)
        if as_json:
            data = plan.to_json_dict()
            for item in data["delete"]:
                item["status"], item["outcome"] = statuses[item["seq"]]
            data["approvals"] = state.approvals(plan.id)
            print_json(data)
            return
        from datetime import UTC, datetime

        plan_tables(plan, datetime.now(UTC))
        for approval in state.approvals(plan.id):
            typer.echo(
                f"{approval['decision']} by {approval['by']} via {approval['method']} at {approval['at']}"
            )
        counts: dict[str, int] = {}
        for status, _ in statuses.values():
            counts[status] = counts.get(status, 0) + 1
        typer.echo("items: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
