"""``regprune cancel``: give up on a plan that is pending, approved or failed."""

from __future__ import annotations

import typer

from ..engine import default_actor
from ..errors import UsageError
from .context import get_context

CANCELLABLE = ("pending", "approved", "failed")


def register(app: typer.Typer) -> None:
    @app.command("cancel", short_help="Give up on a pending, approved or failed plan.")
    def cancel(
        ctx: typer.Context,
        plan_id: str = typer.Argument(..., metavar="PLAN_ID", help="Plan id (or a unique prefix)."),
    ) -> None:
        """Cancel a plan so it is never applied; plan retention removes it later.

        Works on a plan that is pending, approved, or failed part-way (what it
        already deleted stays deleted). A plan being applied cannot be cancelled.
        """
        state = get_context(ctx).state()
        plan = state.plans.get(plan_id)
        if not state.plans.set_status(plan.id, "cancelled", expected=CANCELLABLE):
            current = state.plans.get(plan.id).status
            raise UsageError(
                f"plan {plan.id} is {current}; only a pending, approved or failed plan can be cancelled"
            )
        state.audit_log.record(
            "plan.cancelled",
            registry=plan.registry,
            plan_id=plan.id,
            actor=default_actor(),
            details={"method": "cli", "was": plan.status},
        )
        typer.echo(f"Plan {plan.id} is cancelled (it was {plan.status}).")
