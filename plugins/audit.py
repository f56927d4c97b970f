"""The audit log: every plan, decision, deletion, skip, failure and GC run, in the state DB.

Each hook takes only `audit` (the audit log), never the whole state DB.
"""

from __future__ import annotations

from regprune import hookimpl
from regprune.models import ApplyResult, Approval, GcResult, Plan, PlanItem
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


@hookimpl
def plan_decided(plan: Plan, approval: Approval, audit: AuditLog) -> None:
    """Record who approved or rejected a plan, and how."""
    audit.record(
        f"plan.{approval.decision}",
        registry=plan.registry,
        plan_id=plan.id,
        actor=approval.by,
        details={"method": approval.method, "note": approval.note},
    )


def _item_details(item: PlanItem) -> dict:
    return {
        "repository": item.repository,
        "digest": item.digest,
        "tags": list(item.tags),
        "role": item.role,
    }


@hookimpl
def item_deleted(plan: Plan, item: PlanItem, audit: AuditLog) -> None:
    """Record one deleted manifest."""
    audit.record(
        "item.deleted", registry=plan.registry, plan_id=plan.id, details=_item_details(item)
    )


@hookimpl
def item_skipped(plan: Plan, item: PlanItem, reason: str, audit: AuditLog) -> None:
    """Record a manifest apply left alone because the registry changed."""
    audit.record(
        "item.skipped",
        registry=plan.registry,
        plan_id=plan.id,
        details={**_item_details(item), "reason": reason},
    )


@hookimpl
def item_failed(plan: Plan, item: PlanItem, error: str, audit: AuditLog) -> None:
    """Record a failed deletion."""
    audit.record(
        "item.failed",
        registry=plan.registry,
        plan_id=plan.id,
        details={**_item_details(item), "error": error},
    )


@hookimpl
def apply_finished(plan: Plan, result: ApplyResult, audit: AuditLog) -> None:
    """Record the end of an apply run with its counts."""
    audit.record(
        "apply.finished",
        registry=plan.registry,
        plan_id=plan.id,
        details={
            "status": result.status,
            "deleted": len(result.of("deleted")),
            "skipped": len(result.of("skipped")),
            "failed": len(result.of("failed")),
            "pending": len(result.of("pending")) + len(result.of("deleting")),
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
