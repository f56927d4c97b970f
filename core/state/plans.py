"""Stored plans (immutable, hashed content plus a status and side fields) and their
delete items (one outcome row per item, so an interrupted apply resumes)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from ..errors import RegpruneError, UsageError
from ..models import (
    UNTAG_ROLE,
    ItemStatus,
    KeepItem,
    Plan,
    PlanItem,
    PlanStatus,
    PlanSummary,
    UntagItem,
)
from ._codec import canonical_pieces, content_hash, from_db, now, to_db
from .audit import AuditLog
from .connection import Connection
from .plan_list import PlanRow, list_plans

_PLAN_STATUSES = frozenset(PlanStatus)
_ITEM_STATUSES = frozenset(ItemStatus)
_PLAN_SIDE_FIELDS = ("requested_by", "expires_at")
_MIN_PREFIX = 4


class PlanRemoved(UsageError):
    """The plan asked for was stored once and removed by plan retention (exit code 2)."""

    def __init__(self, plan_id: str, removed_at: datetime | None) -> None:
        when = f" on {removed_at:%Y-%m-%d %H:%M} UTC" if removed_at else ""
        super().__init__(
            f"plan {plan_id} was removed from the state DB by plan retention{when}: plans"
            " that finished or were never approved are removed once older than"
            " [state] plan_retention (default 90d); its audit events remain, see"
            f" `regprune history --plan {plan_id}`"
        )
        self.plan_id = plan_id
        self.removed_at = removed_at


@dataclass(frozen=True)
class PlanFields:
    """A plan's side fields: stored with it, not part of its hashed content."""

    requested_by: str | None
    expires_at: datetime | None


def _no_plan(plan_id: str) -> UsageError:
    return UsageError(f"no plan '{plan_id}'; list plans with `regprune plans`")


