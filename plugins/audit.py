"""The audit log: every plan, decision, deletion, skip, failure and GC run, in the state DB."""

from __future__ import annotations

from regprune import hookimpl
from regprune.models import ApplyResult, Approval, GcResult, Plan, PlanItem
from regprune.state import State


@hookimpl
def plan_created(plan: Plan, state: State) -> None:
    """Record a new plan with its summary."""
    state.audit(
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
def plan_decided(plan: Plan, approval: Approval, state: State) -> None:
    """Record who approved or rejected a plan, and how."""
    state.audit(
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
def item_deleted(plan: Plan, item: PlanItem, state: State) -> None:
    """Record one deleted manifest."""
    state.audit(
        "item.deleted", registry=plan.registry, plan_id=plan.id, details=_item_details(item)
    )


@hookimpl
def item_skipped(plan: Plan, item: PlanItem, reason: str, state: State) -> None:
    """Record a manifest apply left alone because the registry changed."""
    state.audit(
        "item.skipped",
        registry=plan.registry,
        plan_id=plan.id,
        details={**_item_details(item), "reason": reason},
    )


@hookimpl
def item_failed(plan: Plan, item: PlanItem, error: str, state: State) -> None:
    """Record a failed deletion."""
    state.audit(
        "item.failed",
        registry=plan.registry,
        plan_id=plan.id,
        details={**_item_details(item), "error": error},
    )


@hookimpl
def apply_finished(plan: Plan, result: ApplyResult, state: State) -> None:
    """Record the end of an apply run with its counts."""
    state.audit(
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
def gc_finished(name: str, result: GcResult, state: State) -> None:
    """Record a garbage-collection run."""
    state.audit(
        "gc.dry_run" if result.dry_run else "gc.finished",
        registry=name,
        details={
            "exit_code": result.exit_code,
            "bytes_freed": result.bytes_freed,
            "warnings": result.warnings,
        },
    )
