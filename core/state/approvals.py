"""Decisions on plans: who approved or rejected which plan, how and when."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..errors import UsageError
from ..models import Approval
from ._codec import now, parse, to_db
from .connection import Connection


@dataclass(frozen=True)
class ApprovalRow:
    """One stored decision on a plan."""

    by: str
    method: str
    decision: str
    note: str
    team: str | None
    at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        """The decision as ``regprune show --json`` prints it."""
        return asdict(self)


class Approvals:
    """The approvals table (``state.approvals``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(
        self,
        plan_id: str,
        approval: Approval,
        *,
        at: datetime | None = None,
        team: str | None = None,
    ) -> bool:
        """Record a decision; False if this person already recorded this decision."""
        try:
            with self._conn.write() as conn:
                cursor = conn.execute(
                    'INSERT OR IGNORE INTO approvals (plan_id, "by", decision, method, note,'
                    " team, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        plan_id,
                        approval.by,
                        approval.decision,
                        approval.method,
                        approval.note,
                        team,
                        to_db(at or now()),
                    ),
                )
                return cursor.rowcount == 1
        except sqlite3.IntegrityError as exc:  # the foreign key: no such plan
            raise UsageError(f"no plan '{plan_id}'; list plans with `regprune history`") from exc

    def of(self, plan_id: str) -> list[ApprovalRow]:
        """Decisions on a plan, oldest first."""
        rows = self._conn.rows(
            'SELECT "by", method, decision, note, team, at FROM approvals'
            " WHERE plan_id = ? ORDER BY at, rowid",
            (plan_id,),
        )
        return [
            ApprovalRow(
                by=row["by"],
                method=row["method"],
                decision=row["decision"],
                note=row["note"] or "",
                team=row["team"],
                at=parse(row["at"]),
            )
            for row in rows
        ]
