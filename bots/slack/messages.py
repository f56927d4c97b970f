"""Where a plan's Slack message is: the state DB's generic message references.

The bot posts each plan once to its channel and keeps the message's channel and
``ts`` in ``state.messages`` under the front end's name (``slack``), so clicks can be
checked against the plan's own message and a restarted bot updates the message it
posted before.  ``SlackFields`` joins that reference with the plan's side fields, the
view the bot's rules read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from regprune.state import State

from .plugin import NAME


@dataclass(frozen=True)
class SlackFields:
    """A plan's side fields and its Slack message (channel and ts; None: not posted)."""

    requested_by: str | None
    expires_at: datetime | None
    slack_channel: str | None
    slack_ts: str | None


def slack_fields(state: State, plan_id: str) -> SlackFields:
    """The side fields of a stored plan and its Slack message, if it was posted."""
    fields = state.plans.fields(plan_id)
    message = state.messages.get(NAME, plan_id)
    return SlackFields(
        requested_by=fields.requested_by,
        expires_at=fields.expires_at,
        slack_channel=message.channel if message else None,
        slack_ts=message.reference if message else None,
    )


def remember_message(state: State, plan_id: str, channel: str, ts: str) -> bool:
    """Store the message a plan was posted as; False when it already had one."""
    return state.messages.add(NAME, plan_id, channel, ts)
