"""The list of stored plans (``regprune plans``): one row per plan, newest first.

Read with two queries whatever the number of plans and items: the plans' columns
with their summary taken from the stored content by SQLite's ``json_extract`` (no
plan is decoded), and their item outcomes counted per plan and status.  For
display only: hashes are not checked here (``Plans.get`` checks them before
anything acts on a plan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..lifecycle import ItemStatus
from ..models import UNTAG_ROLE
from ._codec import from_db
from .connection import Connection

__all__ = ["PlanRow", "list_plans"]

_SUMMARY = ("images", "manifests", "tags", "bytes", "kept_images", "untags", "bytes_exact")


@dataclass(frozen=True)
class PlanRow:
    """A stored plan as ``regprune plans`` lists it."""

    id: str
    policy: str
    registry: str
    registry_url: str
    status: str
    created_at: datetime
    expires_at: datetime | None
    requested_by: str | None
    images: int
    """Images the plan deletes (``summary.images``)."""
    manifests: int
    tags: int
    kept_images: int
    untags: int
    bytes: int
    bytes_exact: bool
    items: dict[str, int] = field(default_factory=dict)
    """Delete items (one per manifest) by outcome: pending, deleting, deleted, skipped, failed."""
    untag_items: dict[str, int] = field(default_factory=dict)
    """Tag removals by outcome, the same statuses."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.id,
            "policy": self.policy,
            "registry": self.registry,
            "registry_url": self.registry_url,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "requested_by": self.requested_by,
            "summary": {
                "images": self.images,
                "manifests": self.manifests,
                "tags": self.tags,
                "kept_images": self.kept_images,
                "untags": self.untags,
                "bytes": self.bytes,
                "bytes_exact": self.bytes_exact,
            },
            "items": dict(self.items),
            "untag_items": dict(self.untag_items),
        }


def list_plans(
    conn: Connection,
    *,
    limit: int,
    statuses: Sequence[str] = (),
    policy: str | None = None,
    registry: str | None = None,
) -> list[PlanRow]:
    """Stored plans, newest first, filtered by status (any of), policy and registry."""
    where: list[str] = []
    params: list[Any] = []
    if statuses:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    for column, value in (("policy", policy), ("registry", registry)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    extracted = ", ".join(
        f"json_extract(content, '$.summary.{key}') AS s_{key}" for key in _SUMMARY
    )
    sql = (
        "SELECT id, policy, registry, registry_url, status, created_at, expires_at,"
        f" requested_by, {extracted} FROM plans"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    )
    rows = conn.rows(sql, [*params, limit])
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    counts: dict[str, dict[str, dict[str, int]]] = {
        plan_id: {"items": {}, "untag": {}} for plan_id in ids
    }
    for row in conn.rows(
        "SELECT plan_id, role = ? AS untag, status, COUNT(*) AS n FROM plan_items"
        f" WHERE plan_id IN ({', '.join('?' for _ in ids)}) GROUP BY plan_id, untag, status",
        [UNTAG_ROLE, *ids],
    ):
        kind = "untag" if row["untag"] else "items"
        counts[row["plan_id"]][kind][row["status"]] = int(row["n"])
    return [_row(row, counts[row["id"]]) for row in rows]


def _outcomes(found: dict[str, int]) -> dict[str, int]:
    """Every item status, in lifecycle order, with 0 where none is."""
    return {status: found.get(status, 0) for status in ItemStatus}


def _row(row: dict[str, Any], counts: dict[str, dict[str, int]]) -> PlanRow:
    created = from_db(row["created_at"])
    assert created is not None  # NOT NULL in the schema
    return PlanRow(
        id=row["id"],
        policy=row["policy"],
        registry=row["registry"],
        registry_url=row["registry_url"] or "",
        status=row["status"],
        created_at=created,
        expires_at=from_db(row["expires_at"]),
        requested_by=row["requested_by"],
        images=int(row["s_images"] or 0),
        manifests=int(row["s_manifests"] or 0),
        tags=int(row["s_tags"] or 0),
        kept_images=int(row["s_kept_images"] or 0),
        untags=int(row["s_untags"] or 0),
        bytes=int(row["s_bytes"] or 0),
        bytes_exact=bool(row["s_bytes_exact"]),
        items=_outcomes(counts["items"]),
        untag_items=_outcomes(counts["untag"]),
    )