class Plans:
    """The plans and plan_items tables (``state.plans``)."""

    def __init__(self, conn: Connection, audit: AuditLog) -> None:
        self._conn = conn
        self._audit = audit  # where retention recorded the plans it removed

    def save(self, plan: Plan) -> None:
        """Store a plan and one ``pending`` item row per delete item.

        Sets ``plan.content_hash`` when empty; a hash given must match the content.
        Raises ``RegpruneError`` if a plan with that id exists already.
        """
        if plan.created_at.tzinfo is None:
            # created_at is part of the hashed content: it must read the same everywhere.
            raise ValueError("plan.created_at must be timezone-aware")
        # Encoded item by item, hashed as it goes: never the whole content as dicts, and
        # one copy of its text (docs/performance.md#memory).
        hasher = hashlib.sha256()
        pieces = []
        for piece in canonical_pieces(*plan.content_parts()):
            hasher.update(piece.encode())
            pieces.append(piece)
        text = "".join(pieces)
        del pieces
        digest = hasher.hexdigest()
        if not plan.content_hash:
            plan.content_hash = digest
        elif plan.content_hash != digest:
            raise RegpruneError(
                f"plan {plan.id}: content_hash {plan.content_hash} does not match its content"
            )
        if plan.status not in _PLAN_STATUSES:
            raise ValueError(f"unknown plan status {plan.status!r}")
        stamp = to_db(now())
        try:
            with self._conn.write() as conn:
                conn.execute(
                    "INSERT INTO plans (id, registry, registry_url, policy, created_at, status,"
                    " content, content_hash, requested_by, expires_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        plan.id,
                        plan.registry,
                        plan.registry_url,
                        plan.policy,
                        to_db(plan.created_at),
                        plan.status,
                        text,
                        plan.content_hash,
                        plan.requested_by,
                        to_db(plan.expires_at) if plan.expires_at else None,
                        stamp,
                    ),
                )
                conn.executemany(
                    "INSERT INTO plan_items (plan_id, seq, repository, digest, role, status,"
                    " reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, '', ?)",
                    [
                        (
                            plan.id,
                            item.seq,
                            item.repository,
                            item.digest,
                            item.role,
                            ItemStatus.PENDING,
                            stamp,
                        )
                        for item in plan.delete
                    ]
                    + [
                        (
                            plan.id,
                            item.seq,
                            item.repository,
                            item.digest,
                            UNTAG_ROLE,
                            ItemStatus.PENDING,
                            stamp,
                        )
                        for item in plan.untag
                    ],
                )
        except sqlite3.IntegrityError as exc:
            if self._row(plan.id) is not None:
                raise RegpruneError(f"plan {plan.id} already exists") from exc
            raise RegpruneError(f"plan {plan.id} cannot be stored: {exc}") from exc

    def _row(self, plan_id: str) -> dict[str, Any] | None:
        rows = self._conn.rows("SELECT * FROM plans WHERE id = ?", (plan_id,))
        return rows[0] if rows else None

    def _resolve(self, plan_id: str) -> dict[str, Any]:
        """The plan row for an exact id or a unique prefix of at least 4 characters."""
        row = self._row(plan_id)
        if row is not None:
            return row
        if len(plan_id) < _MIN_PREFIX:
            raise UsageError(
                f"no plan '{plan_id}'; give at least {_MIN_PREFIX} characters of its id,"
                " list plans with `regprune plans`"
            )
        # substr, not LIKE: exact and case-sensitive, no wildcards to escape.
        rows = self._conn.rows(
            "SELECT * FROM plans WHERE substr(id, 1, ?) = ? ORDER BY created_at DESC LIMIT 6",
            (len(plan_id), plan_id),
        )
        if len(rows) > 1:
            _ambiguous(plan_id, [r["id"] for r in rows])
        if rows:
            return rows[0]
        removed = self._audit.removed_plans(plan_id)
        if len(removed) > 1:
            _ambiguous(plan_id, sorted(removed))
        if removed:
            raise PlanRemoved(*next(iter(removed.items())))
        raise _no_plan(plan_id)

    def id_of(self, plan_id: str) -> str:
        """The full id of a stored plan, or of one removed by retention (its audit events
        remain), given its id or a unique prefix; ``UsageError`` otherwise."""
        try:
            return str(self._resolve(plan_id)["id"])
        except PlanRemoved as removed:
            return removed.plan_id

    def get(self, plan_id: str) -> Plan:
        """The stored plan with that id or unique id prefix (>= 4 characters).

        Raises ``UsageError`` for an unknown or ambiguous id, and ``RegpruneError`` if
        the stored content no longer matches its hash (someone edited the DB).
        """
        row = self._resolve(plan_id)
        tampered = RegpruneError(
            f"plan {row['id']} was modified after it was stored (content hash mismatch);"
            " make a new plan"
        )
        try:
            content = json.loads(row["content"])
        except ValueError:
            raise tampered from None
        if content_hash(content) != row["content_hash"]:
            raise tampered
        plan = _plan_from_row(row)
        # The item rows repeat what apply acts on; they must agree with the content too.
        stored = {
            (r["seq"], r["repository"], r["digest"], r["role"])
            for r in self._conn.rows(
                "SELECT seq, repository, digest, role FROM plan_items WHERE plan_id = ?",
                (row["id"],),
            )
        }
        planned: set[tuple[int, str, str, str]] = {
            (i.seq, i.repository, i.digest, i.role) for i in plan.delete
        }
        planned |= {(i.seq, i.repository, i.digest, UNTAG_ROLE) for i in plan.untag}
        if stored != planned:
            raise tampered
        return plan

    def find(
        self,
        *,
        limit: int = 50,
        registry: str | None = None,
        policy: str | None = None,
        status: str | None = None,
    ) -> list[Plan]:
        """Stored plans, newest first.  For display: hashes are not checked here,
        ``get`` checks them before anything acts on a plan."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("registry", registry), ("policy", policy), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM plans"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [_plan_from_row(row) for row in self._conn.rows(sql, [*params, limit])]

    def listing(
        self,
        *,
        limit: int = 20,
        statuses: Sequence[str] = (),
        policy: str | None = None,
        registry: str | None = None,
    ) -> list[PlanRow]:
        """Stored plans as ``regprune plans`` lists them, newest first (see ``plan_list``)."""
        return list_plans(
            self._conn, limit=limit, statuses=statuses, policy=policy, registry=registry
        )

    def set_status(self, plan_id: str, status: str, *, expected: Iterable[str]) -> bool:
        """Move a plan to ``status`` only if its status is one of ``expected``.

        A single conditional UPDATE, so two processes racing (two approvers, an apply
        and an expiry) cannot both win.  Returns whether this call changed it.
        """
        if status not in _PLAN_STATUSES:
            raise ValueError(f"unknown plan status {status!r}")
        allowed = [*expected]
        if not allowed:
            return False
        with self._conn.write() as conn:
            return _move(conn, plan_id, status, allowed)

    def reopen(self, plan_id: str, *, expected: Iterable[str]) -> bool:
        """Move a plan back to ``pending`` and void its approvals, in one transaction, if
        its status is one of ``expected``: an apply the registry refused before deleting
        anything needs a fresh approval.  The audit log keeps who approved it."""
        allowed = [*expected]
        if not allowed:
            return False
        with self._conn.write() as conn:
            if not _move(conn, plan_id, PlanStatus.PENDING, allowed):
                return False
            conn.execute("DELETE FROM approvals WHERE plan_id = ?", (plan_id,))
            return True

    def set_fields(self, plan_id: str, **fields: str | datetime | None) -> None:
        """Set side fields that are not part of the hashed content: ``requested_by``,
        ``expires_at`` (datetime or None).  Front ends' message references are in
        ``state.messages``."""
        unknown = set(fields) - set(_PLAN_SIDE_FIELDS)
        if unknown:
            raise ValueError(
                f"cannot set {', '.join(sorted(unknown))} on a stored plan;"
                f" settable: {', '.join(_PLAN_SIDE_FIELDS)}"
            )
        if not fields:
            return
        values = {
            key: (to_db(value) if isinstance(value, datetime) else value)
            for key, value in fields.items()
        }
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self._conn.write() as conn:
            cursor = conn.execute(
                f"UPDATE plans SET {assignments}, updated_at = ? WHERE id = ?",
                [*values.values(), to_db(now()), plan_id],
            )
            if cursor.rowcount != 1:
                raise _no_plan(plan_id)

    def fields(self, plan_id: str) -> PlanFields:
        """The side fields of a plan (see ``set_fields``)."""
        rows = self._conn.rows(
            f"SELECT {', '.join(_PLAN_SIDE_FIELDS)} FROM plans WHERE id = ?", (plan_id,)
        )
        if not rows:
            raise _no_plan(plan_id)
        row = rows[0]
        return PlanFields(
            requested_by=row["requested_by"],
            expires_at=from_db(row["expires_at"]),
        )

    def item_statuses(self, plan_id: str) -> dict[int, tuple[str, str]]:
        """``{seq: (status, reason)}`` for every delete item of a plan."""
        rows = self._conn.rows(
            "SELECT seq, status, reason FROM plan_items WHERE plan_id = ? ORDER BY seq",
            (plan_id,),
        )
        return {row["seq"]: (row["status"], row["reason"] or "") for row in rows}

    def set_item_status(self, plan_id: str, seq: int, status: str, reason: str = "") -> None:
        """Record one item's outcome, committed at once so an interrupted apply resumes."""
        if status not in _ITEM_STATUSES:
            raise ValueError(f"unknown item status {status!r}")
        with self._conn.write() as conn:
            cursor = conn.execute(
                "UPDATE plan_items SET status = ?, reason = ?, updated_at = ?"
                " WHERE plan_id = ? AND seq = ?",
                (status, reason, to_db(now()), plan_id, seq),
            )
            if cursor.rowcount != 1:
                raise RegpruneError(f"plan {plan_id} has no item {seq}")


