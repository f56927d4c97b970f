"""The Slack front end as a plugin: its ``[slack]`` section, the ``slack`` approver and
``regprune bot slack``.

Registered through the ``regprune`` entry point of regprune's own distribution
(pyproject.toml), which makes it a built-in: it loads unless blocked
(``REGPRUNE_BLOCK_PLUGINS=slack``).  It must stay light: slack_bolt is imported
only when the command runs, so the CLI starts as fast without it.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy
import typer

from regprune import hookimpl
from regprune.frontends import FrontEnd, approvals_decided_by
from regprune.lifecycle import Decision
from regprune.models import Approval, ApprovalContext, Approver, Plan

from .settings import NAME, SECTION, SlackSettings

METHOD = "slack"
"""The approval method (a policy's ``approval``) whose decisions are made in Slack."""

FRONT_END = FrontEnd(
    name=NAME,
    settings=SlackSettings,
    section=SECTION,
    title="Slack",
    description="Posts plans to a channel; approvers click Approve or Reject.",
)


class SlackApprover:
    """Approval happens in Slack; the command line can only wait for it (``--yes`` does not count)."""

    decided_elsewhere = True
    front_end = NAME
    waiting = "waits for approval in Slack; the bot applies it"

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        return Approval(
            Decision.PENDING,
            "",
            METHOD,
            note="approve it in Slack; `regprune apply` runs it once approved there",
        )


def slack_approvals(manager: pluggy.PluginManager | None = None) -> frozenset[str]:
    """The approval methods whose decisions are made in Slack: those whose approver says
    the Slack front end decides (``decided_elsewhere``, ``front_end``), found by property."""
    from regprune.plugin_manager import build_catalog, get_plugin_manager

    approvers = build_catalog(manager or get_plugin_manager()).approvers
    return approvals_decided_by(approvers, NAME)


@hookimpl
def register_front_ends(register: Callable[[FrontEnd], None]) -> None:
    """Register the Slack front end and its ``[slack]`` settings."""
    register(FRONT_END)


@hookimpl
def register_approvers(register: Callable[[str, Approver], None]) -> None:
    """Register the ``slack`` approval method."""
    register(METHOD, SlackApprover())


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """Register ``regprune bot slack``."""
    bot = typer.Typer(
        name="bot",
        help="Run a chat bot front end (Slack).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @bot.command("slack")
    def slack(
        ctx: typer.Context,
        http: bool = typer.Option(
            False, "--http", help="HTTP mode (endpoint /slack/events) instead of Socket Mode."
        ),
        port: int = typer.Option(3000, "--port", min=0, max=65535, help="HTTP mode: port."),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="HTTP mode: address to bind (default loopback only)."
        ),
        poll_interval: float = typer.Option(
            15.0,
            "--poll-interval",
            min=1.0,
            help="Seconds between looks at the state DB for plans to post or expire.",
        ),
    ) -> None:
        """Run the Slack approval bot (tokens from SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET)."""
        from regprune.cli.context import get_context
        from regprune.config import find_state_path

        from .runner import run_bot

        cli_context = get_context(ctx)
        settings = cli_context.settings()
        run_bot(
            settings,
            find_state_path(cli_context.state_path),
            http=http,
            host=host,
            port=port,
            poll_interval=poll_interval,
            verbose=cli_context.verbose,
        )

    cli.add_typer(bot, name="bot")
