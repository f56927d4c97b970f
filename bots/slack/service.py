"""The Slack bot's rules, testable without HTTP: who may decide, how votes count, expiry,
state transitions, and what gets posted where.

Listeners only ack, call a method here and render.  Every plan, approval and
deletion goes through the one ``Engine`` and the one state DB the CLI uses; each
call opens its own ``State`` (its own SQLite connection), so request threads and
background workers never share a connection.  State moves only through
compare-and-set (``state.plans.set_status(..., expected=...)`` and
``Engine.record_decision``), so two clicks racing cannot both win.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pluggy
from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from regprune.config import Settings
from regprune.durations import parse_duration
from regprune.engine import Engine
from regprune.errors import LockHeld, RegpruneError, UsageError
from regprune.models import Approval, ApprovalContext, Plan
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State

from . import blocks
from .messages import SlackFields, remember_message, slack_fields
from .plugin import slack_approvals
from .progress import ThreadProgress, describe, retry_after
from .redact import Redactor
from .settings import SlackSettings, slack_settings

log = logging.getLogger(__name__)

BOT_ACTOR = "regprune-bot"
METHOD = "slack"  # the method recorded with each Slack vote (Approval.method)
SCHEDULE_ACTOR = "schedule"
FILE_THRESHOLD = 50  # plans with more delete items get their list as an uploaded file
MAX_LIST_MESSAGES = 8  # fallback when the upload fails: at most this many threaded replies
MAX_RETRY_WAIT = 30.0  # longest Retry-After we wait once for an important post
DECIDED = ("approved", "applying", "done", "failed")
# What the bot resumes when it starts.  Never "failed": a person reads why and re-runs
# `regprune apply`; the engine itself would resume a failed plan, so the bot checks first.
RESUME_STATUSES = ("approved", "applying")
MAX_RESUMES = 2  # a plan whose resumed apply keeps dying with the bot is left to a person
STOPPED_EVENT = "slack.apply_stopped"  # the bot's apply stopped with an error: never resumed
RESUMED_EVENT = "slack.resumed"
NOT_RESUMED_EVENT = "slack.not_resumed"
AUDIT_SCAN = 1_000_000  # audit_log.events has no event filter: read all of a plan's events

Decision = Literal["approved", "rejected"]


def slack_actor(user: str) -> str:
    """How a Slack user is stored as a plan's requester: ``slack:U123``."""
    return f"slack:{user}"


@dataclass(frozen=True)
class Click:
    """An Approve or Reject click, as far as the rules care."""

    plan_id: str
    decision: Decision
    user: str
    teams: tuple[str, ...]
    channel: str | None
    ts: str | None

    @classmethod
    def from_body(cls, body: dict[str, Any], decision: Decision) -> Click:
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


@dataclass(frozen=True)
class Outcome:
    """What a click did: the ephemeral reply, and what the listener must do next."""

    text: str
    changed: bool = False  # the plan's channel message must be re-rendered
    apply: bool = False  # enough approvals: run the apply now


