"""``regprune plan``: compute and store a plan; print what it deletes and keeps, and why."""

from __future__ import annotations

import sys
from typing import Any

import typer

from ..engine import Engine
from ..errors import ConfigError, UsageError
from ..frontends import decided_elsewhere, waiting_text
from ..models import Plan
from .context import CliContext, get_context
from .flags import (
    OutputFormat,
    QuickFlags,
    format_flag,
    json_flag,
    output_format,
    policy_flag,
    with_quick_flags,
)
from .options import quick_policy
from .render import plan_tables, write_plans_json
from .tsv import plans_tsv

PLAN_HELP = """Compute and store a plan: what would be deleted and kept, and why. Deletes nothing.

Plans every policy of the config, or the one named by --policy. With quick-mode
flags (--registry, --repo, --older-than, --keep, ...) it plans one policy built
from the flags instead, with no config file needed.

\b
Examples:
  regprune plan
  regprune plan --policy ci --json
  regprune plan --registry http://127.0.0.1:5000 --repo 'ci/*' --older-than 14d --keep 5 --keep-tag '^latest$'
"""


def store_empty_flag() -> Any:
    """``--store-empty``: store a plan even when its scope matched no repository."""
    return typer.Option(
        False,
        "--store-empty",
        help="Store the plan even when the policy's globs match no repository (such a "
        "plan is shown with a warning and not stored by default).",
    )


def make_plans(
    cli: CliContext, *, policy: str | None, quick: QuickFlags, store_empty: bool = False
) -> tuple[Engine, list[Plan]]:
    """Plans for one policy, every configured policy, or a quick-mode policy from flags.

    Every policy's scope is checked before any is planned: a repository name the
    registry does not have stops the run with nothing stored."""
    if quick.selects or (quick.registry and not policy):
        if policy:
            raise UsageError(
                "use either --policy or the quick-mode flags (--repo, --older-than, --keep, "
                "--keep-tag, --keep-semver, --tags, --exclude), not both"
            )
        settings, name = quick_policy(cli, quick)
        engine = cli.engine(settings)
        return engine, [engine.plan(name, store_empty=store_empty)]
    if quick.registry:
        raise UsageError(
            "--registry is a quick-mode flag; with --policy the policy names the registry"
        )
    if quick.username or quick.password_stdin:
        raise UsageError(
            "--username and --password-stdin go with quick mode's --registry; a configured "
            "policy's registry takes them from its [registry.NAME] username and password"
        )
    engine = cli.engine()
    names = [policy] if policy else sorted(engine.settings.policy)
    if not names:
        raise ConfigError("the config defines no [policy.NAME]; add one, or use quick mode")
    for name in names:
        engine.settings.get_policy(name)
    engine.validate()
    for name in names:
        engine.scope(name)
    return engine, [engine.plan(name, store_empty=store_empty) for name in names]


def register(app: typer.Typer) -> None:
    @app.command("plan", help=PLAN_HELP, short_help="Compute and store a plan (deletes nothing).")
    @with_quick_flags
    def plan(
        ctx: typer.Context,
        policy: str | None = policy_flag("Policy to plan (default: every policy)."),
        as_json: bool = json_flag(
            "Print the plan as JSON (a list when several policies are planned; the same as "
            "--format json)."
        ),
        fmt: str | None = format_flag(
            "table (default), tsv (a header row, then one tab-separated row per item of "
            "every plan) or json."
        ),
        no_keep: bool = typer.Option(False, "--no-keep", help="Do not list the kept images."),
        store_empty: bool = store_empty_flag(),
        *,
        quick: QuickFlags,
    ) -> None:
        chosen = output_format(fmt, as_json)
        cli = get_context(ctx)
        engine, plans = make_plans(cli, policy=policy, quick=quick, store_empty=store_empty)
        if chosen is OutputFormat.JSON:
            write_plans_json(plans, sys.stdout)
            return
        if chosen is OutputFormat.TSV:
            plans_tsv(plans, sys.stdout, show_keep=not no_keep)
            return
        for p in plans:
            plan_tables(p, engine.now(), show_keep=not no_keep)
            if not p.stored:
                continue  # its summary line said so
            if p.has_work:
                approver = engine.catalog.approvers.get(p.approval)
                if decided_elsewhere(approver):
                    # Its front end decides and applies it; `apply` here would only wait.
                    typer.echo(f"Plan {p.id} {waiting_text(approver)}.")
                else:
                    typer.echo(f"Apply it with: regprune apply {p.id}")
