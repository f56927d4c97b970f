"""Progress of an apply, posted to the plan's thread in batches.

The engine calls the poster once per item, inside the deletion loop.  A post that
fails (429, ``ok: false``, 500, a timeout) is logged and forgotten: the poster
never raises, never retries, and never waits for Slack, so deletions are neither
stopped nor repeated because of Slack.  After a 429 it stays quiet until the
``Retry-After`` time has passed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from regprune.models import PlanItem

from . import blocks

log = logging.getLogger(__name__)

PostFn = Callable[[str], object]
"""Posts one text to the thread; raises (e.g. ``SlackApiError``) when Slack refuses it."""


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` seconds of a rate-limited Slack API error, else None."""
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) != 429:
        return None
    headers = getattr(response, "headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(float(value), 0.0) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a Slack API failure for the logs."""
    response = getattr(exc, "response", None)
    if response is not None:
        error = ""
        data = getattr(response, "data", None)
        if isinstance(data, dict):
            error = str(data.get("error") or "")
        return f"HTTP {getattr(response, 'status_code', '?')} {error}".strip()
    return type(exc).__name__


class ThreadProgress:
    """The ``progress`` callback of ``Engine.apply``: counts outcomes, posts every N items or S seconds."""

    def __init__(
        self,
        post: PostFn,
        total: int,
        *,
        every: int = 25,
        seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.post = post
        self.total = total
        self.every = max(every, 1)
        self.seconds = seconds
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.done = 0
        self.posted_at_count = 0
        self.last_post = clock()
        self.quiet_until = 0.0
        self.posts = 0
        self.failures = 0

    def __call__(self, item: PlanItem, status: str, reason: str) -> None:
        self.counts[status] += 1
        self.done += 1
        now = self.clock()
        due = self.done - self.posted_at_count >= self.every or now - self.last_post >= self.seconds
        if due and self.done < self.total and now >= self.quiet_until:
            self._post(now)

    def _post(self, now: float) -> None:
        self.posted_at_count = self.done
        self.last_post = now
        try:
            self.post(blocks.progress_text(self.done, self.total, self.counts))
        except Exception as exc:  # never let Slack stop or repeat a deletion
            self.failures += 1
            quiet = retry_after(exc)
            if quiet is not None:
                self.quiet_until = now + quiet
            log.warning("progress post failed (%s); deletions continue", describe(exc))
            return
        self.posts += 1
