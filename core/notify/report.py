"""The run report: what one ``plan``, ``apply``, ``run`` or ``gc`` did, as data.

Notifiers receive a `RunReport`; its ``to_dict()`` is the documented JSON schema
(docs/operations.md#report-schema), versioned by ``SCHEMA_VERSION``: a key is only
ever added within a version, never renamed or removed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..lifecycle import ItemStatus

SCHEMA = "regprune.report"
SCHEMA_VERSION = 1
Outcome = str
"""``FAILURE``, ``SUCCESS`` or ``DELETED`` (a success that deleted something)."""
FAILURE, SUCCESS = "failure", "success"
DELETED = str(ItemStatus.DELETED)  # the outcome is named after the item status
OUTCOMES: tuple[Outcome, ...] = (FAILURE, SUCCESS, DELETED)
COMMANDS = ("plan", "apply", "run", "gc")
# Item statuses as JSON keys and metric labels.
_DELETED, _SKIPPED, _FAILED = (
    str(ItemStatus.DELETED),
    str(ItemStatus.SKIPPED),
    str(ItemStatus.FAILED),
)
ITEM_STATUSES = (_DELETED, _SKIPPED, _FAILED)


@dataclass(frozen=True)
class PlanReport:
    """One plan of the run: what it planned and, once applied, what happened."""

    policy: str
    registry: str
    plan_id: str
    status: str
    planned_images: int = 0
    planned_tags: int = 0
    planned_bytes: int = 0
    applied: bool = False
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    untagged: int = 0
    deleted_bytes: int = 0
    # Per item status ("deleted", "skipped", "failed"): (images, tags, bytes); the
    # metrics break counts down this way, the JSON report keeps the totals above.
    by_status: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    first_failure: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "registry": self.registry,
            "plan_id": self.plan_id,
            "status": self.status,
            "counts": {
                "planned": self.planned_images,
                "planned_tags": self.planned_tags,
                _DELETED: self.deleted,
                _SKIPPED: self.skipped,
                _FAILED: self.failed,
                "untagged": self.untagged,
            },
            "bytes": {"planned": self.planned_bytes, _DELETED: self.deleted_bytes},
        }


@dataclass(frozen=True)
class GcReport:
    """One garbage-collection run (or dry run) of the run."""

    registry: str
    ok: bool
    dry_run: bool
    exit_code: int
    bytes_freed: int | None
    duration_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "bytes_freed": self.bytes_freed,
            "duration_seconds": round(self.duration_seconds, 3),
        }


@dataclass(frozen=True)
class RunReport:
    """What one command did and how it ended."""

    event: str
    exit_code: int
    error: str | None
    started_at: datetime
    finished_at: datetime
    host: str
    version: str
    plans: tuple[PlanReport, ...] = ()
    gc: tuple[GcReport, ...] = ()
    # (registry, HTTP method) -> requests the run's clients sent.
    http_requests: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def deleted(self) -> int:
        return sum(plan.deleted for plan in self.plans)

    @property
    def outcome(self) -> Outcome:
        """``failure`` when the exit code is not 0, else ``deleted`` when something was
        deleted, else ``success``."""
        if self.exit_code != 0:
            return FAILURE
        return DELETED if self.deleted else SUCCESS

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def policies(self) -> list[str]:
        return list(dict.fromkeys(plan.policy for plan in self.plans))

    @property
    def registries(self) -> list[str]:
        found = [plan.registry for plan in self.plans] + [gc.registry for gc in self.gc]
        return list(dict.fromkeys(found))

    def matches(self, on: list[str]) -> bool:
        """Whether a notifier subscribed to ``on`` hears of this report: ``failure`` and
        ``success`` by outcome (a run that deleted is a success), ``deleted`` whenever
        anything was deleted, failed run or not."""
        outcome = self.outcome
        return (
            (FAILURE in on and outcome == FAILURE)
            or (SUCCESS in on and outcome in (SUCCESS, DELETED))
            or (DELETED in on and self.deleted > 0)
        )

    def for_policies(self, patterns: list[str]) -> RunReport | None:
        """This report with only the plans of policies matching ``patterns`` (globs);
        None when it has plans and none matches.  A report without plans (a failure
        before any policy was planned, a gc) is kept whole: it concerns every policy."""
        if not patterns or not self.plans:
            return self
        kept = tuple(
            plan
            for plan in self.plans
            if any(fnmatch.fnmatchcase(plan.policy, pattern) for pattern in patterns)
        )
        return replace(self, plans=kept) if kept else None

    def summary(self) -> str:
        """One line for people: ``regprune run failed (policy ci on main): ...``."""
        word = "succeeded" if self.exit_code == 0 else _FAILED  # the same English word
        scope = ", ".join(f"{plan.policy} on {plan.registry}" for plan in self.plans)
        if not scope and self.gc:
            scope = ", ".join(f"gc of {gc.registry}" for gc in self.gc)
        line = f"regprune {self.event} {word}" + (f" ({scope})" if scope else "")
        if self.plans:
            line += (
                f": {self.deleted} deleted, {sum(p.skipped for p in self.plans)} skipped, "
                f"{sum(p.failed for p in self.plans)} failed"
            )
        if self.error:
            line += f"; {self.error}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (schema ``regprune.report``, version 1)."""
        only = self.plans[0] if len(self.plans) == 1 else None
        registries = self.registries
        freed = [gc.bytes_freed for gc in self.gc if gc.bytes_freed is not None]
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "event": self.event,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "error": self.error,
            "summary": self.summary(),
            "policy": only.policy if only else None,
            "registry": registries[0] if len(registries) == 1 else None,
            "plan_id": only.plan_id if only else None,
            "counts": {
                "planned": sum(p.planned_images for p in self.plans),
                "planned_tags": sum(p.planned_tags for p in self.plans),
                _DELETED: self.deleted,
                _SKIPPED: sum(p.skipped for p in self.plans),
                _FAILED: sum(p.failed for p in self.plans),
                "untagged": sum(p.untagged for p in self.plans),
            },
            "bytes": {
                "planned": sum(p.planned_bytes for p in self.plans),
                _DELETED: sum(p.deleted_bytes for p in self.plans),
                "gc_freed": sum(freed) if freed else None,
            },
            "duration_seconds": round(self.duration_seconds, 3),
            "started_at": self.started_at.isoformat(),
            "timestamp": self.finished_at.isoformat(),
            "host": self.host,
            "regprune_version": self.version,
            "plans": [plan.to_dict() for plan in self.plans],
            "gc": [gc.to_dict() for gc in self.gc],
        }
