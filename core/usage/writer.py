"""Group commit: one thread writes the events of every waiting request in one go.

Each request hands its events to `GroupWriter.submit` and blocks; the writer thread
takes everything queued meanwhile, records it (one ``state.usage.record`` per
registry, each one transaction) and only then wakes the requests, which acknowledge.
Under load, a hundred concurrent deliveries cost one fsync instead of a hundred.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..state.usage import UsageEvent, UsageStore

MAX_BATCH = 2000
"""Events per transaction at most: a commit never waits behind an unbounded batch."""


@dataclass
class Totals:
    """What the writer stored since it started (for the listener's summary lines)."""

    recorded: int = 0
    duplicates: int = 0
    batches: int = 0


@dataclass(eq=False)
class _Job:
    registry: str
    events: Sequence[UsageEvent]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class WriteFailed(RuntimeError):
    """The batch holding a request's events could not be committed."""


class GroupWriter:
    """The one thread that writes usage; `submit` returns once the events are durable."""

    def __init__(
        self,
        store: UsageStore,
        clock: Callable[[], datetime],
        *,
        delivered: Callable[[str], None] | None = None,
    ) -> None:
        """``delivered(registry)`` runs in the writer thread after each committed batch
        that held a delivery for ``registry`` (the listener proves its session there)."""
        self._store = store
        self._clock = clock
        self._delivered = delivered
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.totals = Totals()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def submit(self, registry: str, events: Sequence[UsageEvent], timeout: float = 30.0) -> None:
        """Queue one delivery (events may be empty: it still proves delivery) and wait
        until it is committed; raise `WriteFailed` when it was not."""
        job = _Job(registry, events)
        self._queue.put(job)
        if not job.done.wait(timeout):
            raise WriteFailed(f"not committed within {timeout:g}s")
        if job.error is not None:
            raise WriteFailed(str(job.error) or type(job.error).__name__)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def snapshot(self) -> Totals:
        with self._lock:
            return Totals(self.totals.recorded, self.totals.duplicates, self.totals.batches)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            size = len(first.events)
            stop = False
            while size < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                size += len(job.events)
            self._write(jobs)
            if stop:
                return

    def _write(self, jobs: list[_Job]) -> None:
        by_registry: dict[str, list[_Job]] = {}
        for job in jobs:
            by_registry.setdefault(job.registry, []).append(job)
        for registry, group in by_registry.items():
            events = [event for job in group for event in job.events]
            try:
                result = self._store.record(registry, events, self._clock()) if events else None
                if self._delivered is not None:
                    self._delivered(registry)
            except Exception as exc:  # the requests answer 503; the registry retries
                for job in group:
                    job.error = exc
                    job.done.set()
                continue
            with self._lock:
                self.totals.batches += 1
                if result is not None:
                    self.totals.recorded += result.recorded
                    self.totals.duplicates += result.duplicates
            for job in group:
                job.done.set()
