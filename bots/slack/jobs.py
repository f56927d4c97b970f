"""The bot's background applies: an approved plan's apply in a worker, progress in its
thread, gc afterwards if the plan asks; and, once at start, resuming what a restart
left behind.  A base class of ``SlackService`` (split out to keep one job per module).

Whether a plan may be resumed is ``regprune.decisions.resume_check`` (through
``Engine.resume_check``); the apply itself is ``Engine.resume``, which never takes a
pending or failed plan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from regprune.decisions import ApprovalRules
from regprune.engine import Engine
from regprune.errors import LockHeld, RegpruneError
from regprune.lifecycle import ITEM_FINISHED, UNATTENDED_RESUMABLE, ItemStatus, PlanStatus
from regprune.models import Plan
from regprune.state import State

from . import blocks
from .progress import ThreadProgress
from .redact import Redactor

log = logging.getLogger(__name__)

RESUME_SCAN = 1000  # plans of each resumable status looked at when the bot starts


class ApplyJobs:
    """Applying approved plans in the background, and resuming them after a restart."""

    client: WebClient
    redact: Redactor
    rules: ApprovalRules
    progress_every: int
    progress_seconds: float

    # -- provided by SlackService --------------------------------------------------------

    def open_state(self) -> AbstractContextManager[State]:
        raise NotImplementedError

    def engine(self, state: State) -> Engine:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        raise NotImplementedError

    def say_in_thread(
        self, channel: str | None, ts: str | None, text: str, **extra: Any
    ) -> SlackResponse | None:
        raise NotImplementedError

    def refresh_message(self, plan_id: str, note: str = "") -> None:
        raise NotImplementedError

    def message_of(self, state: State, plan_id: str) -> tuple[str | None, str | None]:
        raise NotImplementedError

    def _registry_lock(self, registry: str) -> threading.Lock:
        raise NotImplementedError

    # -- apply -------------------------------------------------------------------------

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
            channel, ts = self.message_of(state, plan.id)
            engine = self.engine(state)
            try:
                if resume and not self._resume_ready(engine, plan, channel, ts):
                    return
                self._apply_and_collect(engine, plan, channel, ts)
            finally:
                engine.close()
        self.refresh_message(plan_id)

    # -- resuming after a restart -----------------------------------------------------

    def resume_interrupted(self) -> list[str]:
        """Once, when the bot starts: finish Slack-approved plans a restart left behind.

        A plan is resumed when ``decisions.resume_check`` allows it (approved in Slack,
        ``approved`` or ``applying``, no rejection, no apply of the bot stopped on it
        with an error, fewer than ``MAX_RESUMES`` resumes) and it has a Slack message.
        ``failed``, expired, rejected and cancelled plans are never resumed.  Each runs
        through ``start_apply``, which checks again in the worker; the engine skips what
        is already deleted or skipped.  Returns the ids handed to the workers, oldest
        plan first.

        Never call this from the poll loop: a plan that keeps failing must not be
        retried again and again.
        """
        with self.open_state() as state:
            found = [
                plan
                for status in UNATTENDED_RESUMABLE
                for plan in state.plans.find(status=status, limit=RESUME_SCAN)
                if self.rules.decides(plan.approval)
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
            channel, ts = self.message_of(state, plan.id)
            if plan.status in UNATTENDED_RESUMABLE and (not channel or not ts):
                return "it has no Slack message"
            check = self.engine(state).resume_check(plan, self.rules, actor=self.rules.actor)
            if check.announce:
                self.say_in_thread(channel, ts, blocks.resume_refused_text(plan.id, check.attempts))
            return check.refusal

    def _resume_ready(
        self, engine: Engine, plan: Plan, channel: str | None, ts: str | None
    ) -> bool:
        """In the worker, under this process's registry lock: is the plan still to resume?"""
        state = engine.state
        if plan.status not in UNATTENDED_RESUMABLE:  # finished, or failed, since the bot looked
            log.info("plan %s is %s now; not resumed", plan.id, plan.status)
            return False
        name = engine.lock_name(plan.registry, plan.registry_url)
        holder = next((lock for lock in state.locks.current() if lock.name == name), None)
        if holder is not None and not holder.stale:
            # Another live process (a `regprune apply` or gc) has the registry: never run
            # the same plan twice at once.  The engine would refuse too; this says why first.
            since = blocks.when(holder.acquired_at)
            busy = (
                f"registry '{name}' is busy: {holder.purpose or 'a lock holder'} by "
                f"{holder.hostname}:{holder.pid} since {since}"
            )
            self._record(engine, self.rules.stopped_event, plan, reason=busy, resumed=True)
            self.say_in_thread(channel, ts, blocks.apply_busy_text(plan.id, busy))
            return False
        statuses = state.plans.item_statuses(plan.id)
        done = sum(status in ITEM_FINISHED for status, _ in statuses.values())
        self._record(engine, self.rules.resumed_event, plan, status=plan.status, done=done)
        self.say_in_thread(
            channel, ts, blocks.resume_text(plan.id, plan.status, done, len(statuses))
        )
        return True

    def _record(self, engine: Engine, event: str, plan: Plan, **details: object) -> None:
        engine.record_event(event, plan, actor=self.rules.actor, **details)

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
            status not in ITEM_FINISHED for status, _ in state.plans.item_statuses(plan.id).values()
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
        stopped = self.rules.stopped_event
        try:
            # Never a plan another process marked failed meanwhile: a person decides.
            result = engine.resume(plan.id, actor=self.rules.actor, progress=progress)
        except LockHeld as exc:  # another live process has the registry (maybe this plan)
            log.warning("apply of plan %s did not start: %s", plan.id, exc.message)
            self._record(engine, stopped, plan, reason=self.redact(exc.message))
            self.say_in_thread(channel, ts, blocks.apply_busy_text(plan.id, exc.message))
            return
        except RegpruneError as exc:
            log.warning("apply of plan %s stopped: %s", plan.id, exc.message)
            self._record(engine, stopped, plan, reason=self.redact(exc.message))
            reopened = state.plans.get(plan.id).status == PlanStatus.PENDING
            self.say_in_thread(
                channel, ts, blocks.apply_error_text(plan.id, exc.message, reopened=reopened)
            )
            return
        except Exception as exc:  # a bug: say so in the thread, leave it to a person
            log.exception("apply of plan %s stopped on an unexpected error", plan.id)
            self._record(engine, stopped, plan, reason=type(exc).__name__)
            self.say_in_thread(channel, ts, blocks.apply_crash_text(plan.id, type(exc).__name__))
            return
        self.say_in_thread(channel, ts, **blocks.apply_result_message(result))
        if not plan.gc:
            return
        if not result.of(ItemStatus.DELETED):
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