class SlackService:
    """Rules and side effects of the bot, over one config, one state DB and one Slack client."""

    def __init__(
        self,
        settings: Settings,
        state_path: str | Path,
        client: WebClient,
        *,
        manager: pluggy.PluginManager | None = None,
        now: Callable[[], datetime] | None = None,
        redactor: Redactor | None = None,
        progress_every: int = 25,
        progress_seconds: float = 10.0,
        workers: int = 4,
    ) -> None:
        self.settings = settings
        self.slack: SlackSettings = slack_settings(settings)
        self.state_path = str(state_path)
        self.client = client
        self.manager = manager or get_plugin_manager()
        # The approval methods this bot decides: approvers that say the Slack front end
        # decides them (``decided_elsewhere``, ``front_end``), never a name compared here.
        self.approvals = slack_approvals(self.manager)
        self._now = now or (lambda: datetime.now(UTC))
        self.redact = redactor or Redactor([client.token])
        self.ttl = parse_duration(self.slack.plan_ttl)
        self.progress_every = progress_every
        self.progress_seconds = progress_seconds
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="regprune-slack"
        )
        self._futures: list[Future[Any]] = []
        self._futures_lock = threading.Lock()
        self._post_lock = threading.Lock()
        self._registry_locks: dict[str, threading.Lock] = {}
        self._registry_locks_lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------

    def decides(self, approval: str) -> bool:
        """Whether plans with this ``approval`` are decided in Slack, by this bot."""
        return approval in self.approvals

    def now(self) -> datetime:
        return self._now()

    @contextmanager
    def open_state(self) -> Iterator[State]:
        """A fresh ``State`` (own SQLite connection) for the current thread, closed afterwards."""
        state = State(self.state_path)
        try:
            yield state
        finally:
            state.close()

    def engine(self, state: State) -> Engine:
        """The one engine, over this thread's ``State``."""
        return Engine(self.settings, state, manager=self.manager, now=self._now)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` in a background worker (never inside Slack's 3-second request window)."""

        def job() -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("background job %s failed", getattr(fn, "__name__", fn))
                return None

        future = self._executor.submit(job)
        with self._futures_lock:
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(future)
        return future

    def join(self, timeout: float = 60.0) -> None:
        """Wait until no background job is left (jobs may start further jobs)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._futures_lock:
                pending = [f for f in self._futures if not f.done()]
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} background job(s) still running")
            wait(pending, timeout=left, return_when=FIRST_EXCEPTION)

    def close(self) -> None:
        """Finish running jobs and stop the workers."""
        self._executor.shutdown(wait=True)

    def _registry_lock(self, registry: str) -> threading.Lock:
        # One apply per registry in this process: a second approved plan waits its turn
        # instead of failing on the state DB's lock (which still guards against the CLI).
        with self._registry_locks_lock:
            return self._registry_locks.setdefault(registry, threading.Lock())

    # -- Slack calls ---------------------------------------------------------------

    def _scrub(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        clean = dict(kwargs)
        for key in ("text", "content", "initial_comment"):
            if isinstance(clean.get(key), str):
                clean[key] = self.redact(clean[key])
        if clean.get("blocks") is not None:
            clean["blocks"] = json.loads(self.redact(json.dumps(clean["blocks"])))
        return clean

    def call(self, method: str, *, retry: bool = True, **kwargs: Any) -> SlackResponse | None:
        """Call a Web API method with secrets redacted from what is sent.

        Failures are logged and give None, never an exception: Slack being down must
        not break a decision or an apply.  With ``retry``, a 429 is retried once after
        its ``Retry-After`` (up to 30 s); nothing else is retried.
        """
        for attempt in (1, 2):
            try:
                return getattr(self.client, method)(**self._scrub(kwargs))
            except Exception as exc:
                wait_for = retry_after(exc)
                if retry and attempt == 1 and wait_for is not None and wait_for <= MAX_RETRY_WAIT:
                    log.info("Slack %s rate limited; retrying in %.0f s", method, wait_for)
                    time.sleep(wait_for)
                    continue
                log.warning("Slack %s failed: %s", method, describe(exc))
                return None
        return None

    def say_in_thread(
        self, channel: str | None, ts: str | None, text: str, **extra: Any
    ) -> SlackResponse | None:
        """Post a reply in a plan's thread (logged, never raised, on failure)."""
        if not channel or not ts:
            return None
        return self.call("chat_postMessage", channel=channel, thread_ts=ts, text=text, **extra)

    def tell(self, channel: str | None, user: str, text: str) -> None:
        """An ephemeral reply only ``user`` sees, in ``channel``."""
        if channel and user:
            self.call("chat_postEphemeral", channel=channel, user=user, text=text, retry=False)

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

    # -- reading a plan for display ---------------------------------------------------

    def view(
        self, state: State, plan_id: str, note: str = ""
    ) -> tuple[blocks.PlanView, SlackFields]:
        """A plan's message view and its side fields (channel, ts, expiry, requester)."""
        plan = state.plans.get(plan_id)
        fields = slack_fields(state, plan.id)
        decisions = state.approvals.of(plan.id)
        approvals = [(d.by, d.at) for d in decisions if d.decision == "approved"]
        rejections = [(d.by, d.at) for d in decisions if d.decision == "rejected"]
        outcome: dict[str, int] = {}
        if plan.status in ("applying", "done", "failed"):
            outcome = dict(Counter(s for s, _ in state.plans.item_statuses(plan.id).values()))
        view = blocks.PlanView(
            plan=plan,
            status=plan.status,
            requested_by=plan.requested_by,
            expires_at=fields.expires_at or plan.created_at + self.ttl,
            required=self.slack.approvals_required,
            approvals=approvals,
            rejections=rejections,
            outcome=outcome,
            note=note,
        )
        return view, fields

    def refresh_message(self, plan_id: str, note: str = "") -> None:
        """Re-render a posted plan's channel message from the state DB (buttons only while pending)."""
        with self.open_state() as state:
            view, fields = self.view(state, plan_id, note)
        if fields.slack_channel and fields.slack_ts:
            message = blocks.plan_message(view)
            self.call(
                "chat_update", channel=fields.slack_channel, ts=fields.slack_ts, **message
            )

    def status_text(self, plan_id: str) -> str:
        """The ``/regprune status`` answer (a unique id prefix is enough)."""
        with self.open_state() as state:
            view, _ = self.view(state, plan_id)
        return blocks.status_text(view)

    def history_text(self, limit: int = 10) -> str:
        """The ``/regprune history`` answer."""
        with self.open_state() as state:
            plans = state.plans.find(limit=limit)
        return blocks.history_text(plans)

    # -- posting plans ------------------------------------------------------------------

    def plan_refusal(self, policy: str) -> str | None:
        """Why ``/regprune plan <policy>`` cannot run, or None."""
        if policy not in self.settings.policy:
            known = ", ".join(sorted(self.settings.policy)) or "none"
            return f"Unknown policy `{policy}` (defined: {known})."
        approval = self.settings.policy[policy].approval
        if not self.decides(approval):
            return (
                f"Policy `{policy}` is approved with `{approval}`, not in Slack; "
                "plan it with the command line."
            )
        if not self.slack.channel:
            return "No channel is configured: set `[slack].channel`."
        return None

    def plan_and_post(
        self, policy: str, requested_by: str, reply: Callable[[str], Any] | None = None
    ) -> str | None:
        """Compute a plan with the engine, store it, and post it to the channel at once."""
        say = reply or (lambda text: None)
        try:
            with self.open_state() as state:
                engine = self.engine(state)
                try:
                    plan = engine.plan(policy, requested_by=requested_by)
                finally:
                    engine.close()
        except RegpruneError as exc:
            log.warning("planning policy %s failed: %s", policy, exc.message)
            say(f"Planning policy `{policy}` failed: {exc.message}")
            return None
        if not plan.delete:
            self.post_plan(plan.id)  # records it as cancelled: there is nothing to approve
            say(f"Policy `{policy}` has nothing to delete (plan {plan.id}).")
            return plan.id
        ts = self.post_plan(plan.id)
        if ts is None:
            say(
                f"Plan {plan.id} is stored but could not be posted to the channel; "
                "the bot tries again on its next poll."
            )
        else:
            say(f"Plan {plan.id} for `{policy}` is posted in <#{self.slack.channel}>.")
        return plan.id

    def post_plan(self, plan_id: str) -> str | None:
        """Post a pending Slack plan to the channel once; returns its message ts.

        Sets the plan's expiry (created + ``plan_ttl``) if it has none.  A plan already
        past it is marked expired instead of posted; one with nothing to delete is
        cancelled.  Returns None when nothing was posted.
        """
        with self._post_lock, self.open_state() as state:
            plan = state.plans.get(plan_id)
            fields = slack_fields(state, plan.id)
            if fields.slack_ts:
                return str(fields.slack_ts)
            if plan.status != "pending" or not self.decides(plan.approval):
                return None
            expires = fields.expires_at or plan.created_at + self.ttl
            if not fields.expires_at:
                state.plans.set_fields(plan.id, expires_at=expires)
            if expires <= self.now():
                if state.plans.set_status(plan.id, "expired", expected=("pending",)):
                    state.audit_log.record(
                        "plan.expired",
                        registry=plan.registry,
                        plan_id=plan.id,
                        actor=BOT_ACTOR,
                        details={"reason": "expired before it could be posted"},
                    )
                return None
            if not plan.delete:
                if state.plans.set_status(plan.id, "cancelled", expected=("pending",)):
                    state.audit_log.record(
                        "plan.cancelled",
                        registry=plan.registry,
                        plan_id=plan.id,
                        actor=BOT_ACTOR,
                        details={"reason": "nothing to delete"},
                    )
                return None
            view, _ = self.view(state, plan.id)
            response = self.call(
                "chat_postMessage", channel=self.slack.channel, **blocks.plan_message(view)
            )
            if response is None:
                return None
            channel, ts = str(response["channel"]), str(response["ts"])
            remember_message(state, plan.id, channel, ts)
            state.audit_log.record(
                "slack.posted",
                registry=plan.registry,
                plan_id=plan.id,
                actor=BOT_ACTOR,
                details={"channel": channel, "ts": ts},
            )
        self.post_list(plan, channel, ts)
        return ts

    def post_list(self, plan: Plan, channel: str, ts: str) -> None:
        """The full delete list in the thread: replies for small plans, a file for large ones."""
        chunks = blocks.list_messages(plan)
        if len(plan.delete) > FILE_THRESHOLD:
            uploaded = self.call(
                "files_upload_v2",
                channel=channel,
                thread_ts=ts,
                content=blocks.list_file(plan),
                filename=f"regprune-plan-{plan.id}.tsv",
                title=f"regprune plan {plan.id}: {len(plan.delete)} manifests to delete",
                initial_comment="The full delete list (tab-separated).",
            )
            if uploaded is not None:
                return
            if len(chunks) > MAX_LIST_MESSAGES:
                shown = MAX_LIST_MESSAGES * blocks.LIST_PER_MESSAGE
                chunks = [
                    *chunks[:MAX_LIST_MESSAGES],
                    f"…and {len(plan.delete) - shown} more; the whole list: `regprune show {plan.id}`",
                ]
        for chunk in chunks:
            self.say_in_thread(channel, ts, chunk)

    # -- polling: plans made elsewhere, expiry --------------------------------------------

    def poll_once(self) -> None:
        """Post pending Slack plans nobody posted yet (``regprune plan``/``run`` in cron) and
        expire posted ones whose time is up, updating their message."""
        with self.open_state() as state:
            pending = [
                (plan.id, slack_fields(state, plan.id))
                for plan in state.plans.find(status="pending", limit=200)
                if self.decides(plan.approval)
            ]
        now = self.now()
        for plan_id, fields in reversed(pending):  # oldest first
            try:
                if not fields.slack_ts:
                    self.post_plan(plan_id)
                elif fields.expires_at and fields.expires_at <= now:
                    self.expire(plan_id)
            except RegpruneError as exc:  # a tampered plan must not stop the others
                log.warning("plan %s: %s", plan_id, exc.message)

    def expire(self, plan_id: str) -> bool:
        """Move a pending plan to expired (never approved) and update its message."""
        with self.open_state() as state:
            plan = state.plans.get(plan_id)
            changed = state.plans.set_status(plan.id, "expired", expected=("pending",))
            if changed:
                state.audit_log.record(
                    "plan.expired", registry=plan.registry, plan_id=plan.id, actor=BOT_ACTOR
                )
        if changed:
            self.refresh_message(plan_id)
        return changed

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
            if plan.status != "pending":
                return Outcome(self._already(state, plan))
            expires = fields.expires_at or plan.created_at + self.ttl
            if self.now() >= expires:
                changed = state.plans.set_status(plan.id, "expired", expected=("pending",))
                if changed:
                    state.audit_log.record(
                        "plan.expired", registry=plan.registry, plan_id=plan.id, actor=BOT_ACTOR
                    )
                return Outcome(
                    f"Plan {plan.id} expired at {blocks.when(expires)} and can no longer be "
                    f"approved; make a new one with `/regprune plan {plan.policy}`.",
                    changed=changed,
                )
            engine = self.engine(state)
            if click.decision == "rejected":
                return self._reject(state, engine, plan, click)
            return self._approve(state, engine, plan, click)

    def _reject(self, state: State, engine: Engine, plan: Plan, click: Click) -> Outcome:
        if engine.record_decision(plan, Approval("rejected", click.user, METHOD)):
            return Outcome(f"You rejected plan {plan.id}; nothing will be deleted.", changed=True)
        return Outcome(self._already(state, state.plans.get(plan.id)))

    def _approve(self, state: State, engine: Engine, plan: Plan, click: Click) -> Outcome:
        if plan.requested_by in (click.user, slack_actor(click.user)) and not (
            self.slack.allow_self_approval
        ):
            self._audit_refusal(state, click, "self-approval")
            return Outcome(
                f"You requested plan {plan.id}, so you cannot approve it yourself; "
                "ask another approver. Nothing was changed."
            )
        team = click.teams[0] if click.teams else None
        vote = Approval("approved", click.user, METHOD)
        new = state.approvals.add(plan.id, vote, at=self.now(), team=team)
        approvers = [
            d.by
            for d in state.approvals.of(plan.id)
            if d.decision == "approved" and d.method == METHOD
        ]
        required = self.slack.approvals_required
        if not new:
            return Outcome(
                f"You already approved plan {plan.id}; {len(approvers)} of {required} approval(s)."
            )
        if len(approvers) < required:
            return Outcome(
                f"Your approval of plan {plan.id} is recorded: {len(approvers)} of {required}.",
                changed=True,
            )
        final = Approval("approved", click.user, METHOD, note="approved by " + ", ".join(approvers))
        if engine.record_decision(plan, final):
            return Outcome(
                f"Plan {plan.id} is approved; applying it now, progress in the thread.",
                changed=True,
                apply=True,
            )
        return Outcome(self._already(state, state.plans.get(plan.id)))

    def _already(self, state: State, plan: Plan) -> str:
        decisions = state.approvals.of(plan.id)
        if plan.status in DECIDED:
            names = [blocks.mention(d.by) for d in decisions if d.decision == "approved"]
            return f"Plan {plan.id} was already approved by {', '.join(names) or 'someone'}; it is {plan.status}."
        if plan.status == "rejected":
            names = [blocks.mention(d.by) for d in decisions if d.decision == "rejected"]
            return f"Plan {plan.id} was already rejected by {', '.join(names) or 'someone'}."
        if plan.status == "expired":
            return f"Plan {plan.id} expired without approval; make a new one with `/regprune plan {plan.policy}`."
        return f"Plan {plan.id} is {plan.status}; nothing was changed."

    def cancel(self, plan_id: str, user: str, teams: Sequence[str]) -> str:
        """``/regprune cancel``: an approver or the requester cancels a pending plan."""
        refused = self.team_refusal(teams)
        if refused:
            return refused
        with self.open_state() as state:
            plan = state.plans.get(plan_id)
            requester = plan.requested_by in (user, slack_actor(user))
            if not requester and not self.is_approver(user):
                return f"Only approvers and the requester may cancel plan {plan.id}; nothing was changed."
            if not state.plans.set_status(plan.id, "cancelled", expected=("pending",)):
                return f"Plan {plan.id} is {state.plans.get(plan.id).status}; only a pending plan can be cancelled."
            state.audit_log.record(
                "plan.cancelled",
                registry=plan.registry,
                plan_id=plan.id,
                actor=user,
                details={"method": METHOD},
            )
        self.refresh_message(plan.id, note=f"Cancelled by {blocks.mention(user)}")
        return f"Plan {plan.id} is cancelled."

    # -- apply and gc -------------------------------------------------------------------

    def start_apply(self, plan_id: str, *, resume: bool = False) -> Future[Any]:
        """Run the apply of an approved plan in a background worker (see ``run_apply``)."""
        return self.submit(self.run_apply, plan_id, resume=resume)

    def run_apply(self, plan_id: str, *, resume: bool = False) -> None:
        """Apply an approved plan with the engine, reporting in its thread; then gc if asked.

        The engine re-resolves every tag first and skips what changed.  Progress posts
        are best-effort (``ThreadProgress``); a failed post is never a reason to stop,
        repeat or extend the deletions, and the apply is never retried because of Slack.
        With ``resume`` (the bot restarted, see ``resume_interrupted``) the plan must still
        be approved or applying, and the registry's lock free of any live holder.
        """
        with self.open_state() as state:
            registry = state.plans.get(plan_id).registry
        with self._registry_lock(registry), self.open_state() as state:
            plan = state.plans.get(plan_id)
            fields = slack_fields(state, plan.id)
            channel, ts = fields.slack_channel, fields.slack_ts
            if resume and not self._resume_ready(state, plan, channel, ts):
                return
            engine = self.engine(state)
            try:
                self._apply_and_collect(engine, plan, channel, ts)
            finally:
                engine.close()
        self.refresh_message(plan_id)

    # -- resuming after a restart -----------------------------------------------------

    def resume_interrupted(self) -> list[str]:
        """Once, when the bot starts: finish Slack-approved plans a restart left behind.

        A plan is resumed when its policy is approved in Slack, it is ``approved``
        (the apply never started) or ``applying`` (the bot died mid-apply), it has a
        Slack message, a Slack approval and no rejection are recorded, no apply of the
        bot stopped on it with an error (that one waits for a person), and the bot has
        not resumed it ``MAX_RESUMES`` times already.  ``failed``, expired, rejected and
        cancelled plans are never resumed.  Each runs through ``start_apply``, which
        checks again in the worker; the engine skips what is already deleted or
        skipped.  Returns the ids handed to the workers, oldest plan first.

        Never call this from the poll loop: a plan that keeps failing must not be
        retried again and again.
        """
        with self.open_state() as state:
            found = [
                plan
                for status in RESUME_STATUSES
                for plan in state.plans.find(status=status, limit=1000)
                if self.decides(plan.approval)
            ]
        started: list[str] = []
        for plan in sorted(found, key=lambda p: (p.created_at, p.id)):
            try:
                refused = self._resume_refusal(plan.id)
            except RegpruneError as exc:  # e.g. a tampered plan: never act on it
                log.warning("plan %s not resumed: %s", plan.id, exc.message)
                continue
            if refused:
                log.info("plan %s (%s) not resumed: %s", plan.id, plan.status, refused)
                continue
            log.info("resuming plan %s (%s) after a restart", plan.id, plan.status)
            self.start_apply(plan.id, resume=True)
            started.append(plan.id)
        return started

    def _resume_refusal(self, plan_id: str) -> str | None:
        """Why the bot must not resume this plan on start, or None."""
        with self.open_state() as state:
            plan = state.plans.get(plan_id)  # checks the content hash
            if not self.decides(plan.approval) or plan.status not in RESUME_STATUSES:
                return f"it is {plan.status} (approved with {plan.approval})"
            fields = slack_fields(state, plan.id)
            channel, ts = fields.slack_channel, fields.slack_ts
            if not channel or not ts:
                return "it has no Slack message"
            decisions = state.approvals.of(plan.id)
            if any(d.decision == "rejected" for d in decisions):
                return "a rejection is recorded"
            if not any(d.decision == "approved" and d.method == METHOD for d in decisions):
                return "no Slack approval is recorded"
            events = Counter(
                e.event for e in state.audit_log.events(limit=AUDIT_SCAN, plan_id=plan.id)
            )
            if events[STOPPED_EVENT]:
                return "an apply by the bot stopped with an error; a person re-runs it"
            if events[RESUMED_EVENT] >= MAX_RESUMES:
                if not events[NOT_RESUMED_EVENT]:  # say it once, not at every start
                    self._audit(state, NOT_RESUMED_EVENT, plan, attempts=events[RESUMED_EVENT])
                    self.say_in_thread(
                        channel, ts, blocks.resume_refused_text(plan.id, events[RESUMED_EVENT])
                    )
                return f"already resumed {events[RESUMED_EVENT]} time(s)"
        return None

    def _resume_ready(self, state: State, plan: Plan, channel: str | None, ts: str | None) -> bool:
        """In the worker, under this process's registry lock: is the plan still to resume?"""
        if plan.status not in RESUME_STATUSES:  # finished, or failed, since the bot looked
            log.info("plan %s is %s now; not resumed", plan.id, plan.status)
            return False
        name = self.engine(state).lock_name(plan.registry, plan.registry_url)
        holder = next((lock for lock in state.locks.current() if lock.name == name), None)
        if holder is not None and not holder.stale:
            # Another live process (a `regprune apply` or gc) has the registry: never run
            # the same plan twice at once.  The engine would refuse too; this says why first.
            since = blocks.when(holder.acquired_at)
            busy = (
                f"registry '{name}' is busy: {holder.purpose or 'a lock holder'} by "
                f"{holder.hostname}:{holder.pid} since {since}"
            )
            self._audit(state, STOPPED_EVENT, plan, reason=busy, resumed=True)
            self.say_in_thread(channel, ts, blocks.apply_busy_text(plan.id, busy))
            return False
        statuses = state.plans.item_statuses(plan.id)
        done = sum(status in ("deleted", "skipped") for status, _ in statuses.values())
        self._audit(state, RESUMED_EVENT, plan, status=plan.status, done=done)
        self.say_in_thread(
            channel, ts, blocks.resume_text(plan.id, plan.status, done, len(plan.delete))
        )
        return True

    @staticmethod
    def _audit(state: State, event: str, plan: Plan, **details: Any) -> None:
        state.audit_log.record(
            event, registry=plan.registry, plan_id=plan.id, actor=BOT_ACTOR, details=details
        )

    def _apply_and_collect(
        self, engine: Engine, plan: Plan, channel: str | None, ts: str | None
    ) -> None:
        def post(text: str) -> object:
            if not channel or not ts:
                return None
            # Straight to the client: the poster catches and logs, we never retry here.
            return self.client.chat_postMessage(
                channel=channel, thread_ts=ts, text=self.redact(text)
            )

        state = engine.state
        todo = sum(
            status not in ("deleted", "skipped")
            for status, _ in state.plans.item_statuses(plan.id).values()
        )
        progress = ThreadProgress(
            post, todo, every=self.progress_every, seconds=self.progress_seconds
        )
        self.say_in_thread(
            channel,
            ts,
            f":gear: Applying plan {plan.id}: re-checking every tag, then deleting "
            f"{todo} manifest(s).",
        )
        context = ApprovalContext(assume_yes=False, interactive=False, actor=BOT_ACTOR)
        try:
            # Never pick up a plan another process marked failed meanwhile: a person decides.
            result = engine.apply(
                plan.id, context=context, progress=progress, resume=("approved", "applying")
            )
        except LockHeld as exc:  # another live process has the registry (maybe this plan)
            log.warning("apply of plan %s did not start: %s", plan.id, exc.message)
            self._audit(state, STOPPED_EVENT, plan, reason=self.redact(exc.message))
            self.say_in_thread(channel, ts, blocks.apply_busy_text(plan.id, exc.message))
            return
        except RegpruneError as exc:
            log.warning("apply of plan %s stopped: %s", plan.id, exc.message)
            self._audit(state, STOPPED_EVENT, plan, reason=self.redact(exc.message))
            reopened = state.plans.get(plan.id).status == "pending"
            self.say_in_thread(
                channel, ts, blocks.apply_error_text(plan.id, exc.message, reopened=reopened)
            )
            return
        except Exception as exc:  # a bug: say so in the thread, leave it to a person
            log.exception("apply of plan %s stopped on an unexpected error", plan.id)
            self._audit(state, STOPPED_EVENT, plan, reason=type(exc).__name__)
            self.say_in_thread(channel, ts, blocks.apply_crash_text(plan.id, type(exc).__name__))
            return
        self.say_in_thread(channel, ts, **blocks.apply_result_message(result))
        if not plan.gc:
            return
        if not result.of("deleted"):
            self.say_in_thread(channel, ts, "Garbage collection skipped: nothing was deleted.")
            return
        try:
            collected = engine.gc(plan.registry)
        except RegpruneError as exc:
            log.warning("gc of %s did not run: %s", plan.registry, exc.message)
            self.say_in_thread(
                channel, ts, f":x: Garbage collection did not run: {blocks.escape(exc.message)}"
            )
            return
        self.say_in_thread(channel, ts, blocks.gc_result_text(collected))
