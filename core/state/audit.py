"""The audit log: an append-only record of events (plans, decisions, deletions, GC runs).

Events outlive the plans they name; nothing here ever removes one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ._codec import now, parse, to_db
from .connection import Connection

PRUNED_EVENT = "state.pruned"
"""The event plan retention writes, with the ids of the plans it removed."""
VACUUMED_EVENT = "state.vacuumed"


@dataclass(frozen=True)
class AuditEvent:
    """One audit event as stored; ``details`` is the event's JSON object."""

    id: int
    at: datetime
    event: str
    registry: str | None
    plan_id: str | None
    actor: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """The event as ``regprune history --json`` prints it."""
        return asdict(self)


class AuditLog:
    """The audit table (``state.audit_log``), the object event hooks receive as ``audit``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def record(
        self,
        event: str,
        *,
        registry: str | None = None,
        plan_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Append an event to the audit log (committed at once)."""
        with self._conn.write() as conn:
            conn.execute(
                "INSERT INTO audit (at, event, registry, plan_id, actor, details)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    to_db(at or now()),
                    event,
                    registry,
                    plan_id,
                    actor,
                    # default=str: details may carry datetimes or paths; never fail to audit.
                    json.dumps(details or {}, sort_keys=True, default=str),
                ),
            )

    def events(
        self, *, limit: int = 100, registry: str | None = None, plan_id: str | None = None
    ) -> list[AuditEvent]:
        """Audit events, newest first."""
        where: list[str] = []
        params: list[Any] = []
        if registry is not None:
            where.append("registry = ?")
            params.append(registry)
        if plan_id is not None:
            where.append("plan_id = ?")
            params.append(plan_id)
        sql = "SELECT id, at, event, registry, plan_id, actor, details FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        return [
            AuditEvent(
                id=row["id"],
                at=parse(row["at"]),
                event=row["event"],
                registry=row["registry"],
                plan_id=row["plan_id"],
                actor=row["actor"],
                details=json.loads(row["details"]) if row["details"] else {},
            )
            for row in self._conn.rows(sql, [*params, limit])
        ]

    def removed_plans(self, plan_id: str) -> dict[str, datetime | None]:
        """``{id: removed_at}`` of plans removed by retention whose id is ``plan_id`` or
        starts with it, from the ``state.pruned`` events (only asked when no stored
        plan matches, so the scan of those events costs nothing in normal use)."""
        found: dict[str, datetime | None] = {}
        for row in self._conn.rows(
            "SELECT at, details FROM audit WHERE event = ? AND instr(details, ?) > 0"
            " ORDER BY at, id",
            (PRUNED_EVENT, json.dumps(plan_id)[:-1]),  # '"<prefix>' inside the JSON list
        ):
            try:
                ids = json.loads(row["details"]).get("plan_ids") or []
            except (ValueError, AttributeError):
                continue
            for removed_id in ids:
                if isinstance(removed_id, str) and removed_id.startswith(plan_id):
                    found.setdefault(removed_id, parse(row["at"]) if row["at"] else None)
        return found
