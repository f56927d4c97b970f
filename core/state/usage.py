"""Image use recorded from the registry's notifications (``state.usage``).

``regprune listen`` turns each push and pull event the registry sends into
`UsageEvent` and hands batches of them to `UsageStore.record`, which stores, per
registry, repository and digest: the first push, the last pull (with its tag and user
agent), the pull count and the latest distinct user agents.  Each event id is
recorded once, so a redelivered event changes nothing; events may arrive in any
order (the newest pull wins, the oldest push wins).

The listener also records when it was listening (``usage_sessions``): a session
starts when the listener starts, is proven when the registry's first event arrives,
keeps a heartbeat while it runs and ends when it stops.  `UsageStore.coverage` turns
the sessions into the span of time over which "not pulled" is known (see
`Coverage`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ..models import Coverage, Usage
from ._codec import chunks, from_db, parse, to_db, unique
from .connection import Connection

__all__ = ["Coverage", "RecordResult", "Usage", "UsageEvent", "UsageSession", "UsageStore"]

HEARTBEAT = timedelta(seconds=30)  # how often a live listener says so, by default
MAX_GAP = timedelta(minutes=10)  # listener downtime the registry's retries bridge, by default
AGENTS_KEPT = 5  # distinct user agents remembered per digest, latest first
EVENT_IDS_KEPT = timedelta(days=14)  # how long an event id is remembered for de-duplication

Action = Literal["push", "pull"]


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One push or pull of a manifest, as the listener understood a registry event."""

    id: str
    action: Action
    repository: str
    digest: str
    timestamp: datetime
    tag: str | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class RecordResult:
    """How many events of a batch were new, and how many had been recorded before."""

    recorded: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class UsageSession:
    """One run of the listener for one registry."""

    id: int
    registry: str
    started: datetime
    first_event: datetime | None
    heard: datetime
    ended: datetime | None
    heartbeat: timedelta = HEARTBEAT
    max_gap: timedelta = MAX_GAP


