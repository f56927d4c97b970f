"""``regprune state prune``: remove old plans from the state DB, optionally VACUUM it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer

from ..config import NEVER
from ..durations import parse_duration
from ..errors import UsageError
from ..state import FINAL_PLAN_STATUSES, PruneResult
from .context import get_context
from .render import human_bytes, print_json

PRUNE_HELP = f"""Remove old plans from the state DB, with their items and approvals.

Removes plans that finished ({", ".join(FINAL_PLAN_STATUSES)}) and pending plans
nobody approved, once created and last changed more than DURATION ago (default:
[state] plan_retention, "90d"). A pending plan still open for approval stays.
Approved, applying and failed plans are NEVER removed: apply resumes them.

The audit log keeps every event of a removed plan (regprune history --plan ID);
regprune show says the plan was removed by retention. The same retention also
runs automatically after each plan is stored. Digest cache and first-seen
times are kept.

The freed space is reused by new plans; --vacuum also shrinks the file now.
"""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _older_than(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None


def _report(result: PruneResult | None, age: str, retention_off: bool) -> None:
    if result is None:
        if retention_off:
            typer.echo(
                f'plan retention is off ([state] plan_retention = "{NEVER}"): no plans removed;'
                " pass --older-than DURATION to remove old plans once"
            )
        return
    verb = "would remove" if result.dry_run else "removed"
    if result.plans:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(result.by_status.items()))
        typer.echo(
            f"{verb} {_plural(result.plans, 'plan')} older than {age} ({statuses}):"
            f" {_plural(result.items, 'item')}, {_plural(result.approvals, 'approval')},"
            f" {human_bytes(result.bytes)} of plan content"
        )
    else:
        typer.echo(f"no plans older than {age} to remove")
    if result.kept:
        typer.echo(
            f"kept {_plural(result.kept, 'older plan')}: approved, applying and failed plans"
            " (work left) and pending plans still open for approval are never removed"
        )


def register(app: typer.Typer) -> None:
    state_app = typer.Typer(
        name="state",
        help="Look after the state DB: plan retention and its size on disk.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @state_app.command(
        "prune", help=PRUNE_HELP, short_help="Remove old finished and unapproved plans."
    )
    def prune(
        ctx: typer.Context,
        older_than: str | None = typer.Option(
            None,
            "--older-than",
            metavar="DURATION",
            help="Remove plans older than this, e.g. 30d (default: [state] plan_retention).",
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Only report what would be removed; change nothing."
        ),
        vacuum: bool = typer.Option(
            False,
            "--vacuum",
            help="Then rebuild the DB file to give the freed space back to the disk "
            "(refused while an apply or gc runs; needs free space about twice the DB size).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
    ) -> None:
        cli = get_context(ctx)
        age = _older_than(older_than)  # bad input fails before the DB is opened
        settings = cli.settings(required=False)
        engine = cli.engine(settings)
        size = engine.state.file_size()
        result, sizes = engine.prune_plans(age, dry_run=dry_run, vacuum=vacuum)
        retention_off = age is None and settings.state.retention is None
        if as_json:
            data: dict[str, Any] = result.to_json_dict() if result is not None else {"plans": 0}
            data.update(
                older_than=older_than or (None if retention_off else settings.state.plan_retention),
                dry_run=dry_run,
                file_bytes=size,
                vacuum=None
                if sizes is None
                else {"bytes_before": sizes[0], "bytes_after": sizes[1]},
            )
            print_json(data)
            return
        _report(result, older_than or settings.state.plan_retention, retention_off)
        if sizes is not None:
            typer.echo(f"vacuumed the state DB: {human_bytes(sizes[0])} -> {human_bytes(sizes[1])}")
        elif dry_run:
            typer.echo(f"the state DB takes {human_bytes(size)} on disk")
        elif result is not None and result.plans:
            typer.echo("new plans reuse the freed space; pass --vacuum to shrink the file now")

    app.add_typer(state_app, name="state")
