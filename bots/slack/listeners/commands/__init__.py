"""Slash commands: ``/regprune``."""

from __future__ import annotations

from slack_bolt import App

from .regprune_command import COMMAND, regprune_command


def register(app: App) -> None:
    """Register the ``/regprune`` command listener."""
    app.command(COMMAND)(regprune_command)
