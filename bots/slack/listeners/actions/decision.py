"""Approve/Reject clicks: ack, let the service apply the rules, render the outcome."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext

from regprune.errors import RegpruneError
from regprune.lifecycle import Decision

from ...clicks import Click, ClickDecision
from ...context import service_from


def _handle(decision: ClickDecision, ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    service = service_from(context)
    click = Click.from_body(body, decision)
    try:
        outcome = service.decide(click)
    except RegpruneError as exc:  # e.g. a plan whose stored content no longer matches its hash
        service.tell(click.channel, click.user, f"Nothing was changed: {exc.message}")
        return
    if outcome.changed:
        service.refresh_message(click.plan_id)
    service.tell(click.channel, click.user, outcome.text)
    if outcome.apply:
        service.start_apply(click.plan_id)


def approve_callback(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """``regprune_approve``: one approval vote; enough distinct votes start the apply."""
    _handle(Decision.APPROVED, ack, body, context)


def reject_callback(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """``regprune_reject``: one reject from an approver ends the plan."""
    _handle(Decision.REJECTED, ack, body, context)
