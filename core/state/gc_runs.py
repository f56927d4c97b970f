"""The outcomes of garbage-collection runs, one row per run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..models import GcEligible, GcResult
from ._codec import parse, to_db
from .connection import Connection


@dataclass(frozen=True)
class GcRun:
    """One stored GC run: the fields of ``GcResult.to_json_dict`` plus ``id``."""

    id: int
    registry: str
    dry_run: bool
    command: list[str]
    exit_code: int | None
    ok: bool
    output: str | None
    started_at: datetime
    finished_at: datetime
    bytes_before: int | None
    bytes_after: int | None
    bytes_freed: int | None
    warnings: list[str]
    eligible: GcEligible | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The run as a JSON object (datetimes left for the encoder)."""
        data = asdict(self)
        data["eligible"] = self.eligible.to_json_dict() if self.eligible is not None else None
        return data


class GcRuns:
    """The gc_runs table (``state.gc_runs``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def record(self, registry: str, result: GcResult) -> None:
        """Store the outcome of one garbage-collection run."""
        with self._conn.write() as conn:
            conn.execute(
                "INSERT INTO gc_runs (registry, dry_run, command, exit_code, ok, output,"
                " started_at, finished_at, bytes_before, bytes_after, bytes_freed, warnings,"
                " eligible) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    registry,
                    int(result.dry_run),
                    json.dumps(result.command),
                    result.exit_code,
                    int(result.ok),
                    result.output,
                    to_db(result.started_at),
                    to_db(result.finished_at),
                    result.bytes_before,
                    result.bytes_after,
                    result.bytes_freed,
                    json.dumps(result.warnings),
                    json.dumps(result.eligible.to_json_dict()) if result.eligible else None,
                ),
            )

    def recent(self, *, limit: int = 20, registry: str | None = None) -> list[GcRun]:
        """Garbage-collection runs, newest first."""
        sql = "SELECT * FROM gc_runs"
        params: list[Any] = []
        if registry is not None:
            sql += " WHERE registry = ?"
            params.append(registry)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        return [
            GcRun(
                id=row["id"],
                registry=row["registry"],
                dry_run=bool(row["dry_run"]),
                command=json.loads(row["command"] or "[]"),
                exit_code=row["exit_code"],
                ok=bool(row["ok"]),
                output=row["output"],
                started_at=parse(row["started_at"]),
                finished_at=parse(row["finished_at"]),
                bytes_before=row["bytes_before"],
                bytes_after=row["bytes_after"],
                bytes_freed=row["bytes_freed"],
                warnings=json.loads(row["warnings"] or "[]"),
                eligible=_eligible(row.get("eligible")),
            )
            for row in self._conn.rows(sql, [*params, limit])
        ]


def _eligible(text: str | None) -> GcEligible | None:
    if not text:
        return None
    data = json.loads(text)
    return GcEligible(
        blobs=int(data["blobs"]),
        manifests=int(data["manifests"]),
        blobs_marked=data.get("blobs_marked"),
        bytes=data.get("bytes"),
    )
