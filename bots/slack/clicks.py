"""What a Slack click or command is, as far as the rules care, and what it did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from regprune.decisions import Voter
from regprune.lifecycle import Decision

ClickDecision = Literal[Decision.APPROVED, Decision.REJECTED]


def slack_actor(user: str) -> str:
    """How a Slack user is stored as a plan's requester: ``slack:U123``."""
    return f"slack:{user}"


def voter(user: str, team: str | None = None) -> Voter:
    """A Slack user as the approval rules see them: ``U123``, also requester ``slack:U123``."""
    return Voter(by=user, aliases=(slack_actor(user),), team=team)


@dataclass(frozen=True)
class Click:
    """An Approve or Reject click, as far as the rules care."""

    plan_id: str
    decision: ClickDecision
    user: str
    teams: tuple[str, ...]
    channel: str | None
    ts: str | None

    @classmethod
    def from_body(cls, body: dict[str, Any], decision: ClickDecision) -> Click:
        """Read a ``block_actions`` payload: the button's value, who clicked, and on which message."""
        actions = body.get("actions") or [{}]
        container = body.get("container") or {}
        user = body.get("user") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        teams = tuple(
            str(team) for team in (user.get("team_id"), (body.get("team") or {}).get("id")) if team
        )
        return cls(
            plan_id=str(actions[0].get("value") or ""),
            decision=decision,
            user=str(user.get("id") or ""),
            teams=teams,
            channel=str(channel) if channel else None,
            ts=str(ts) if ts else None,
        )

    @property
    def voter(self) -> Voter:
        return voter(self.user, self.teams[0] if self.teams else None)


@dataclass(frozen=True)
class Outcome:
    """What a click did: the ephemeral reply, and what the listener must do next."""

    text: str
    changed: bool = False  # the plan's channel message must be re-rendered
    apply: bool = False  # enough approvals: run the apply now
