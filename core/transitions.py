"""The engine's lifecycle transitions: approve, reject, vote, cancel, expire, and the
compare-and-set they all go through.

A base class of ``Engine`` (split out to keep ``engine.py`` to one screenful of
concerns); ``apply_flow`` moves plans through ``applying`` with the same
`Transitions.transition`.  Each change fires ``plan_status_changed`` once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import overload

import pluggy

from . import decisions, lifecycle
from .decisions import ApprovalRules, ResumeCheck, Vote, VoteKind, Voter
from .hookcalls import notify, notify_event
from .lifecycle import Decision, PlanStatus
from .models import Approval, ApprovalContext, Plan
from .state import State

AUDIT_SCAN = 1_000_000  # audit_events has no event filter: read all of a plan's events


class Transitions:
    """Every plan status change, as methods of the engine."""

    state: State
    manager: pluggy.PluginManager

    def now(self) -> datetime:
        raise NotImplementedError

    def ask_approver(self, plan: Plan, context: ApprovalContext) -> Approval:
        raise NotImplementedError

    # -- lifecycle: every status change is a compare-and-set made here ----------

    def transition(
        self,
        plan: Plan,
        new: PlanStatus,
        *,
        actor: str,
        allowed_from: Iterable[PlanStatus] | None = None,
        reason: str = "",
        method: str = "",
    ) -> PlanStatus | None:
        """Move ``plan`` to ``new`` along an edge of ``lifecycle.TRANSITIONS`` and fire
        ``plan_status_changed``; the status it moved from, or None if nothing changed.

        ``allowed_from`` narrows the edges (a bot resumes only ``approved`` and
        ``applying``).  Each try is one conditional UPDATE on the status just read, so
        two processes racing cannot both move the plan, and the hook names the true
        old status.
        """
        old = self._move(plan, new, allowed_from)
        if old is not None:
            self._announce(plan, old, new, actor=actor, reason=reason, method=method)
        return old

    def _move(
        self, plan: Plan, new: PlanStatus, allowed_from: Iterable[PlanStatus] | None
    ) -> PlanStatus | None:
        candidates = lifecycle.sources(new, allowed_from)
        for _ in range(4):  # a retry only follows another process's move
            current = lifecycle.plan_status(self.state.plans.get(plan.id).status)
            if current not in candidates:
                return None
            if new == PlanStatus.PENDING:  # reopened: its approvals are void, in one transaction
                moved = self.state.plans.reopen(plan.id, expected=(current,))
            else:
                moved = self.state.plans.set_status(plan.id, new, expected=(current,))
            if moved:
                plan.status = new
                return current
        return None

    def _announce(
        self, plan: Plan, old: PlanStatus, new: PlanStatus, *, actor: str, reason: str, method: str
    ) -> None:
        notify(
            self.manager,
            "plan_status_changed",
            plan=plan,
            old=old,
            new=new,
            actor=actor,
            reason=reason,
            method=method,
            audit=self.state.audit_log,
        )

    @overload
    def approve(self, plan: Plan, approval: Approval) -> bool: ...

    @overload
    def approve(self, plan: Plan, approval: ApprovalContext) -> Approval: ...

    def approve(self, plan: Plan, approval: Approval | ApprovalContext) -> bool | Approval:
        """pending -> approved, once; False if the plan was no longer pending.

        The old spelling ``approve(plan, context)`` (an ``ApprovalContext``) still asks
        the plan's approver plugin, as ``ask_approver`` does, and returns its answer.
        """
        if isinstance(approval, ApprovalContext):
            return self.ask_approver(plan, approval)
        if approval.decision != Decision.APPROVED:
            raise ValueError(f"approve needs an approving Approval, not {approval.decision!r}")
        return self.record_decision(plan, approval)

    def reject(self, plan: Plan, approval: Approval) -> bool:
        """pending -> rejected, once; False if the plan was no longer pending."""
        if approval.decision != Decision.REJECTED:
            raise ValueError(f"reject needs a rejecting Approval, not {approval.decision!r}")
        return self.record_decision(plan, approval)

    def record_decision(self, plan: Plan, approval: Approval) -> bool:
        """Move a pending plan to approved or rejected, once; False if it was no longer
        pending.  The decision is stored before the hooks hear of it."""
        approved = approval.decision == Decision.APPROVED
        target = PlanStatus.APPROVED if approved else PlanStatus.REJECTED
        old = self._move(plan, target, lifecycle.DECIDABLE)
        if old is None:
            return False
        self.state.approvals.add(plan.id, approval, at=self.now())
        self._announce(
            plan, old, target, actor=approval.by, reason=approval.note, method=approval.method
        )
        # Kept for plugins written before plan_status_changed.
        notify_event(self.manager, "plan_decided", self.state, plan=plan, approval=approval)
        return True

    def vote(
        self,
        plan: Plan,
        voter: Voter,
        rules: ApprovalRules,
        *,
        decision: Decision = Decision.APPROVED,
    ) -> Vote:
        """One vote under a front end's rules: expiry, then for an approval
        self-approval, distinct approvers and quorum; the vote that reaches
        ``approvals_required`` approves.  One rejection rejects."""
        plan = self.state.plans.get(plan.id)
        expiry = self.expiry(plan, rules.plan_ttl)

        def answer(kind: VoteKind, approvers: tuple[str, ...] = (), changed: bool = False) -> Vote:
            return Vote(kind, plan, approvers, rules.approvals_required, expiry, changed)

        if plan.status not in lifecycle.DECIDABLE:
            return answer(VoteKind.NOT_OPEN)
        if decisions.is_due(expiry, self.now()):
            return answer(VoteKind.EXPIRED, changed=self.expire(plan, actor=rules.actor))
        if decision == Decision.REJECTED:
            if self.record_decision(plan, Approval(Decision.REJECTED, voter.by, rules.method)):
                return answer(VoteKind.DECIDED, changed=True)
            plan = self.state.plans.get(plan.id)
            return answer(VoteKind.NOT_OPEN)
        if decision != Decision.APPROVED:
            raise ValueError(f"a vote approves or rejects, not {decision!r}")
        if decisions.self_approval_refused(plan, voter, rules):
            return answer(VoteKind.SELF)
        ballot = Approval(Decision.APPROVED, voter.by, rules.method)
        new = self.state.approvals.add(plan.id, ballot, at=self.now(), team=voter.team)
        approvers = decisions.counted_approvers(self.state.approvals.of(plan.id), rules.method)
        if not new:
            return answer(VoteKind.REPEAT, approvers)
        if len(approvers) < rules.approvals_required:
            return answer(VoteKind.COUNTED, approvers, changed=True)
        final = Approval(
            Decision.APPROVED, voter.by, rules.method, note="approved by " + ", ".join(approvers)
        )
        if self.record_decision(plan, final):
            return answer(VoteKind.DECIDED, approvers, changed=True)
        plan = self.state.plans.get(plan.id)
        return answer(VoteKind.NOT_OPEN, approvers)

    def cancel(self, plan: Plan, *, actor: str, method: str, reason: str = "") -> PlanStatus | None:
        """Cancel a plan that is pending, approved or failed (``lifecycle.CANCELLABLE``,
        the rule of every front end); the status it had, or None if it could not be."""
        return self.transition(
            plan,
            PlanStatus.CANCELLED,
            actor=actor,
            allowed_from=lifecycle.CANCELLABLE,
            reason=reason,
            method=method,
        )

    def expiry(self, plan: Plan, ttl: timedelta | None = None) -> datetime | None:
        """When ``plan`` stops being approvable: its stored ``expires_at``, else created + ``ttl``."""
        stored = self.state.plans.fields(plan.id).expires_at
        return decisions.expires_at(plan, stored, ttl)

    def stamp_expiry(self, plan: Plan, ttl: timedelta) -> datetime:
        """Store created + ``ttl`` as the plan's expiry unless it has one; the expiry."""
        stored = self.state.plans.fields(plan.id).expires_at
        if isinstance(stored, datetime):
            return stored
        expiry = plan.created_at + ttl
        self.state.plans.set_fields(plan.id, expires_at=expiry)
        return expiry

    def expire(self, plan: Plan, *, actor: str, reason: str = "") -> bool:
        """pending -> expired (never approved); False if it was no longer pending."""
        moved = self.transition(
            plan, PlanStatus.EXPIRED, actor=actor, allowed_from=lifecycle.DECIDABLE, reason=reason
        )
        return moved is not None

    def expire_if_due(
        self, plan: Plan, *, actor: str, ttl: timedelta | None = None, reason: str = ""
    ) -> datetime | None:
        """Expire a pending plan whose time is up; its expiry when that has passed, else None."""
        expiry = self.expiry(plan, ttl)
        if not decisions.is_due(expiry, self.now()):
            return None
        self.expire(plan, actor=actor, reason=reason)
        return expiry

    def resume_check(self, plan: Plan, rules: ApprovalRules, *, actor: str) -> ResumeCheck:
        """Whether a front end may resume ``plan`` on its own after a restart (see
        ``decisions.resume_check``); records ``<method>.not_resumed`` the first time the
        crash-loop cap stops it."""
        events = [e.event for e in self.state.audit_log.events(limit=AUDIT_SCAN, plan_id=plan.id)]
        check = decisions.resume_check(plan, self.state.approvals.of(plan.id), events, rules)
        if check.announce:
            self.record_event(rules.not_resumed_event, plan, actor=actor, attempts=check.attempts)
        return check

    def record_event(self, event: str, plan: Plan, *, actor: str, **details: object) -> None:
        """Write a front end's own audit event about ``plan`` (``slack.resumed``, ...)."""
        self.state.audit_log.record(
            event, registry=plan.registry, plan_id=plan.id, actor=actor, details=dict(details)
        )
