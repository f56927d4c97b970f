"""Message references: which message of which front end shows which plan.

One generic table for every front end (``plan_messages``: front end, plan id,
channel, reference, created), so the schema holds no column per front end.  A front
end stores the message it posted a plan as (``add``), finds it again after a restart
(``get``), and finds the plan a click on a message belongs to (``find``).  Rows go
when their plan goes (retention) and are never rewritten: a reference, once stored,
is what the front end posted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import UsageError
from ._codec import now, parse, to_db
from .connection import Connection

TABLE = "plan_messages"


@dataclass(frozen=True)
class MessageRef:
    """One posted message of a plan."""

    front_end: str
    plan_id: str
    channel: str
    reference: str
    created: datetime


class PlanMessages:
    """The plan_messages table (``state.messages``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(
        self,
        front_end: str,
        plan_id: str,
        channel: str,
        reference: str,
        *,
        at: datetime | None = None,
    ) -> bool:
        """Remember that ``front_end`` shows ``plan_id`` as ``reference`` in ``channel``.

        False (nothing changed) when this front end already has a message of the plan
        in that channel: the first post wins, so two workers racing to post one plan
        keep one reference.  ``ValueError`` for an empty field, ``UsageError`` for a
        plan that is not stored.
        """
        for name, value in (
            ("front end", front_end),
            ("plan id", plan_id),
            ("channel", channel),
            ("reference", reference),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"a message reference needs a {name}, got {value!r}")
        try:
            with self._conn.write() as conn:
                cursor = conn.execute(
                    f"INSERT OR IGNORE INTO {TABLE}"
                    " (front_end, plan_id, channel, reference, created) VALUES (?, ?, ?, ?, ?)",
                    (front_end, plan_id, channel, reference, to_db(at or now())),
                )
                return cursor.rowcount == 1
        except sqlite3.IntegrityError as exc:  # the foreign key: no such plan
            raise UsageError(f"no plan '{plan_id}'; list plans with `regprune history`") from exc

    def get(self, front_end: str, plan_id: str) -> MessageRef | None:
        """The first message ``front_end`` posted for the plan; None: not posted."""
        found = self.of_plan(plan_id, front_end)
        return found[0] if found else None

    def of_plan(self, plan_id: str, front_end: str | None = None) -> list[MessageRef]:
        """Every message of a plan (of one front end, or of all), oldest first."""
        sql = f"SELECT * FROM {TABLE} WHERE plan_id = ?"
        params: list[str] = [plan_id]
        if front_end is not None:
            sql += " AND front_end = ?"
            params.append(front_end)
        return [_ref(row) for row in self._conn.rows(sql + " ORDER BY created, rowid", params)]

    def find(self, front_end: str, channel: str, reference: str) -> MessageRef | None:
        """The stored message a click came from, or None."""
        rows = self._conn.rows(
            f"SELECT * FROM {TABLE} WHERE front_end = ? AND channel = ? AND reference = ?",
            (front_end, channel, reference),
        )
        return _ref(rows[0]) if rows else None


def delete_for(conn: sqlite3.Connection, plan_ids: Sequence[str]) -> int:
    """Inside the caller's transaction: forget the messages of plans being removed."""
    marks = ",".join("?" * len(plan_ids))
    return conn.execute(f"DELETE FROM {TABLE} WHERE plan_id IN ({marks})", plan_ids).rowcount


def _ref(row: dict[str, Any]) -> MessageRef:
    return MessageRef(
        front_end=row["front_end"],
        plan_id=row["plan_id"],
        channel=row["channel"],
        reference=row["reference"],
        created=parse(row["created"]),
    )