class UsageStore:
    """The usage, usage_events and usage_sessions tables (``state.usage``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def sync_every_commit(self) -> None:
        """Make each commit reach the disk before it returns (``synchronous = FULL``):
        the listener acknowledges an event only once it would survive a power cut."""
        with self._conn.mutex:
            self._conn.db.execute("PRAGMA synchronous = FULL")

    # -- events ---------------------------------------------------------------------------

    def record(
        self, registry: str, events: Sequence[UsageEvent], received: datetime
    ) -> RecordResult:
        """Store a batch of events in one transaction; an event id seen before is skipped.

        Committed before it returns: the listener acknowledges a delivery only after.
        """
        recorded = duplicates = 0
        with self._conn.write() as conn:
            for event in events:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO usage_events (registry, id, received) VALUES (?, ?, ?)",
                    (registry, event.id, to_db(received)),
                ).rowcount
                if not inserted:
                    duplicates += 1
                    continue
                recorded += 1
                self._apply(conn, registry, event)
        return RecordResult(recorded, duplicates)

    @staticmethod
    def _apply(conn: Any, registry: str, event: UsageEvent) -> None:
        key = (registry, event.repository, event.digest)
        row = conn.execute(
            "SELECT first_push, last_pull, pulls, agents FROM usage"
            " WHERE registry = ? AND repository = ? AND digest = ?",
            key,
        ).fetchone()
        when = to_db(event.timestamp)
        if row is None:
            conn.execute(
                "INSERT INTO usage (registry, repository, digest, first_push, last_pull,"
                " last_pull_tag, last_pull_agent, pulls, agents) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *key,
                    when if event.action == "push" else None,
                    when if event.action == "pull" else None,
                    event.tag if event.action == "pull" else None,
                    event.agent if event.action == "pull" else None,
                    1 if event.action == "pull" else 0,
                    json.dumps([event.agent] if event.action == "pull" and event.agent else []),
                ),
            )
            return
        first_push, last_pull, pulls, agents_json = row
        if event.action == "push":
            if first_push is None or when < first_push:
                conn.execute(
                    "UPDATE usage SET first_push = ? WHERE registry = ? AND repository = ?"
                    " AND digest = ?",
                    (when, *key),
                )
            return
        agents = [a for a in json.loads(agents_json or "[]") if a != event.agent]
        newest = last_pull is None or when >= last_pull
        if event.agent:
            # Latest first when this pull is the newest; else kept, behind the newer ones.
            agents = [event.agent, *agents] if newest else [*agents, event.agent]
        if newest:
            conn.execute(
                "UPDATE usage SET last_pull = ?, last_pull_tag = ?, last_pull_agent = ?,"
                " pulls = ?, agents = ? WHERE registry = ? AND repository = ? AND digest = ?",
                (when, event.tag, event.agent, pulls + 1, json.dumps(agents[:AGENTS_KEPT]), *key),
            )
        else:
            conn.execute(
                "UPDATE usage SET pulls = ?, agents = ? WHERE registry = ? AND repository = ?"
                " AND digest = ?",
                (pulls + 1, json.dumps(agents[:AGENTS_KEPT]), *key),
            )

    def forget_old_event_ids(self, now: datetime, keep: timedelta = EVENT_IDS_KEPT) -> int:
        """Drop event ids received longer ago than ``keep`` (no registry redelivers
        those); the usage they recorded stays.  Returns how many went."""
        with self._conn.write() as conn:
            return int(
                conn.execute(
                    "DELETE FROM usage_events WHERE received < ?", (to_db(now - keep),)
                ).rowcount
            )

    def get(self, registry: str, repository: str, digests: Iterable[str]) -> dict[str, Usage]:
        """Recorded usage of ``digests`` in ``repository``; a digest never seen is absent."""
        found: dict[str, Usage] = {}
        for part in chunks(unique(digests)):
            marks = ", ".join("?" for _ in part)
            for row in self._conn.rows(
                "SELECT * FROM usage WHERE registry = ? AND repository = ?"
                f" AND digest IN ({marks})",
                [registry, repository, *part],
            ):
                found[row["digest"]] = _usage(row)
        return found

    def repository(self, registry: str, repository: str) -> dict[str, Usage]:
        """Recorded usage of every digest of one repository."""
        return {
            row["digest"]: _usage(row)
            for row in self._conn.rows(
                "SELECT * FROM usage WHERE registry = ? AND repository = ?",
                [registry, repository],
            )
        }

    def has_any(self, registry: str) -> bool:
        """Whether any use was ever recorded for ``registry`` (scans skip the lookups if not)."""
        return bool(self._conn.rows("SELECT 1 FROM usage WHERE registry = ? LIMIT 1", [registry]))

    def event_count(self, registry: str) -> int:
        """How many distinct event ids are remembered for ``registry``."""
        rows = self._conn.rows(
            "SELECT COUNT(*) AS n FROM usage_events WHERE registry = ?", [registry]
        )
        return int(rows[0]["n"])

    # -- sessions and coverage ------------------------------------------------------------

    def start_session(
        self,
        registry: str,
        now: datetime,
        *,
        heartbeat: timedelta = HEARTBEAT,
        max_gap: timedelta = MAX_GAP,
    ) -> int:
        """Record that the listener started listening for ``registry``; returns the id.

        ``heartbeat`` is how often it will call `heard`, ``max_gap`` the downtime before
        this session that the registry's retries bridge; both are stored with the
        session, so a plan made elsewhere judges coverage by the listener's settings.
        """
        with self._conn.write() as conn:
            cursor = conn.execute(
                "INSERT INTO usage_sessions (registry, started, heard, heartbeat, max_gap)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    registry,
                    to_db(now),
                    to_db(now),
                    heartbeat.total_seconds(),
                    max_gap.total_seconds(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def heard(self, session: int, now: datetime, *, event: bool = False) -> None:
        """The listener is alive at ``now``; ``event``: it received a registry event."""
        with self._conn.write() as conn:
            conn.execute(
                "UPDATE usage_sessions SET heard = MAX(heard, ?),"
                " first_event = CASE WHEN ? AND first_event IS NULL THEN ? ELSE first_event END"
                " WHERE id = ?",
                (to_db(now), int(event), to_db(now), session),
            )

    def end_session(self, session: int, now: datetime) -> None:
        """The listener stopped at ``now``."""
        with self._conn.write() as conn:
            conn.execute(
                "UPDATE usage_sessions SET heard = MAX(heard, ?), ended = ? WHERE id = ?",
                (to_db(now), to_db(now), session),
            )

    def sessions(self, registry: str) -> list[UsageSession]:
        """Every session of ``registry``, oldest first."""
        return [
            UsageSession(
                id=row["id"],
                registry=row["registry"],
                started=parse(row["started"]),
                first_event=from_db(row["first_event"]),
                heard=parse(row["heard"]),
                ended=from_db(row["ended"]),
                heartbeat=timedelta(seconds=row["heartbeat"] or HEARTBEAT.total_seconds()),
                max_gap=timedelta(
                    seconds=row["max_gap"]
                    if row["max_gap"] is not None
                    else MAX_GAP.total_seconds()
                ),
            )
            for row in self._conn.rows(
                "SELECT * FROM usage_sessions WHERE registry = ? ORDER BY started, id",
                [registry],
            )
        ]

    def coverage(
        self,
        registry: str,
        now: datetime,
        *,
        heartbeat: timedelta | None = None,
        max_gap: timedelta | None = None,
    ) -> Coverage:
        """The unbroken span of listening that reaches ``now``.

        A session counts from its first event (until then nothing proves the registry
        delivers to it) to when it was last heard, or ``now`` while it is live (heard
        within two heartbeats).  A gap no longer than the next session's ``max_gap``
        joins two spans: the registry retries a failed delivery, so a short restart of
        the listener loses nothing.  ``heartbeat`` and ``max_gap`` override what each
        session recorded (tests).
        """
        spans: list[tuple[datetime, datetime, timedelta]] = []
        for session in self.sessions(registry):
            if session.first_event is None:
                continue
            beat = heartbeat or session.heartbeat
            live = session.ended is None and now - session.heard <= 2 * beat
            gap = max_gap if max_gap is not None else session.max_gap
            spans.append((session.first_event, now if live else session.heard, gap))
        spans.sort()
        merged: list[tuple[datetime, datetime, timedelta]] = []
        for start, end, gap in spans:
            if merged and start - merged[-1][1] <= gap:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end), gap)
            else:
                merged.append((start, end, gap))
        gaps = [(a[1], b[0]) for a, b in itertools.pairwise(merged)][::-1]
        if not merged:
            return Coverage(registry, now, None, gaps)
        start, end, gap = merged[-1]
        if now - end > gap:
            return Coverage(registry, now, None, [(end, now), *gaps])
        return Coverage(registry, now, start, gaps)


def _usage(row: Mapping[str, Any]) -> Usage:
    return Usage(
        repository=row["repository"],
        digest=row["digest"],
        first_push=from_db(row["first_push"]),
        last_pull=from_db(row["last_pull"]),
        last_pull_tag=row["last_pull_tag"],
        last_pull_agent=row["last_pull_agent"],
        pulls=int(row["pulls"] or 0),
        agents=tuple(json.loads(row["agents"] or "[]")),
    )
