"""The bot's decisions: who may click (Slack users, user groups, the workspace), and
what an Approve, Reject or ``/regprune cancel`` did.  A base class of
``SlackService``.

The rules themselves (quorum, self-approval, expiry) are ``regprune.decisions``,
applied by ``Engine.vote``; the cancel rule is ``lifecycle.CANCELLABLE`` through
``Engine.cancel``, the same as ``regprune cancel``.  Nothing here writes a status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from slack_sdk.web import SlackResponse

from regprune import decisions
from regprune.decisions import ApprovalRules, Vote, VoteKind
from regprune.engine import Engine
from regprune.errors import UsageError
from regprune.lifecycle import APPROVED_ONCE, CANCELLABLE, Decision, PlanStatus
from regprune.models import Plan
from regprune.state import State

from . import blocks
from .clicks import Click, Outcome, voter
from .messages import slack_fields
from .plugin import METHOD  # the one spelling of the Slack approval method
from .settings import SlackSettings

log = logging.getLogger(__name__)



class Deciding:
    """Approve/Reject clicks and cancels, checked for who and where, decided by the engine."""

    slack: SlackSettings
    rules: ApprovalRules

    def decides(self, approval: str) -> bool:
        """Whether plans with this ``approval`` are decided in Slack, by this bot."""
        return self.rules.decides(approval)

    # -- provided by SlackService --------------------------------------------------------

    def open_state(self) -> AbstractContextManager[State]:
        raise NotImplementedError

    def engine(self, state: State) -> Engine:
        raise NotImplementedError

    def call(self, method: str, *, retry: bool = True, **kwargs: Any) -> SlackResponse | None:
        raise NotImplementedError

    def refresh_message(self, plan_id: str, note: str = "") -> None:
        raise NotImplementedError

    # -- who may decide --------------------------------------------------------------

    def team_refusal(self, teams: Sequence[str]) -> str | None:
        """Why a request from these team IDs is refused (``[slack].team_id``), or None."""
        wanted = self.slack.team_id
        if wanted and (not teams or any(team != wanted for team in teams)):
            return "This bot only takes requests from its own Slack workspace; nothing was changed."
        return None

    def is_approver(self, user: str) -> bool:
        """Whether ``user`` (a user ID, never a name) is a listed approver or in an approver group.

        Groups are resolved now, at click time, with ``usergroups.users.list``; a group
        that cannot be listed counts for nobody (the static list still applies).
        """
        if not user:
            return False
        if user in self.slack.approvers:
            return True
        for group in self.slack.approver_groups:
            response = self.call("usergroups_users_list", usergroup=group, retry=False)
            if response is None:
                log.warning(
                    "cannot list members of user group %s; only [slack].approvers count", group
                )
                continue
            if user in (response.get("users") or []):
                return True
        return False

    def refusal(self, user: str, teams: Sequence[str]) -> str | None:
        """Why ``user`` may not approve or reject, or None if they may."""
        team = self.team_refusal(teams)
        if team:
            return team
        if not self.is_approver(user):
            return (
                "You are not allowed to approve or reject regprune plans; "
                "ask one of the approvers. Nothing was changed."
            )
        return None

    # -- decisions ----------------------------------------------------------------------

    def _audit_refusal(self, state: State, click: Click, reason: str) -> None:
        state.audit_log.record(
            "slack.refused",
            plan_id=click.plan_id[:64] or None,
            actor=click.user or None,
            details={"decision": click.decision, "reason": reason, "teams": list(click.teams)},
        )

    def decide(self, click: Click) -> Outcome:
        """Apply the rules to one Approve/Reject click; the state DB is the only thing changed."""
        with self.open_state() as state:
            try:
                fields = slack_fields(state, click.plan_id)  # exact id: no prefixes from a button
            except UsageError:
                self._audit_refusal(state, click, "unknown plan")
                return Outcome(
                    f"There is no plan `{blocks.escape(click.plan_id)}`; nothing was changed."
                )
            if (
                not click.channel
                or not click.ts
                or fields.slack_channel != click.channel
                or fields.slack_ts != click.ts
            ):
                self._audit_refusal(state, click, "button does not belong to this plan's message")
                return Outcome(
                    f"This button does not belong to plan {click.plan_id}'s message; "
                    "nothing was changed."
                )
            refused = self.refusal(click.user, click.teams)
            if refused:
                self._audit_refusal(state, click, "not an approver")
                return Outcome(refused)
            plan = state.plans.get(click.plan_id)
            if not self.decides(plan.approval):
                return Outcome(f"Plan {plan.id} is not approved in Slack; nothing was changed.")
            vote = self.engine(state).vote(plan, click.voter, self.rules, decision=click.decision)
            if vote.kind == VoteKind.SELF:
                self._audit_refusal(state, click, "self-approval")
            return self._outcome(state, click, vote)

    def _outcome(self, state: State, click: Click, vote: Vote) -> Outcome:
        """The reply to one click, from what the engine did with the vote."""
        plan, count = vote.plan, f"{len(vote.approvers)} of {vote.required}"
        if vote.kind == VoteKind.NOT_OPEN:
            return Outcome(self._already(state, state.plans.get(plan.id)))
        if vote.kind == VoteKind.EXPIRED:
            return Outcome(
                f"Plan {plan.id} expired at {blocks.when(vote.expires_at)} and can no longer be "
                f"approved; make a new one with `/regprune plan {plan.policy}`.",
                changed=vote.changed,
            )
        if vote.kind == VoteKind.SELF:
            return Outcome(
                f"You requested plan {plan.id}, so you cannot approve it yourself; "
                "ask another approver. Nothing was changed."
            )
        if vote.kind == VoteKind.REPEAT:
            return Outcome(f"You already approved plan {plan.id}; {count} approval(s).")
        if vote.kind == VoteKind.COUNTED:
            return Outcome(f"Your approval of plan {plan.id} is recorded: {count}.", changed=True)
        if click.decision == Decision.REJECTED:
            return Outcome(f"You rejected plan {plan.id}; nothing will be deleted.", changed=True)
        return Outcome(
            f"Plan {plan.id} is approved; applying it now, progress in the thread.",
            changed=True,
            apply=True,
        )

    def _already(self, state: State, plan: Plan) -> str:
        recorded = state.approvals.of(plan.id)
        if plan.status in APPROVED_ONCE:
            approved = decisions.by_decision(recorded, Decision.APPROVED)
            names = [blocks.mention(d.by) for d in approved]
            return f"Plan {plan.id} was already approved by {', '.join(names) or 'someone'}; it is {plan.status}."
        if plan.status == PlanStatus.REJECTED:
            rejected = decisions.by_decision(recorded, Decision.REJECTED)
            names = [blocks.mention(d.by) for d in rejected]
            return f"Plan {plan.id} was already rejected by {', '.join(names) or 'someone'}."
        if plan.status == PlanStatus.EXPIRED:
            return f"Plan {plan.id} expired without approval; make a new one with `/regprune plan {plan.policy}`."
        return f"Plan {plan.id} is {plan.status}; nothing was changed."

    def cancel(self, plan_id: str, user: str, teams: Sequence[str]) -> str:
        """``/regprune cancel``: an approver or the requester cancels a plan that is
        pending, approved or failed, the rule of every front end (``lifecycle.CANCELLABLE``)."""
        refused = self.team_refusal(teams)
        if refused:
            return refused
        with self.open_state() as state:
            plan = state.plans.get(plan_id)
            requester = decisions.is_requester(plan, voter(user))
            if not requester and not self.is_approver(user):
                return f"Only approvers and the requester may cancel plan {plan.id}; nothing was changed."
            if self.engine(state).cancel(plan, actor=user, method=METHOD) is None:
                allowed = ", ".join(CANCELLABLE[:-1]) + f" or {CANCELLABLE[-1]}"
                return (
                    f"Plan {plan.id} is {state.plans.get(plan.id).status}; only a {allowed} plan "
                    "can be cancelled."
                )
        self.refresh_message(plan.id, note=f"Cancelled by {blocks.mention(user)}")
        return f"Plan {plan.id} is cancelled."
