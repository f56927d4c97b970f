"""The state DB: digest cache, plans and their items, approvals, audit log, gc runs, locks.

One SQLite file (sqlite-utils on top of ``sqlite3``) shared by every front end, opened
by ``State``, which owns the connection and its transactions and exposes one part per
concern:

- ``state.digests``    (``digests.py``): manifest facts by digest, first-seen times
- ``state.plans``      (``plans.py``): stored plans, their status, side fields, items
- ``state.approvals``  (``approvals.py``): decisions on plans
- ``state.messages``   (``messages.py``): which front-end message shows which plan
- ``state.audit_log``  (``audit.py``): the append-only event log
- ``state.gc_runs``    (``gc_runs.py``): outcomes of garbage-collection runs
- ``state.locks``      (``locks.py``): one apply or gc per registry at a time
- ``state.retention``  (``retention.py``): removing old plans, vacuuming
- ``state.usage``      (``usage.py``): pulls and pushes from the registry's notifications

The schema and its migrations are in ``schema.py``; the connection (WAL, busy
timeout, ``BEGIN IMMEDIATE`` writes) in ``connection.py``.  Every public write commits
before it returns, so outcomes are durable as they happen.

Datetimes are stored as ISO-8601 UTC strings with microseconds (so they sort as
text) and returned as timezone-aware datetimes.  Naive datetimes passed in are
taken to be UTC.  Rows come back as frozen dataclasses (``AuditEvent``, ``LockInfo``,
``GcRun``, ``ApprovalRow``, ``PlanFields``, ``PlanRow``), never as string-indexed dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from ._codec import content_hash
from .approvals import ApprovalRow, Approvals
from .audit import PRUNED_EVENT, VACUUMED_EVENT, AuditEvent, AuditLog
from .connection import (
    BUSY_TIMEOUT,
    NOTICE_AFTER,
    PRIVATE_DIR,
    PRIVATE_FILE,
    Connection,
    StateBusy,
    create_private,
)
from .digests import DigestCache
from .gc_runs import GcRun, GcRuns
from .locks import LockInfo, Locks
from .messages import MessageRef, PlanMessages
from .plan_list import PlanRow
from .plans import PlanFields, PlanRemoved, Plans
from .retention import FINAL_PLAN_STATUSES, UNFINISHED_PLAN_STATUSES, PruneResult, Retention
from .schema import migrations
from .usage import Coverage, RecordResult, Usage, UsageEvent, UsageSession, UsageStore

__all__ = [
    "BUSY_TIMEOUT",
    "FINAL_PLAN_STATUSES",
    "NOTICE_AFTER",
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "PRUNED_EVENT",
    "UNFINISHED_PLAN_STATUSES",
    "VACUUMED_EVENT",
    "ApprovalRow",
    "Approvals",
    "AuditEvent",
    "AuditLog",
    "Coverage",
    "DigestCache",
    "GcRun",
    "GcRuns",
    "LockInfo",
    "Locks",
    "MessageRef",
    "PlanFields",
    "PlanMessages",
    "PlanRemoved",
    "PlanRow",
    "Plans",
    "PruneResult",
    "RecordResult",
    "Retention",
    "State",
    "StateBusy",
    "Usage",
    "UsageEvent",
    "UsageSession",
    "UsageStore",
    "content_hash",
    "create_private",
    "migrations",
]


class State:
    """regprune's state DB: one SQLite file, opened and migrated on construction.

    ``State(":memory:")`` gives a private in-memory DB (tests).  For a file, parent
    directories are created, WAL mode and a busy timeout are set, so processes and
    threads may share the file: each should open its own ``State`` (its own
    connection), which is how concurrent writers are serialised by SQLite.  A single
    ``State`` may still be used from several threads (the connection is opened with
    ``check_same_thread=False`` and every call holds an internal lock), but calls then
    run one at a time.
    """

    digests: DigestCache
    plans: Plans
    approvals: Approvals
    messages: PlanMessages
    audit_log: AuditLog
    gc_runs: GcRuns
    locks: Locks
    retention: Retention
    usage: UsageStore

    def __init__(self, path: str | Path, *, notify: Callable[[str], None] | None = None) -> None:
        self._conn = Connection(path, notify=notify)
        self.audit_log = AuditLog(self._conn)
        self.digests = DigestCache(self._conn)
        self.plans = Plans(self._conn, self.audit_log)
        self.approvals = Approvals(self._conn)
        self.messages = PlanMessages(self._conn)
        self.gc_runs = GcRuns(self._conn)
        self.locks = Locks(self._conn)
        self.retention = Retention(self._conn, self.audit_log, self.locks)
        self.usage = UsageStore(self._conn)

    @property
    def path(self) -> str:
        """The DB file's path (``:memory:`` for an in-memory DB)."""
        return self._conn.path

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils database (tests and migrations; parts own the queries)."""
        return self._conn.db

    def file_size(self) -> int:
        """Bytes the DB takes on disk: the file and its write-ahead log (0 in memory)."""
        return self._conn.file_size()

    def close(self) -> None:
        """Close the connection.  Locks still held by this object are released first."""
        self.locks.release_all()
        self._conn.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"State({self.path!r})"
