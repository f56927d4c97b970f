"""A second, minimal front end, as a plugin: it posts plans to an HTTP endpoint and
records the decisions the endpoint gives back.

It proves that a front end needs nothing from core beyond its public interfaces:
``register_front_ends`` (its ``[webhook]`` section, validated by core with
``WebhookSettings``), an approver that says ``decided_elsewhere``, the engine for
every decision and apply, the state DB's message references (which message shows
which plan), and ``regprune.formatting`` for the text.  Nothing in core names it:
tests register this module with the plugin manager themselves.

The endpoint's protocol (JSON over HTTP):

- ``POST {url}/messages`` with a plan → ``{"reference": "..."}`` (the message's id);
- ``GET {url}/messages/{reference}/decision`` → ``{"decision": "approve" | "reject" |
  "pending", "by": "who"}``;
- ``POST {url}/messages/{reference}/result`` with the apply's outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pluggy
from pydantic import BaseModel, ConfigDict, Field

from regprune import hookimpl
from regprune.config import Settings
from regprune.engine import Engine
from regprune.formatting import human_bytes, short, short_reason
from regprune.frontends import FrontEnd, approvals_decided_by
from regprune.lifecycle import Decision
from regprune.models import ApplyResult, Approval, ApprovalContext, Approver, Plan
from regprune.plugin_manager import build_catalog
from regprune.state import State

NAME = "webhook"
METHOD = "webhook"


class WebhookSettings(BaseModel):
    """The ``[webhook]`` section."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Base URL of the endpoint plans are posted to.")
    channel: str = Field(default="ops", description="Where the endpoint shows plans.")
    timeout: float = Field(default=5.0, gt=0, le=60, description="Seconds per request.")


class WebhookApprover:
    """Plans of ``approval = "webhook"`` are decided at the endpoint."""

    decided_elsewhere = True
    front_end = NAME
    waiting = "waits for approval at the webhook; its front end applies it"

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        return Approval("pending", "", METHOD, note="decide it at the webhook")


@hookimpl
def register_front_ends(register: Callable[[FrontEnd], None]) -> None:
    register(FrontEnd(name=NAME, settings=WebhookSettings, title="Webhook"))


@hookimpl
def register_approvers(register: Callable[[str, Approver], None]) -> None:
    register(METHOD, WebhookApprover())


def plan_payload(plan: Plan) -> dict[str, Any]:
    """What the endpoint shows: the plan's items in the same words as the CLI's tables."""
    return {
        "plan": plan.id,
        "policy": plan.policy,
        "registry": plan.registry,
        "bytes": human_bytes(plan.summary.bytes),
        "items": [
            {
                "repository": item.repository,
                "digest": short(item.digest),
                "tags": list(item.tags),
                "why": [short_reason(reason) for reason in item.reasons],
            }
            for item in plan.delete
        ],
    }


@dataclass
class Round:
    """What one ``run_once`` did, for the tests to look at."""

    posted: list[str]
    applied: dict[str, ApplyResult]
    rejected: list[str]


class WebhookFrontEnd:
    """The whole front end: post pending plans, collect decisions, apply approved plans."""

    def __init__(
        self, settings: Settings, state_path: str | Path, manager: pluggy.PluginManager
    ) -> None:
        webhook = settings.front_end_settings(NAME, WebhookSettings)
        if webhook is None:
            raise ValueError("the config has no [webhook] section")
        self.settings = settings
        self.webhook = webhook
        self.state_path = Path(state_path)
        self.manager = manager
        # The approval methods decided here: by the approvers' properties, not a name.
        self.approvals = approvals_decided_by(build_catalog(manager).approvers, NAME)
        self.http = httpx.Client(base_url=webhook.url, timeout=webhook.timeout, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def _engine(self, state: State) -> Engine:
        return Engine(self.settings, state, manager=self.manager)

    def run_once(self) -> Round:
        """Post what is new, then act on every decision the endpoint has."""
        done = Round(posted=[], applied={}, rejected=[])
        state = State(self.state_path)
        engine = self._engine(state)
        try:
            for plan in state.plans.find(status="pending", limit=100):
                if plan.approval not in self.approvals or not plan.delete:
                    continue
                message = state.messages.get(NAME, plan.id)
                if message is None:
                    reference = self._post(plan)
                    state.messages.add(NAME, plan.id, self.webhook.channel, reference)
                    done.posted.append(plan.id)
                    message = state.messages.get(NAME, plan.id)
                    assert message is not None
                self._decide(engine, plan, message.reference, done)
        finally:
            engine.close()
            state.close()
        return done

    def _post(self, plan: Plan) -> str:
        response = self.http.post("/messages", json=plan_payload(plan))
        response.raise_for_status()
        return str(response.json()["reference"])

    def _decide(self, engine: Engine, plan: Plan, reference: str, done: Round) -> None:
        response = self.http.get(f"/messages/{reference}/decision")
        response.raise_for_status()
        answer = response.json()
        by = str(answer.get("by") or "unknown")
        decision = answer.get("decision")
        if decision == "reject" and engine.reject(plan, Approval(Decision.REJECTED, by, METHOD)):
            done.rejected.append(plan.id)
            return
        if decision != "approve" or not engine.approve(
            plan, Approval(Decision.APPROVED, by, METHOD)
        ):
            return  # still pending, or decided already (another worker won)
        context = ApprovalContext(assume_yes=False, interactive=False, actor=by)
        result = engine.apply(plan.id, context=context)
        done.applied[plan.id] = result
        self.http.post(
            f"/messages/{reference}/result",
            json={"status": result.status, "deleted": len(result.of("deleted"))},
        ).raise_for_status()