def _move(conn: sqlite3.Connection, plan_id: str, status: str, allowed: Sequence[str]) -> bool:
    """Inside an open write transaction: set the plan's status only if it is one of
    ``allowed`` (never empty), in one conditional UPDATE; whether it changed."""
    marks = ",".join("?" * len(allowed))
    cursor = conn.execute(
        f"UPDATE plans SET status = ?, updated_at = ? WHERE id = ? AND status IN ({marks})",
        [status, to_db(now()), plan_id, *allowed],
    )
    return cursor.rowcount == 1


def _ambiguous(plan_id: str, ids: Sequence[str]) -> NoReturn:
    shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    raise UsageError(f"plan id '{plan_id}' is ambiguous (matches {shown}); give more characters")


def _plan_from_row(row: dict[str, Any]) -> Plan:
    content = json.loads(row["content"])
    return Plan(
        id=row["id"],
        registry=content["registry"],
        registry_url=content["registry_url"],
        policy=content["policy"],
        created_at=datetime.fromisoformat(content["created_at"]),
        delete=[PlanItem.from_dict(item) for item in content["delete"]],
        keep=[KeepItem.from_dict(item) for item in content["keep"]],
        summary=PlanSummary(**content["summary"]),
        approval=content["approval"],
        gc=content["gc"],
        content_hash=row["content_hash"],
        status=row["status"],
        requested_by=row["requested_by"] or "",
        expires_at=from_db(row["expires_at"]),
        warnings=list(content.get("warnings", [])),
        keep_rules=content.get("keep_rules"),
        registry_version=content.get("registry_version"),
        # Untag items are numbered on after the delete items (their outcome rows).
        untag=[
            UntagItem.from_dict(len(content["delete"]) + index, item)
            for index, item in enumerate(content.get("untag", []))
        ],
        untag_method=content.get("untag_method"),
    )
