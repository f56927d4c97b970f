"""The bot's background loop: post plans made elsewhere, expire overdue ones, run schedules;
and, once when it starts, resume the Slack-approved plans a restart interrupted.

Plans computed by ``regprune plan`` / ``regprune run`` (cron) for a policy with
``approval = "slack"`` are stored without a Slack message; the loop finds them in
the state DB and posts them.  A policy's ``schedule`` (a cron expression, UTC) makes
the bot plan it itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import datetime

from croniter import croniter

from regprune.config import Settings
from regprune.errors import ConfigError

from .plugin import slack_approvals
from .service import SCHEDULE_ACTOR, SlackService

log = logging.getLogger(__name__)


def check_schedules(
    settings: Settings, approvals: Collection[str] | None = None
) -> dict[str, str]:
    """Policies with a ``schedule``: ``{policy: cron}``; a bad expression is a ConfigError.

    Only policies approved in Slack (``approvals``, default: found through the plugins)
    are scheduled by the bot."""
    if approvals is None:
        approvals = slack_approvals()
    found: dict[str, str] = {}
    for name, policy in settings.policy.items():
        if not policy.schedule:
            continue
        if not croniter.is_valid(policy.schedule):
            raise ConfigError(
                f"policy.{name}.schedule: invalid cron expression {policy.schedule!r} "
                "(five fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * 1-5')"
            )
        if policy.approval not in approvals:
            log.warning(
                "policy %s has a schedule but approval = %r; the bot only schedules Slack-approved"
                " policies (use cron with `regprune run` for the others)",
                name,
                policy.approval,
            )
            continue
        found[name] = policy.schedule
    return found


class Schedules:
    """When each scheduled policy is due next; ``due(now)`` returns the policies to plan."""

    def __init__(self, schedules: dict[str, str], start: datetime) -> None:
        self.schedules = schedules
        self.next_at = {name: self._after(cron, start) for name, cron in schedules.items()}

    @staticmethod
    def _after(cron: str, moment: datetime) -> datetime:
        return croniter(cron, moment).get_next(datetime)

    def due(self, now: datetime) -> list[str]:
        """Policies whose time has come (each once, however late), and move them on."""
        ready = [name for name, at in sorted(self.next_at.items()) if at <= now]
        for name in ready:
            self.next_at[name] = self._after(self.schedules[name], now)
        return ready


class Background:
    """A daemon thread that polls every ``interval`` seconds until ``stop``."""

    def __init__(
        self,
        service: SlackService,
        *,
        interval: float = 15.0,
        schedules: Schedules | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.service = service
        self.interval = interval
        self.now = now or service.now
        self.schedules = schedules or Schedules(
            check_schedules(service.settings, service.approvals), self.now()
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One round: start due schedules, post unposted plans, expire overdue ones."""
        for policy in self.schedules.due(self.now()):
            log.info("schedule: planning policy %s", policy)
            self.service.submit(self.service.plan_and_post, policy, SCHEDULE_ACTOR)
        try:
            self.service.poll_once()
        except Exception:  # the loop must survive a bad round (DB busy, Slack down)
            log.exception("polling the state DB failed; trying again in %.0f s", self.interval)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval)

    def resume(self) -> list[str]:
        """Resume approved/applying Slack plans a restart left behind (``start`` does it once).

        Never part of ``tick``: a plan whose apply keeps failing must not be retried at
        every poll.  A failure here is logged and does not stop the bot from starting.
        """
        try:
            return self.service.resume_interrupted()
        except Exception:
            log.exception(
                "resuming interrupted plans failed; `regprune apply PLAN_ID` finishes them"
            )
            return []

    def start(self, *, resume: bool = True) -> Background:
        """Resume interrupted plans (once, unless ``resume`` is false), then poll in a thread."""
        if resume:
            self.resume()
        self._thread = threading.Thread(target=self._run, name="regprune-slack-poll", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
