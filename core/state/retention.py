"""Plan retention: removing old plans (the only thing that grows without bound: a
plan of a large registry is megabytes) and vacuuming the file afterwards.

Removal is by an allow-list of statuses: a plan with work left (``approved``,
``applying``, ``failed``) is never removed.  The audit log, digest cache and
first-seen times are kept.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..errors import LockHeld, RegpruneError
from ..lifecycle import FINISHED, RESUMABLE, PlanStatus
from ._codec import chunks, now, to_db
from .audit import PRUNED_EVENT, VACUUMED_EVENT, AuditLog
from .connection import Connection
from .locks import Locks
from .messages import delete_for as delete_messages

FINAL_PLAN_STATUSES = FINISHED
"""Plans nothing more can happen to: removed once older than the retention."""
UNFINISHED_PLAN_STATUSES = RESUMABLE
"""Plans with work left that ``apply`` resumes: never removed, whatever their age."""
# Pending is the third kind: removed once older than the retention (nobody approved
# it), unless it is still open for approval (its expires_at lies ahead).  Any status
# named nowhere here is kept: removal is an allow-list.

# Which plans prune_plans removes.  created_at is indexed, so the first condition
# keeps this cheap; updated_at (never earlier than created_at) measures age from the
# last change, so a plan approved late and applied yesterday is not removed today.
_PRUNABLE = (
    "created_at < :cutoff AND COALESCE(updated_at, created_at) < :cutoff"
    " AND (status IN ({final})"
    " OR (status = :open_status AND (expires_at IS NULL OR expires_at <= :now)))"
).format(final=", ".join(f"'{status}'" for status in FINAL_PLAN_STATUSES))


@dataclass
class PruneResult:
    """What ``Retention.prune_plans`` removed (or, with ``dry_run``, would remove)."""

    older_than: timedelta
    cutoff: datetime
    dry_run: bool
    plan_ids: list[str] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    items: int = 0
    approvals: int = 0
    bytes: int = 0
    """Size of the removed plans' stored content (what the plans table shrinks by)."""
    kept: int = 0
    """Plans older than the cutoff kept because work is left or approval is still open."""

    @property
    def plans(self) -> int:
        return len(self.plan_ids)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than_seconds": int(self.older_than.total_seconds()),
            "cutoff": self.cutoff.isoformat(),
            "plans": self.plans,
            "items": self.items,
            "approvals": self.approvals,
            "bytes": self.bytes,
            "by_status": dict(self.by_status),
            "kept": self.kept,
            "plan_ids": list(self.plan_ids),
        }


