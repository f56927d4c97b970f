"""Listeners by kind, as in the slack-bolt starter template: each kind has ``register(app)``.

Callbacks only ack, call the service (which calls the engine) and render.  They
reach the service through the request context (``regprune.bots.slack.context``).
"""

from __future__ import annotations

from slack_bolt import App

from . import actions, commands


def register_listeners(app: App) -> None:
    """Register every listener of the bot on ``app``."""
    commands.register(app)
    actions.register(app)
