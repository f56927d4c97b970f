"""``regprune plan``: compute and store a plan; print what it deletes and keeps, and why."""

from __future__ import annotations

import typer

from ..engine import Engine
from ..errors import ConfigError, UsageError
from ..frontends import decided_elsewhere, waiting_text
from ..models import Plan
from .context import CliContext, get_context
from .options import quick_policy
from .render import plan_tables, print_json

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


class QuickOptions:
    """The flags of quick mode, shared by ``plan`` and ``run``."""

    registry = typer.Option(
        None,
        "--registry",
        "-r",
        metavar="URL|NAME",
        help="Quick mode: registry URL (http://host:port) or a registry name from the config.",
    )
    repo = typer.Option(
        [], "--repo", metavar="GLOB", help="Quick mode: repository glob, e.g. 'ci/*' (repeatable)."
    )
    exclude = typer.Option(
        [],
        "--exclude",
        metavar="GLOB",
        help="Quick mode: repository glob to leave out (repeatable).",
    )
    tags = typer.Option(
        None, "--tags", metavar="REGEX", help="Quick mode: only consider tags matching this regex."
    )
    older_than = typer.Option(
        None,
        "--older-than",
        metavar="DURATION",
        help="Quick mode: select images older than this (units s, m, h, d, w: 14d, 12h).",
    )
    keep = typer.Option(
        None,
        "--keep",
        metavar="N",
        max=1_000_000,
        help="Quick mode: keep the newest N images per repository, select the rest.",
    )
    keep_tag = typer.Option(
        [],
        "--keep-tag",
        metavar="REGEX",
        help="Quick mode: never delete images with a tag matching this regex (repeatable).",
    )
    approval = typer.Option(
        "cli",
        "--approval",
        metavar="METHOD",
        help="Quick mode: who approves: cli (prompt or --yes), auto, or a method a front end "
        "registers (see `regprune plugins`).",
    )


def make_plans(
    cli: CliContext,
    *,
    policy: str | None,
    registry: str | None,
    repo: list[str],
    exclude: list[str],
    tags: str | None,
    older_than: str | None,
    keep: int | None,
    keep_tag: list[str],
    approval: str,
) -> tuple[Engine, list[Plan]]:
    """Plans for one policy, every configured policy, or a quick-mode policy from flags."""
    quick = bool(repo or older_than is not None or keep is not None or keep_tag or tags or exclude)
    if quick or (registry and not policy):
        if policy:
            raise UsageError(
                "use either --policy or the quick-mode flags (--repo, --older-than, --keep, "
                "--keep-tag, --tags, --exclude), not both"
            )
        settings, name = quick_policy(
            cli,
            registry=registry,
            repos=repo,
            exclude=exclude,
            tags=tags,
            older_than=older_than,
            keep=keep,
            keep_tags=keep_tag,
            approval=approval,
        )
        engine = cli.engine(settings)
        return engine, [engine.plan(name)]
    if registry:
        raise UsageError(
            "--registry is a quick-mode flag; with --policy the policy names the registry"
        )
    engine = cli.engine()
    names = [policy] if policy else sorted(engine.settings.policy)
    if not names:
        raise ConfigError("the config defines no [policy.NAME]; add one, or use quick mode")
    for name in names:
        engine.settings.get_policy(name)
    engine.validate()
    return engine, [engine.plan(name) for name in names]


def register(app: typer.Typer) -> None:
    @app.command("plan", help=PLAN_HELP, short_help="Compute and store a plan (deletes nothing).")
    def plan(
        ctx: typer.Context,
        policy: str | None = typer.Option(
            None, "--policy", "-p", metavar="NAME", help="Policy to plan (default: every policy)."
        ),
        as_json: bool = typer.Option(
            False,
            "--json",
            help="Print the plan as JSON (a list when several policies are planned).",
        ),
        no_keep: bool = typer.Option(False, "--no-keep", help="Do not list the kept images."),
        registry: str | None = QuickOptions.registry,
        repo: list[str] = QuickOptions.repo,
        exclude: list[str] = QuickOptions.exclude,
        tags: str | None = QuickOptions.tags,
        older_than: str | None = QuickOptions.older_than,
        keep: int | None = QuickOptions.keep,
        keep_tag: list[str] = QuickOptions.keep_tag,
        approval: str = QuickOptions.approval,
    ) -> None:
        cli = get_context(ctx)
        engine, plans = make_plans(
            cli,
            policy=policy,
            registry=registry,
            repo=repo,
            exclude=exclude,
            tags=tags,
            older_than=older_than,
            keep=keep,
            keep_tag=keep_tag,
            approval=approval,
        )
        if as_json:
            data = [p.to_json_dict() for p in plans]
            print_json(data[0] if len(data) == 1 else data)
            return
        for p in plans:
            plan_tables(p, engine.now(), show_keep=not no_keep)
            if p.delete:
                approver = engine.catalog.approvers.get(p.approval)
                if decided_elsewhere(approver):
                    # Its front end decides and applies it; `apply` here would only wait.
                    typer.echo(f"Plan {p.id} {waiting_text(approver)}.")
                else:
                    typer.echo(f"Apply it with: regprune apply {p.id}")
