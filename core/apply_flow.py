"""The apply of an approved plan through the engine: under the registry's lock,
preflight, the move to ``applying``, the deletions, and the final status.

Split out of ``engine.py`` (one concern per module); ``Engine.apply`` and
``Engine.resume`` call `apply_approved`.  Every status change goes through
``Engine.transition``, so each fires ``plan_status_changed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import lifecycle
from .apply import Applier, Progress
from .config import RegistrySettings
from .errors import ApplyStopped, Interrupted, RegpruneError, UsageError
from .hookcalls import notify_event
from .lifecycle import ItemStatus, PlanStatus
from .models import ApplyResult, ItemOutcome, Plan, UntagOutcome

if TYPE_CHECKING:
    from .engine import Engine


def apply_approved(
    engine: Engine,
    plan: Plan,
    progress: Progress | None,
    resume: tuple[PlanStatus, ...],
    *,
    actor: str,
) -> ApplyResult:
    """Delete what an approved (or interrupted) plan lists, item by item, resumably."""
    state = engine.state
    client = engine.client_for_plan(plan)
    keep_rules = engine.keep_rules_for(plan)
    name = engine.lock_name(plan.registry, plan.registry_url)
    with state.locks.hold(name, purpose=f"apply of plan {plan.id}"):
        applier = Applier(
            plan,
            state=state,
            manager=engine.manager,
            client=client,
            registry_settings=engine.settings.registry.get(plan.registry)
            or RegistrySettings(url=plan.registry_url),
            lock_name=name,
            progress=progress,
            keep_rules_for=keep_rules,
            now=engine.now,
        )
        try:
            applier.preflight(applier.pending_repositories())
            applier.prepare()
        except RegpruneError as exc:
            refused(engine, plan, exc, actor=actor)
            raise
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted before anything was deleted; plan {plan.id} is unchanged and "
                f"`regprune apply {plan.id}` starts it again"
            ) from None
        # Another process may have finished or cancelled it since we read it.
        if engine.transition(plan, PlanStatus.APPLYING, actor=actor, allowed_from=resume) is None:
            now = state.plans.get(plan.id).status
            raise UsageError(f"plan {plan.id} became {now} meanwhile; nothing was deleted")
        try:
            applier.run()
        except KeyboardInterrupt:
            stopped(engine, plan, actor=actor)
            raise Interrupted(stopped_line(engine, plan, "interrupted")) from None
        except RegpruneError as exc:
            stopped(engine, plan, actor=actor)
            raise stopped_error(engine, plan, exc) from None
        except BaseException:
            stopped(engine, plan, actor=actor)
            raise
        statuses = state.plans.item_statuses(plan.id)
        unfinished = any(s not in lifecycle.ITEM_FINISHED for s, _ in statuses.values())
        final = PlanStatus.FAILED if unfinished else PlanStatus.DONE
        engine.transition(plan, final, actor=actor, allowed_from=(PlanStatus.APPLYING,))
    plan = state.plans.get(plan.id)
    result = result_from_state(engine, plan)
    notify_event(engine.manager, "apply_finished", state, plan=plan, result=result)
    return result


def stopped(engine: Engine, plan: Plan, *, actor: str) -> None:
    """An apply that stopped part-way: failed (resumable), and apply_finished fires."""
    engine.transition(plan, PlanStatus.FAILED, actor=actor, allowed_from=(PlanStatus.APPLYING,))
    result = result_from_state(engine, engine.state.plans.get(plan.id))
    notify_event(engine.manager, "apply_finished", engine.state, plan=plan, result=result)


def _deleted(engine: Engine, plan: Plan) -> int:
    statuses = engine.state.plans.item_statuses(plan.id)
    return sum(1 for status, _ in statuses.values() if status == ItemStatus.DELETED)


def stopped_line(engine: Engine, plan: Plan, why: str) -> str:
    return (
        f"{why}: stopped after {_deleted(engine, plan)} of {len(plan.delete) + len(plan.untag)} "
        f"deletions{' and tag removals' if plan.untag else ''} of "
        f"plan {plan.id}; `regprune apply {plan.id}` finishes the rest"
    )


def stopped_error(engine: Engine, plan: Plan, exc: RegpruneError) -> RegpruneError:
    """Exit 2 only when nothing was deleted; after a partial apply, exit 1 with how far
    it got and how to finish."""
    if not _deleted(engine, plan):
        return exc
    return ApplyStopped(stopped_line(engine, plan, exc.message), cause=exc)


def refused(engine: Engine, plan: Plan, exc: RegpruneError, *, actor: str) -> None:
    """Apply stopped before deleting anything (the registry refuses deletes, a keep
    rule failed, the registry cannot be scanned): when nothing of the plan was ever
    deleted, leave it re-approvable (pending again, its approvals void), so retention
    and `cancel` can deal with it; then record ``apply.refused``."""
    reopened = not _deleted(engine, plan) and (
        engine.transition(
            plan,
            PlanStatus.PENDING,
            actor=actor,
            allowed_from=lifecycle.REOPENABLE,
            reason=exc.message,
        )
        is not None
    )
    engine.state.audit_log.record(
        "apply.refused",
        registry=plan.registry,
        plan_id=plan.id,
        details={
            "error": exc.message,
            "status": PlanStatus.PENDING if reopened else engine.state.plans.get(plan.id).status,
        },
    )


def result_from_state(engine: Engine, plan: Plan) -> ApplyResult:
    statuses = engine.state.plans.item_statuses(plan.id)
    outcomes = [
        ItemOutcome(item, ItemStatus(statuses[item.seq][0]), statuses[item.seq][1])
        for item in plan.delete
    ]
    untags = [
        UntagOutcome(item, ItemStatus(statuses[item.seq][0]), statuses[item.seq][1])
        for item in plan.untag
    ]
    return ApplyResult(
        plan_id=plan.id,
        status=lifecycle.plan_status(plan.status),
        outcomes=outcomes,
        untag_outcomes=untags,
    )
