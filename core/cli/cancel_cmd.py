"""``regprune cancel``: give up on a plan that is pending, approved or failed."""

from __future__ import annotations

import typer

from ..engine import default_actor
from ..errors import UsageError
from ..lifecycle import CANCELLABLE
from .context import get_context

METHOD = "cli"


def register(app: typer.Typer) -> None:
    @app.command("cancel", short_help="Give up on a pending, approved or failed plan.")
    def cancel(
        ctx: typer.Context,
        plan_id: str = typer.Argument(..., metavar="PLAN_ID", help="Plan id (or a unique prefix)."),
    ) -> None:
        """Cancel a plan so it is never applied; plan retention removes it later.

        Works on a plan that is pending, approved, or failed part-way (what it
        already deleted stays deleted). A plan being applied cannot be cancelled.
        The same rule holds in every front end (the Slack bot included).
        """
        cli = get_context(ctx)
        # No config needed: cancelling reads and writes only the state DB.
        engine = cli.engine(cli.settings(required=False))
        plan = engine.state.plans.get(plan_id)
        was = engine.cancel(plan, actor=default_actor(), method=METHOD)
        if was is None:
            current = engine.state.plans.get(plan.id).status
            allowed = ", ".join(CANCELLABLE[:-1]) + f" or {CANCELLABLE[-1]}"
            raise UsageError(f"plan {plan.id} is {current}; only a {allowed} plan can be cancelled")
        typer.echo(f"Plan {plan.id} is cancelled (it was {was}).")
