"""Each engine transition (approve, reject, vote, cancel, expire, apply, resume) fires
``plan_status_changed`` once per move and writes today's audit events with today's
details, against a real registry on loopback and a real state DB."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from regprune import hookimpl
from regprune.decisions import ApprovalRules, VoteKind, Voter
from regprune.engine import Engine
from regprune.errors import DeletesDisabled, UsageError
from regprune.lifecycle import Decision, PlanStatus
from regprune.models import Approval, Plan
from regprune.state import AuditEvent
from regprune.testing import APPROVE_ALL, ImagePusher, days_ago, make_engine

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}
SLACKISH = ApprovalRules(method="slack", actor="regprune-bot", approvals_required=2)


@dataclass
class Recorder:
    """Every plan_status_changed call: (old, new, actor, method, reason)."""

    calls: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    @hookimpl
    def plan_status_changed(
        self, plan: Plan, old: str, new: str, actor: str, reason: str, method: str
    ) -> None:
        self.calls.append((str(old), str(new), actor, method, reason))

    def moves(self) -> list[tuple[str, str]]:
        return [(old, new) for old, new, *_ in self.calls]


def setup(url: str, tmp_path: Path, **policy: Any) -> tuple[Engine, Recorder]:
    engine = make_engine(
        url, {**AGE, **policy}, name="ci", state_dir=tmp_path, load_entrypoints=False
    )
    recorder = Recorder()
    engine.manager.register(recorder, name="recorder")
    return engine, recorder


def events(engine: Engine, plan_id: str) -> list[AuditEvent]:
    """The plan's audit events, oldest first."""
    return list(reversed(engine.state.audit_log.events(limit=1000, plan_id=plan_id)))


def named(engine: Engine, plan_id: str, name: str) -> list[AuditEvent]:
    return [e for e in events(engine, plan_id) if e.event == name]


@pytest.fixture
def old_image(pusher: ImagePusher) -> str:
    return pusher.push_image("ci/app", ["build-1"], created=days_ago(30)).digest


def test_apply_approves_applies_and_finishes_with_one_hook_per_move(
    registry_server, old_image, tmp_path
):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")

    result = engine.apply(plan.id, context=APPROVE_ALL)

    assert result.status == PlanStatus.DONE
    assert recorder.moves() == [
        ("pending", "approved"),
        ("approved", "applying"),
        ("applying", "done"),
    ]
    assert recorder.calls[0][2:4] == (APPROVE_ALL.actor, "cli --yes")
    # Today's events, no new ones: the apply's moves are told by apply.finished.
    assert [e.event for e in events(engine, plan.id)] == [
        "plan.created",
        "plan.approved",
        "item.deleted",
        "apply.finished",
    ]
    approved = named(engine, plan.id, "plan.approved")[0]
    assert (approved.actor, approved.details) == (
        APPROVE_ALL.actor,
        {"method": "cli --yes", "note": ""},
    )


def test_reject_once_then_nothing(registry_server, old_image, tmp_path, pusher):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")
    no = Approval(Decision.REJECTED, "bob", "cli prompt", note="not today")

    assert engine.reject(plan, no) is True
    assert engine.reject(plan, no) is False
    assert engine.approve(plan, Approval(Decision.APPROVED, "carol", "cli --yes")) is False

    assert recorder.calls == [("pending", "rejected", "bob", "cli prompt", "not today")]
    [event] = named(engine, plan.id, "plan.rejected")
    assert (event.actor, event.details) == (
        "bob",
        {"method": "cli prompt", "note": "not today"},
    )
    assert named(engine, plan.id, "plan.approved") == []
    assert engine.state.plans.get(plan.id).status == "rejected"
    with pytest.raises(UsageError, match="is rejected"):
        engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.resolve("ci/app", "build-1") == old_image


@pytest.mark.parametrize("start", ["pending", "approved", "failed"])
def test_cancel_from_every_cancellable_status(registry_server, old_image, tmp_path, start):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")
    if start != "pending":
        assert engine.state.plans.set_status(plan.id, start, expected=["pending"])

    assert engine.cancel(plan, actor="alice@host", method="cli") == start
    assert engine.cancel(plan, actor="alice@host", method="cli") is None  # once

    assert recorder.calls == [(start, "cancelled", "alice@host", "cli", "")]
    [event] = named(engine, plan.id, "plan.cancelled")
    assert (event.actor, event.details) == ("alice@host", {"method": "cli", "was": start})


@pytest.mark.parametrize("start", ["applying", "done", "rejected", "expired"])
def test_cancel_refuses_a_plan_being_applied_or_finished(
    registry_server, old_image, tmp_path, start
):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")
    assert engine.state.plans.set_status(plan.id, start, expected=["pending"])

    assert engine.cancel(plan, actor="alice@host", method="cli") is None

    assert engine.state.plans.get(plan.id).status == start
    assert recorder.calls == []
    assert named(engine, plan.id, "plan.cancelled") == []


