"""The audit log: every plan, decision, deletion, skip, failure and GC run, in the state DB.

Each hook takes only `audit` (the audit log), never the whole state DB.
"""

from __future__ import annotations

from regprune import hookimpl
from regprune.lifecycle import ITEM_REPORTED, ITEM_UNFINISHED, ItemStatus, PlanStatus
from regprune.models import ApplyResult, GcResult, Plan, PlanItem
from regprune.state import AuditLog


@hookimpl
def plan_created(plan: Plan, audit: AuditLog) -> None:
    """Record a new plan with its summary."""
    audit.record(
        "plan.created",
        registry=plan.registry,
        plan_id=plan.id,
        actor=plan.requested_by,
        details={
            "policy": plan.policy,
            **plan.summary.to_dict(),
            "content_hash": plan.content_hash,
        },
    )


# The status changes with an event of their own.  The moves of an apply (to applying,
# done, failed, and back to pending when the registry refused it) are told by
# apply.finished and apply.refused, which carry the counts and the error.
_STATUS_EVENTS = {
    PlanStatus.APPROVED: "plan.approved",
    PlanStatus.REJECTED: "plan.rejected",
    PlanStatus.EXPIRED: "plan.expired",
    PlanStatus.CANCELLED: "plan.cancelled",
}


@hookimpl
def plan_status_changed(
    plan: Plan,
    old: PlanStatus,
    new: PlanStatus,
    actor: str,
    reason: str,
    method: str,
    audit: AuditLog,
) -> None:
    """Record a decision (who approved, rejected, cancelled; an expiry), and how."""
    event = _STATUS_EVENTS.get(new)
    if event is None:
        return
    details: dict[str, object]
    if new in (PlanStatus.APPROVED, PlanStatus.REJECTED):
        details = {"method": method, "note": reason}
    elif new == PlanStatus.CANCELLED:
        details = {"method": method, "was": old}
    else:
        details = {"method": method} if method else {}
    if reason and "note" not in details:
        details["reason"] = reason
    audit.record(event, registry=plan.registry, plan_id=plan.id, actor=actor, details=details)


def _record_item(audit: AuditLog, event: str, plan: Plan, item: PlanItem, **extra: str) -> None:
    """Record ``event`` about one plan item: which manifest, and ``extra`` (a reason, an error)."""
    details = {
        "repository": item.repository,
        "digest": item.digest,
        "tags": list(item.tags),
        "role": item.role,
        **extra,
    }
    audit.record(event, registry=plan.registry, plan_id=plan.id, details=details)


@hookimpl
def item_deleted(plan: Plan, item: PlanItem, audit: AuditLog) -> None:
    """Record one deleted manifest."""
    _record_item(audit, "item.deleted", plan, item)


@hookimpl
def item_skipped(plan: Plan, item: PlanItem, reason: str, audit: AuditLog) -> None:
    """Record a manifest apply left alone because the registry changed."""
    _record_item(audit, "item.skipped", plan, item, reason=reason)


@hookimpl
def item_failed(plan: Plan, item: PlanItem, error: str, audit: AuditLog) -> None:
    """Record a failed deletion."""
    _record_item(audit, "item.failed", plan, item, error=error)


@hookimpl
def apply_finished(plan: Plan, result: ApplyResult, audit: AuditLog) -> None:
    """Record the end of an apply run with its counts."""
    audit.record(
        "apply.finished",
        registry=plan.registry,
        plan_id=plan.id,
        details={
            "status": result.status,
            # Counts by item status; "pending" is every item not finished yet.
            **{status: len(result.of(status)) for status in ITEM_REPORTED},
            ItemStatus.PENDING: sum(len(result.of(s)) for s in ITEM_UNFINISHED),
        },
    )


@hookimpl
def gc_finished(name: str, result: GcResult, audit: AuditLog) -> None:
    """Record a garbage-collection run."""
    audit.record(
        "gc.dry_run" if result.dry_run else "gc.finished",
        registry=name,
        details={
            "exit_code": result.exit_code,
            "bytes_freed": result.bytes_freed,
            "warnings": result.warnings,
        },
    )
