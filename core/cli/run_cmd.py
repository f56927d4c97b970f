"""``regprune run``: plan, approve, apply and optionally garbage-collect in one step (for cron)."""

from __future__ import annotations

import typer

from ..errors import ApprovalPending
from ..lifecycle import ItemStatus, PlanStatus
from .apply_cmd import apply_plan
from .context import get_context
from .flags import QuickFlags, json_flag, policy_flag, with_quick_flags, yes_flag
from .plan_cmd import make_plans, store_empty_flag
from .render import apply_result, gc_result, print_json, summary_line

RUN_HELP = """Plan, approve and apply each policy, then garbage-collect where asked: for cron.

Takes the same policy selection and quick-mode flags as `regprune plan`. Each
plan is approved by its policy's approver (--yes approves "cli" plans), applied,
and with --gc (or a policy's gc = true) the registry's garbage collector runs
once afterwards for every registry something was deleted from.

Exit code 1 when anything failed.
"""


def register(app: typer.Typer) -> None:
    @app.command("run", help=RUN_HELP, short_help="Plan, approve, apply (and gc) in one step.")
    @with_quick_flags
    def run(
        ctx: typer.Context,
        policy: str | None = policy_flag("Policy to run (default: every policy)."),
        yes: bool = yes_flag('Approve plans whose approval is "cli" without asking.'),
        gc: bool = typer.Option(
            False, "--gc", help="Garbage-collect afterwards (also when a policy sets gc = true)."
        ),
        as_json: bool = json_flag("Print plans, apply results and gc runs as JSON."),
        store_empty: bool = store_empty_flag(),
        *,
        quick: QuickFlags,
    ) -> None:
        cli = get_context(ctx)
        engine, plans = make_plans(cli, policy=policy, quick=quick, store_empty=store_empty)
        # What gc would refuse (a bad command, --delete-untagged on 2.x next to multi-arch
        # images) is refused before anything is applied: exit 2 with nothing changed.
        for name in dict.fromkeys(p.registry for p in plans if p.has_work and (gc or p.gc)):
            engine.gc_preflight(name, scan=True)
        report: dict = {"plans": [], "gc": []}
        failed = False
        collect: list[str] = []
        for plan in plans:
            entry = plan.to_json_dict()
            if not as_json:
                # No "Status: pending." here: the apply's own line says how it ended.
                nothing = "" if plan.has_work else " Nothing to apply."
                typer.echo(summary_line(plan, status=False) + nothing)
                if not plan.stored:  # plan tables are not printed here: say why it is empty
                    for warning in plan.warnings:
                        typer.echo(f"warning: {warning}", err=True)
            if not plan.has_work:
                entry["apply"] = None
                report["plans"].append(entry)
                continue
            try:
                result = apply_plan(engine, plan.id, yes=yes, as_json=as_json)
            except ApprovalPending as waiting:
                # Cron keeps going: the bot (or a later `regprune apply`) finishes this plan.
                entry["apply"] = {"plan_id": plan.id, "status": "waiting", "note": waiting.message}
                report["plans"].append(entry)
                if not as_json:
                    typer.echo(waiting.message)
                continue
            entry["apply"] = result.to_json_dict()
            report["plans"].append(entry)
            collects = bool((gc or plan.gc) and result.of(ItemStatus.DELETED))
            if not as_json:
                apply_result(result, gc_follows=collects)
            failed = failed or result.status != PlanStatus.DONE
            if collects and plan.registry not in collect:
                collect.append(plan.registry)
        for name in collect:
            collected = engine.gc(name)
            report["gc"].append(collected.to_json_dict())
            if not as_json:
                gc_result(collected)
            failed = failed or not collected.ok
        if as_json:
            print_json(report)
        if failed:
            raise typer.Exit(1)
