"""``regprune apply``: approve (if needed) and delete exactly what a plan lists."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as Bar

from ..apply import Progress
from ..config import RegistrySettings, Settings
from ..engine import Engine, default_actor, is_interactive
from ..lifecycle import UNSUCCESSFUL, ItemStatus
from ..models import ApplyResult, ApprovalContext, PlanItem
from .context import CliContext, get_context
from .credentials import read_credentials, with_credentials
from .flags import PasswordStdin, Username, json_flag, yes_flag
from .render import apply_result, err_console, print_json

APPLY_HELP = """Apply a stored plan: ask its approver, re-check every tag, delete, record each outcome.

The plan's approver decides: "cli" asks at the terminal (--yes approves for
scripts; with no terminal and no --yes it refuses), "auto" approves, and a
method a front end registers waits for that front end's decision. Just before deleting, every tag of the affected repositories
is resolved again: an image whose tags changed since the plan is skipped.
Running apply again on an interrupted plan finishes the rest.

Exit code 1 when an item failed or the plan was rejected.
"""


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Progress]:
    """A "deleting N/M" bar on stderr, drawn from the first item done: never while the
    approver still asks (its question comes first, and nothing says "deleting" before
    a yes)."""
    if not enabled:
        yield lambda item, status, reason: None
        return
    bar = Bar(
        TextColumn(ItemStatus.DELETING),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
    )
    task = bar.add_task("", total=total)

    def advance(item: PlanItem, status: str, reason: str) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, advance=1, description=f"{item.repository} {status}")

    try:
        yield advance
    finally:
        bar.stop()


def apply_plan(engine: Engine, plan_id: str, *, yes: bool, as_json: bool) -> ApplyResult:
    plan = engine.state.plans.get(plan_id)
    context = ApprovalContext(assume_yes=yes, interactive=is_interactive(), actor=default_actor())
    with progress_bar(
        len(plan.delete), enabled=not as_json and err_console.is_terminal
    ) as progress:
        return engine.apply(plan.id, context=context, progress=progress)


def _with_plan_credentials(
    cli: CliContext, settings: Settings, plan_id: str, username: str | None, stdin: bool
) -> Settings:
    """Settings whose section for the plan's registry logs in as ``username``: a
    quick-mode plan's registry (known only by its URL) gets a section of its own."""
    plan = cli.state().plans.get(plan_id)
    credentials = read_credentials(username, stdin, plan.registry_url, dict(os.environ))
    if plan.registry not in settings.registry:
        settings = settings.with_registry(plan.registry, RegistrySettings(url=plan.registry_url))
    return with_credentials(settings, plan.registry, credentials)


def register(app: typer.Typer) -> None:
    @app.command("apply", help=APPLY_HELP, short_help="Approve and delete what a plan lists.")
    def apply(
        ctx: typer.Context,
        plan_id: str = typer.Argument(
            ...,
            metavar="PLAN_ID",
            help="Plan id (or a unique prefix of 4+ characters) from `regprune plan`.",
        ),
        yes: bool = yes_flag("Approve without asking (for scripts and cron)."),
        as_json: bool = json_flag("Print the deleted, skipped and failed items as JSON."),
        username: Username = None,
        password_stdin: PasswordStdin = False,
    ) -> None:
        cli = get_context(ctx)
        settings = cli.settings(required=False)
        if username or password_stdin:
            settings = _with_plan_credentials(cli, settings, plan_id, username, password_stdin)
        engine = cli.engine(settings)
        result = apply_plan(engine, plan_id, yes=yes, as_json=as_json)
        if as_json:
            print_json(result.to_json_dict())
        else:
            apply_result(result)
        if result.status in UNSUCCESSFUL or result.of(ItemStatus.FAILED):
            raise typer.Exit(1)
