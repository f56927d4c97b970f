"""Adds ``regprune bot slack`` to the command line.

Registered in ``DEFAULT_PLUGINS``; it must stay light: slack_bolt is imported
only when the command runs, so the CLI starts as fast without it.
"""

from __future__ import annotations

import typer

from regprune import hookimpl


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
        )

    cli.add_typer(bot, name="bot")
