"""The Slack bot's service, testable without HTTP: who may click (Slack users, groups,
workspaces), what gets posted where, and the worker pool.

Listeners only ack, call a method here and render.  The approval rules (quorum,
self-approval, expiry, resume after a restart) are ``regprune.decisions``, fed with
``[slack]`` values through `SlackService.rules`; every decision is an ``Engine`` call
(``vote``, ``cancel``, ``expire``, ``resume``), a compare-and-set in the one state DB
the CLI uses, so two clicks racing cannot both win.  Each call opens its own
``State`` (its own SQLite connection), so request threads and background workers
never share a connection.  Applying and resuming live in ``jobs``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pluggy
from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from regprune import decisions
from regprune.config import Settings
from regprune.decisions import ApprovalRules
from regprune.durations import parse_duration
from regprune.engine import Engine
from regprune.errors import RegpruneError
from regprune.lifecycle import WITH_OUTCOMES, Decision, PlanStatus
from regprune.models import Plan
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State

from . import blocks
from .clicks import Click, ClickDecision, Outcome, slack_actor
from .deciding import METHOD, Deciding
from .jobs import ApplyJobs
from .messages import SlackFields, remember_message, slack_fields
from .plugin import slack_approvals
from .progress import describe, retry_after
from .redact import Redactor
from .settings import SlackSettings, slack_settings

log = logging.getLogger(__name__)

BOT_ACTOR = "regprune-bot"
SCHEDULE_ACTOR = "schedule"
FILE_THRESHOLD = 50  # plans with more delete items get their list as an uploaded file
MAX_LIST_MESSAGES = 8  # fallback when the upload fails: at most this many threaded replies
MAX_RETRY_WAIT = 30.0  # longest Retry-After we wait once for an important post
MAX_RESUMES = 2  # a plan whose resumed apply keeps dying with the bot is left to a person

# Kept for code that imported them from here.
__all__ = ["BOT_ACTOR", "METHOD", "Click", "ClickDecision", "Outcome", "SlackService", "slack_actor"]


class SlackService(Deciding, ApplyJobs):
    """Side effects of the bot, over one config, one state DB and one Slack client."""

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
        self.rules = ApprovalRules(
            method=METHOD,
            approvals=frozenset(self.approvals),
            actor=BOT_ACTOR,
            approvals_required=self.slack.approvals_required,
            allow_self_approval=self.slack.allow_self_approval,
            plan_ttl=self.ttl,
            max_resumes=MAX_RESUMES,
        )
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

    def message_of(self, state: State, plan_id: str) -> tuple[str | None, str | None]:
        """The channel and ts of a plan's Slack message (None, None before it is posted)."""
        fields = slack_fields(state, plan_id)
        return fields.slack_channel, fields.slack_ts

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

    # -- reading a plan for display ---------------------------------------------------

    def view(
        self, state: State, plan_id: str, note: str = ""
    ) -> tuple[blocks.PlanView, SlackFields]:
        """A plan's message view and its side fields (channel, ts, expiry, requester)."""
        plan = state.plans.get(plan_id)
        fields = slack_fields(state, plan.id)
        recorded = state.approvals.of(plan.id)
        approvals = [(d.by, d.at) for d in decisions.by_decision(recorded, Decision.APPROVED)]
        rejections = [(d.by, d.at) for d in decisions.by_decision(recorded, Decision.REJECTED)]
        outcome: dict[str, int] = {}
        if plan.status in WITH_OUTCOMES:
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
        if not plan.stored:  # an empty scope: nothing was stored, nothing to post
            say(f"Policy `{policy}` covers no repository: {'; '.join(plan.warnings)}")
            return None
        if not plan.has_work:
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
            if plan.status != PlanStatus.PENDING or not self.decides(plan.approval):
                return None
            engine = self.engine(state)
            engine.stamp_expiry(plan, self.ttl)
            if engine.expire_if_due(
                plan, actor=BOT_ACTOR, reason="expired before it could be posted"
            ):
                return None
            if not plan.has_work:
                engine.cancel(plan, actor=BOT_ACTOR, method=METHOD, reason="nothing to delete")
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
                for plan in state.plans.find(status=PlanStatus.PENDING, limit=200)
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
            changed = self.engine(state).expire(plan, actor=BOT_ACTOR)
        if changed:
            self.refresh_message(plan_id)
        return changed
