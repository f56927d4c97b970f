"""``regprune plans``: the stored plans, newest first, with status, age and counts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from ..durations import format_duration
from ..engine import Engine
from ..errors import UsageError
from ..formatting import human_bytes
from ..lifecycle import ItemStatus, PlanStatus
from ..state import PlanRow
from .context import get_context
from .flags import OutputFormat, format_flag, json_flag, output_format, registry_flag
from .render import console, print_json
from .tsv import plan_list_tsv

PLANS_HELP = """List stored plans, newest first: id, policy, registry, status, age and counts.

\b
Columns: delete (images the plan deletes), del/skip/fail (how many of its
manifests were deleted, skipped and failed so far), untag (tags it removes from
images that stay; removed/planned once applied) and bytes (what gc frees after
it; ~ marks an estimate).

\b
Examples:
  regprune plans
  regprune plans --status pending --status approved
  regprune plans --policy ci --limit 5 --json
  regprune plans --status done --format tsv | cut -f1,4,13
"""


OUTCOMES = (ItemStatus.DELETED, ItemStatus.SKIPPED, ItemStatus.FAILED)
StatusFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        metavar="STATUS",
        help="Only plans with this status (repeatable): pending, approved, rejected, "
        "expired, applying, done, failed or cancelled.",
    ),
]


def _statuses(values: list[str]) -> list[str]:
    known = [str(status) for status in PlanStatus]
    wrong = [value for value in values if value not in known]
    if wrong:
        raise UsageError(f"--status {wrong[0]!r}: not a plan status (one of {', '.join(known)})")
    return list(dict.fromkeys(values))


def _bytes(row: PlanRow) -> str:
    return ("" if row.bytes_exact else "~") + human_bytes(row.bytes)


def _untag(row: PlanRow) -> str:
    if not row.untags:
        return "-"
    removed = row.untag_items.get(ItemStatus.DELETED, 0)
    return f"{removed}/{row.untags}" if removed else str(row.untags)


def _table(rows: list[PlanRow], engine: Engine) -> None:
    now = engine.now()
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True
    )
    table.add_column("plan", no_wrap=True)
    # Names fold, counts never do: at 80 columns a registry URL takes two lines.
    table.add_column("policy", overflow="fold", ratio=1, min_width=6)
    table.add_column("registry", overflow="fold", ratio=2, min_width=8)
    table.add_column("status", no_wrap=True)
    table.add_column("age", no_wrap=True, justify="right")
    for name in ("delete", "del/skip/fail", "untag", "bytes"):
        table.add_column(name, no_wrap=True, justify="right")
    for row in rows:
        table.add_row(
            row.id,
            row.policy,
            row.registry,
            row.status,
            format_duration(max(now - row.created_at, now - now)),
            str(row.images),
            "/".join(str(row.items.get(status, 0)) for status in OUTCOMES),
            _untag(row),
            _bytes(row),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("plans", help=PLANS_HELP, short_help="List stored plans, newest first.")
    def plans(
        ctx: typer.Context,
        status: StatusFilter = None,
        policy: str | None = typer.Option(
            None, "--policy", "-p", metavar="NAME", help="Only the plans of this policy."
        ),
        registry: str | None = registry_flag("Only the plans of this registry (its name)."),
        limit: int = typer.Option(
            20,
            "--limit",
            "-n",
            min=1,
            max=1_000_000,
            metavar="N",
            help="How many recent plans to show (1 to 1000000).",
        ),
        as_json: bool = json_flag("Print the plans as JSON (the same as --format json)."),
        fmt: str | None = format_flag(
            "table (default), tsv (a header row, then one tab-separated row per plan) or json."
        ),
    ) -> None:
        chosen = output_format(fmt, as_json)
        cli = get_context(ctx)
        wanted = _statuses(status or [])
        # No config needed: the list reads only the state DB.
        engine = cli.engine(cli.settings(required=False))
        rows = engine.state.plans.listing(
            limit=limit, statuses=wanted, policy=policy, registry=registry
        )
        if chosen is OutputFormat.JSON:
            print_json([row.to_json_dict() for row in rows])
        elif chosen is OutputFormat.TSV:
            plan_list_tsv(rows, sys.stdout)
        elif not rows:
            console.print("no plans")
        else:
            _table(rows, engine)
