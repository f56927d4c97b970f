"""Approval rules, the same for every front end: who may approve, how votes count,
when a plan expires, and when a plan a restart left behind is resumed.

A front end (the Slack bot today) builds `ApprovalRules` from its own settings and
hands it to the engine (``Engine.vote``, ``Engine.expire_if_due``,
``Engine.resume_refusal``); the engine makes every state change.  The functions here
are pure: they read a plan and its recorded decisions and events, and answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from .lifecycle import UNATTENDED_RESUMABLE, Decision
from .models import Plan

if TYPE_CHECKING:
    from .state import ApprovalRow

DEFAULT_TTL = timedelta(hours=24)
DEFAULT_MAX_RESUMES = 2


@dataclass(frozen=True)
class ApprovalRules:
    """The rule values of one front end (for Slack: ``[slack]`` approvals_required,
    allow_self_approval, plan_ttl).

    ``method`` is the method the front end records with its votes (the votes that
    count); it also names the front end's resume events (``<method>.resumed``,
    ``<method>.not_resumed``, ``<method>.apply_stopped``).  ``approvals`` are the
    policy ``approval`` names this front end decides (its approvers that say
    ``decided_elsewhere``); empty means just ``method``.
    """

    method: str
    approvals: frozenset[str] = frozenset()
    actor: str = "regprune"  # who the front end acts as when it expires or resumes a plan
    approvals_required: int = 1
    allow_self_approval: bool = False
    plan_ttl: timedelta = DEFAULT_TTL
    max_resumes: int = DEFAULT_MAX_RESUMES  # crash-loop cap: resumes before a person decides

    def __post_init__(self) -> None:
        if self.approvals_required < 1:
            raise ValueError(
                f"approvals_required must be at least 1, not {self.approvals_required}"
            )
        if self.max_resumes < 0:
            raise ValueError(f"max_resumes must be 0 or more, not {self.max_resumes}")

    def decides(self, approval: str) -> bool:
        """Whether plans with this ``approval`` are decided by this front end."""
        return approval in (self.approvals or {self.method})

    @property
    def resumed_event(self) -> str:
        return f"{self.method}.resumed"

    @property
    def not_resumed_event(self) -> str:
        return f"{self.method}.not_resumed"

    @property
    def stopped_event(self) -> str:
        """An unattended apply stopped with an error: never resumed, a person re-runs it."""
        return f"{self.method}.apply_stopped"


@dataclass(frozen=True)
class Voter:
    """Who votes: ``by`` as stored, plus the other spellings a requester may have
    (``U123`` and ``slack:U123``), and their team when the front end knows one."""

    by: str
    aliases: tuple[str, ...] = ()
    team: str | None = None

    @property
    def identities(self) -> tuple[str, ...]:
        return (self.by, *self.aliases)


class VoteKind(StrEnum):
    """What one approval vote did."""

    NOT_OPEN = "not_open"  # the plan is no longer pending: nothing changed
    EXPIRED = "too_late"  # its expiry has passed (this vote may have expired it)
    SELF = "self"  # the requester may not approve their own plan: nothing changed
    REPEAT = "repeat"  # this person had already approved: nothing changed
    COUNTED = "counted"  # recorded, quorum not reached yet
    DECIDED = "decided"  # quorum reached: this vote moved the plan to approved


@dataclass(frozen=True)
class Vote:
    """The answer of ``Engine.vote``: what happened and the count after it."""

    kind: VoteKind
    plan: Plan
    approvers: tuple[str, ...] = ()
    required: int = 1
    expires_at: datetime | None = None
    changed: bool = False  # the plan's status or its votes changed


def is_requester(plan: Plan, voter: Voter) -> bool:
    """Whether the voter asked for this plan (under any of their spellings)."""
    return bool(plan.requested_by) and plan.requested_by in voter.identities


def self_approval_refused(plan: Plan, voter: Voter, rules: ApprovalRules) -> bool:
    return is_requester(plan, voter) and not rules.allow_self_approval


def expires_at(plan: Plan, stored: datetime | None, ttl: timedelta | None) -> datetime | None:
    """When a plan stops being approvable: its stored expiry, else created + ``ttl``."""
    if stored is not None:
        return stored
    return None if ttl is None else plan.created_at + ttl


def is_due(expiry: datetime | None, now: datetime) -> bool:
    return expiry is not None and now >= expiry


def counted_approvers(decisions: Iterable[ApprovalRow], method: str) -> tuple[str, ...]:
    """Distinct people who approved with ``method``, in the order they did."""
    seen: dict[str, None] = {}
    for decision in decisions:
        if decision.decision == Decision.APPROVED and decision.method == method:
            seen.setdefault(str(decision.by), None)
    return tuple(seen)


def by_decision(
    decisions: Iterable[ApprovalRow], decision: Decision
) -> list[ApprovalRow]:
    return [d for d in decisions if d.decision == decision]


@dataclass(frozen=True)
class ResumeCheck:
    """Whether to resume a plan on start: ``refusal`` is None to resume; ``announce``
    asks the caller to say once that the crash-loop cap stopped it."""

    refusal: str | None
    announce: bool = False
    attempts: int = 0


def resume_check(
    plan: Plan,
    decisions: Sequence[ApprovalRow],
    events: Iterable[str],
    rules: ApprovalRules,
) -> ResumeCheck:
    """Whether a front end may resume ``plan`` on its own after a restart.

    Only plans whose approval this front end decides that are approved or applying, with an
    approval by that method and no rejection, that no unattended apply stopped on
    with an error, and that were resumed fewer than ``max_resumes`` times.
    """
    if not rules.decides(plan.approval) or plan.status not in UNATTENDED_RESUMABLE:
        return ResumeCheck(f"it is {plan.status} (approved with {plan.approval})")
    if by_decision(decisions, Decision.REJECTED):
        return ResumeCheck("a rejection is recorded")
    if not counted_approvers(decisions, rules.method):
        return ResumeCheck(f"no {rules.method} approval is recorded")
    counts = Counter(events)
    if counts[rules.stopped_event]:
        return ResumeCheck("an unattended apply stopped with an error; a person re-runs it")
    attempts = counts[rules.resumed_event]
    if attempts >= rules.max_resumes:
        return ResumeCheck(
            f"already resumed {attempts} time(s)",
            announce=not counts[rules.not_resumed_event],  # say it once, not at every start
            attempts=attempts,
        )
    return ResumeCheck(None, attempts=attempts)