class Retention:
    """Removing old plans and vacuuming (``state.retention``)."""

    def __init__(self, conn: Connection, audit: AuditLog, locks: Locks) -> None:
        self._conn = conn
        self._audit = audit
        self._locks = locks

    def prune_plans(
        self,
        older_than: timedelta,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        actor: str | None = None,
        trigger: str = "regprune state prune",
        record_empty: bool = True,
    ) -> PruneResult:
        """Remove stored plans older than ``older_than``, with their items and approvals.

        Removed: plans that finished (``done``, ``rejected``, ``expired``,
        ``cancelled``) and ``pending`` plans nobody approved, once both their creation
        and their last change are older than the cutoff; a pending plan still open for
        approval (``expires_at`` ahead) stays.  Never removed, whatever their age:
        ``approved``, ``applying`` and ``failed`` plans (``apply`` resumes them).

        Everything happens in one ``BEGIN IMMEDIATE`` transaction, together with the
        ``state.pruned`` audit event (counts and the removed ids), so a plan's status
        cannot change between the choice and the delete, and nothing is removed
        without its record.  The event is written unless ``dry_run``, or nothing was
        removed and ``record_empty`` is false (the automatic prune after each plan).
        The audit log, digest cache and first-seen times are never touched.
        """
        if older_than < timedelta(0):
            raise ValueError("older_than must not be negative")
        moment = now or _now()
        cutoff = moment - older_than
        params = {"cutoff": to_db(cutoff), "now": to_db(moment), "open_status": PlanStatus.PENDING}
        result = PruneResult(older_than=older_than, cutoff=cutoff, dry_run=dry_run)
        select = (
            "SELECT id, status, length(CAST(content AS BLOB)) AS size FROM plans"
            f" WHERE {_PRUNABLE} ORDER BY created_at, id"
        )
        # Everything prunable is older than the cutoff: the rest of those is kept.
        kept = "SELECT COUNT(*) FROM plans WHERE created_at < :cutoff"
        if dry_run:
            with self._conn.mutex:
                _choose(self._conn.db.conn, select, kept, params, result, delete=False)
            return result
        with self._conn.write() as conn:
            _choose(conn, select, kept, params, result, delete=True)
            if result.plans or record_empty:
                conn.execute(
                    "INSERT INTO audit (at, event, registry, plan_id, actor, details)"
                    " VALUES (?, ?, NULL, NULL, ?, ?)",
                    (
                        to_db(_now()),
                        PRUNED_EVENT,
                        actor,
                        json.dumps({**result.to_json_dict(), "trigger": trigger}, sort_keys=True),
                    ),
                )
        return result

    def check_idle(self) -> None:
        """Raise ``LockHeld`` while a live apply or gc holds a registry's lock."""
        busy = [lock for lock in self._locks.current() if not lock.stale]
        if busy:
            lock = busy[0]
            raise LockHeld(
                f"not vacuuming the state DB while registry '{lock.name}' is busy"
                f" ({lock.purpose} by {lock.hostname}:{lock.pid}); run --vacuum"
                " when no apply or gc runs"
            )

    def vacuum(self, *, actor: str | None = None) -> tuple[int, int]:
        """Rebuild the DB file to return the pages freed by removed plans to the disk;
        ``(bytes before, bytes after)``.  Also empties the write-ahead log, which the
        rebuild fills.  Needs free disk space about twice the DB's size, and holds the
        write lock for its whole run: refused while a live apply or gc lock is held."""
        self.check_idle()
        with self._conn.mutex:
            before = self._conn.file_size()
            try:
                self._conn.db.conn.execute("VACUUM")
                if not self._conn.in_memory:
                    self._conn.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:
                raise RegpruneError(
                    f"VACUUM of the state DB {self._conn.path} failed: {exc}"
                ) from None
            after = self._conn.file_size()
        self._audit.record(
            VACUUMED_EVENT, actor=actor, details={"bytes_before": before, "bytes_after": after}
        )
        return before, after


def _now() -> datetime:
    # prune_plans takes a ``now`` argument, which hides the helper of that name.
    return now()


def _choose(
    conn: sqlite3.Connection,
    select: str,
    kept: str,
    params: dict[str, str],
    result: PruneResult,
    *,
    delete: bool,
) -> None:
    for plan_id, status, size in conn.execute(select, params).fetchall():
        result.plan_ids.append(plan_id)
        result.by_status[status] = result.by_status.get(status, 0) + 1
        result.bytes += size or 0
    result.kept = conn.execute(kept, {"cutoff": params["cutoff"]}).fetchone()[0] - len(
        result.plan_ids
    )
    for chunk in chunks(result.plan_ids):
        marks = ",".join("?" * len(chunk))
        if not delete:
            result.items += conn.execute(
                f"SELECT COUNT(*) FROM plan_items WHERE plan_id IN ({marks})", chunk
            ).fetchone()[0]
            result.approvals += conn.execute(
                f"SELECT COUNT(*) FROM approvals WHERE plan_id IN ({marks})", chunk
            ).fetchone()[0]
            continue
        # Children first: the foreign keys are enforced.
        result.items += conn.execute(
            f"DELETE FROM plan_items WHERE plan_id IN ({marks})", chunk
        ).rowcount
        result.approvals += conn.execute(
            f"DELETE FROM approvals WHERE plan_id IN ({marks})", chunk
        ).rowcount
        delete_messages(conn, chunk)
        conn.execute(f"DELETE FROM plans WHERE id IN ({marks})", chunk)