def test_an_overdue_plan_expires_in_the_engine_with_one_event(
    registry_server, old_image, tmp_path, pusher
):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")
    engine.state.plans.set_fields(plan.id, expires_at=engine.now() - timedelta(minutes=1))

    with pytest.raises(UsageError, match="expired at"):
        engine.apply(plan.id, context=APPROVE_ALL)
    with pytest.raises(UsageError, match="is expired"):
        engine.apply(plan.id, context=APPROVE_ALL)

    assert recorder.calls == [("pending", "expired", APPROVE_ALL.actor, "", "")]
    [event] = named(engine, plan.id, "plan.expired")
    assert (event.actor, event.details) == (APPROVE_ALL.actor, {})
    assert named(engine, plan.id, "plan.approved") == []
    assert pusher.resolve("ci/app", "build-1") == old_image


def test_expire_if_due_uses_the_front_ends_ttl(registry_server, old_image, tmp_path):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")
    assert engine.expire_if_due(plan, actor="bot", ttl=timedelta(hours=1)) is None
    assert engine.expire_if_due(plan, actor="bot", ttl=timedelta(0), reason="late") is not None
    assert recorder.calls == [("pending", "expired", "bot", "", "late")]
    [event] = named(engine, plan.id, "plan.expired")
    assert event.details == {"reason": "late"}


def test_votes_count_distinct_approvers_and_the_quorum_approves_once(
    registry_server, old_image, tmp_path
):
    engine, recorder = setup(registry_server.url, tmp_path, approval="slack")
    plan = engine.plan("ci", requested_by="slack:U0REQUEST")

    assert engine.vote(plan, Voter("U0REQUEST", ("slack:U0REQUEST",)), SLACKISH).kind == (
        VoteKind.SELF
    )
    first = engine.vote(plan, Voter("U0ALICE"), SLACKISH)
    again = engine.vote(plan, Voter("U0ALICE"), SLACKISH)
    second = engine.vote(plan, Voter("U0BOB"), SLACKISH)
    late = engine.vote(plan, Voter("U0CAROL"), SLACKISH)

    assert [first.kind, again.kind, second.kind, late.kind] == [
        VoteKind.COUNTED,
        VoteKind.REPEAT,
        VoteKind.DECIDED,
        VoteKind.NOT_OPEN,
    ]
    assert second.approvers == ("U0ALICE", "U0BOB")
    assert recorder.calls == [
        ("pending", "approved", "U0BOB", "slack", "approved by U0ALICE, U0BOB")
    ]
    assert len(named(engine, plan.id, "plan.approved")) == 1


def test_a_vote_on_an_expired_plan_expires_it_and_counts_nothing(
    registry_server, old_image, tmp_path
):
    engine, recorder = setup(registry_server.url, tmp_path, approval="slack")
    plan = engine.plan("ci")
    rules = ApprovalRules(method="slack", actor="regprune-bot", plan_ttl=timedelta(0))

    vote = engine.vote(plan, Voter("U0ALICE"), rules)

    assert (vote.kind, vote.changed) == (VoteKind.EXPIRED, True)
    assert recorder.calls == [("pending", "expired", "regprune-bot", "", "")]
    assert engine.state.approvals.of(plan.id) == []


def test_resume_applies_an_approved_plan_but_never_a_failed_or_pending_one(
    registry_server, old_image, tmp_path, pusher
):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")
    with pytest.raises(UsageError, match="is pending"):
        engine.resume(plan.id, actor="bot")
    assert engine.state.plans.set_status(plan.id, "failed", expected=["pending"])
    with pytest.raises(UsageError, match="is failed"):
        engine.resume(plan.id, actor="bot")
    assert recorder.calls == []
    assert pusher.resolve("ci/app", "build-1") == old_image

    assert engine.state.plans.set_status(plan.id, "approved", expected=["failed"])
    result = engine.resume(plan.id, actor="bot")

    assert result.status == "done"
    assert recorder.moves() == [("approved", "applying"), ("applying", "done")]
    assert {call[2] for call in recorder.calls} == {"bot"}
    assert pusher.resolve("ci/app", "build-1") is None


def test_a_refused_apply_moves_back_to_pending_and_records_apply_refused(
    registry_factory, tmp_path
):
    server = registry_factory(delete_enabled=False)
    ImagePusher(server.url).push_image("ci/app", ["build-1"], created=days_ago(30))
    engine, recorder = setup(server.url, tmp_path)
    plan = engine.plan("ci")

    with pytest.raises(DeletesDisabled):
        engine.apply(plan.id, context=APPROVE_ALL)

    assert recorder.moves() == [("pending", "approved"), ("approved", "pending")]
    assert "storage.delete.enabled" in recorder.calls[1][4]
    names = [e.event for e in events(engine, plan.id)]
    assert names == ["plan.created", "plan.approved", "apply.refused"]
    assert named(engine, plan.id, "apply.refused")[0].details["status"] == "pending"


def test_the_old_spelling_approve_plan_context_still_asks_the_approver(
    registry_server, old_image, tmp_path
):
    engine, recorder = setup(registry_server.url, tmp_path)
    plan = engine.plan("ci")

    answer = engine.approve(plan, APPROVE_ALL)  # before: Engine.approve(plan, ApprovalContext)

    assert isinstance(answer, Approval) and answer.decision == "approved"
    assert answer.method == "cli --yes"
    assert recorder.moves() == [("pending", "approved")]
    assert engine.state.plans.get(plan.id).status == "approved"
