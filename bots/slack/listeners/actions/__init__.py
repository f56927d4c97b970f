"""Block actions: the Approve and Reject buttons of a posted plan."""

from __future__ import annotations

from slack_bolt import App

from ...blocks import APPROVE_ACTION, REJECT_ACTION
from .decision import approve_callback, reject_callback


def register(app: App) -> None:
    """Register the button listeners (``regprune_approve`` / ``regprune_reject``)."""
    app.action(APPROVE_ACTION)(approve_callback)
    app.action(REJECT_ACTION)(reject_callback)
