"""``regprune apply``: approve (if needed) and delete exactly what a plan lists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..engine import Engine, default_actor, is_interactive
from ..models import ApplyResult, ApprovalContext, PlanItem
from .context import get_context
from .render import apply_result, err_console, print_json


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator:
    if not enabled:
        yield lambda item, status, reason: None
        return
    with Progress(
        TextColumn("deleting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=total)

        def advance(item: PlanItem, status: str, reason: str) -> None:
            progress.update(task, advance=1, description=f"{item.repository} {status}")

        yield advance


def apply_plan(engine: Engine, plan_id: str, *, yes: bool, as_json: bool) -> ApplyResult:
    plan = engine.state.get_plan(plan_id)
    context = ApprovalContext(assume_yes=yes, interactive=is_interactive(), actor=default_actor())
    with progress_bar(len(plan.delete), enabled=not as_json) as progress:
        return engine.apply(plan.id, context=context, progress=progress)


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply(
        ctx: typer.Context,
        plan_id: str = typer.Argument(
            ..., help="Plan id (or a unique prefix) from `regprune plan`."
        ),
        yes: bool = typer.Option(
            False, "--yes", "-y", help="Approve without asking (for scripts)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print deleted, skipped and failed items as JSON."
        ),
    ) -> None:
        """Apply a plan: ask its approver, re-check every tag, delete, record each outcome."""
        cli = get_context(ctx)
        engine = cli.engine(cli.settings(required=False))
        result = apply_plan(engine, plan_id, yes=yes, as_json=as_json)
        if as_json:
            print_json(result.to_json_dict())
        else:
            apply_result(result)
        if result.status in ("failed", "rejected") or result.of("failed"):
            raise typer.Exit(1)
