"""The state DB as a package: a facade with one part per concern, typed rows, and
event hooks that receive the audit log rather than the whole state DB."""

from __future__ import annotations

import dataclasses
import inspect
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import regprune.state
from regprune import hookspecs
from regprune.hookcalls import notify
from regprune.models import Approval, GcResult, Plan
from regprune.plugin_manager import get_plugin_manager
from regprune.plugins import audit as audit_plugin
from regprune.state import (
    ApprovalRow,
    AuditEvent,
    AuditLog,
    GcRun,
    LockInfo,
    PlanFields,
    State,
)

from .test_state import make_plan  # the plan factory of the state tests

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EVENT_HOOKS = (
    "plan_created",
    "plan_decided",
    "item_deleted",
    "item_skipped",
    "item_failed",
    "apply_finished",
    "gc_finished",
)
# The built-in audit plugin's hooks: decisions come to it through plan_status_changed
# (plan_decided is still fired, for other plugins).
AUDIT_HOOKS = (*(hook for hook in EVENT_HOOKS if hook != "plan_decided"), "plan_status_changed")


class NoState:
    """Stands in for the state DB where a hook must not touch it: any use raises."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the audit plugin used state.{name}; it must use `audit`")


def test_every_name_the_old_module_exported_is_still_importable() -> None:
    old = {
        "BUSY_TIMEOUT",
        "FINAL_PLAN_STATUSES",
        "NOTICE_AFTER",
        "PRIVATE_DIR",
        "PRIVATE_FILE",
        "PRUNED_EVENT",
        "UNFINISHED_PLAN_STATUSES",
        "VACUUMED_EVENT",
        "PlanRemoved",
        "PruneResult",
        "State",
        "StateBusy",
        "content_hash",
        "create_private",
        "migrations",
    }
    assert old <= set(dir(regprune.state))
    assert set(regprune.state.__all__) <= set(dir(regprune.state))


def test_every_state_module_is_well_under_500_lines() -> None:
    package = Path(regprune.state.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert len(sizes) >= 9  # facade, schema, connection and one module per concern
    assert max(sizes.values()) < 400, sizes


def test_the_facade_exposes_one_part_per_concern() -> None:
    with State(":memory:") as state:
        parts = {
            name: type(getattr(state, name)).__name__
            for name in ("digests", "plans", "approvals", "audit_log", "gc_runs", "locks")
        }
        assert parts == {
            "digests": "DigestCache",
            "plans": "Plans",
            "approvals": "Approvals",
            "audit_log": "AuditLog",
            "gc_runs": "GcRuns",
            "locks": "Locks",
        }
        assert type(state.retention).__name__ == "Retention"


def test_rows_are_frozen_dataclasses_with_the_old_json_field_names(tmp_path: Path) -> None:
    """Callers read attributes; ``--json`` keeps the field names (and order) the dict
    rows had, so scripts reading ``history``, ``show`` or ``unlock`` output still work."""
    with State(tmp_path / "state.db") as state:
        state.audit_log.record("noted", registry="local", details={"k": 1}, at=T0)
        with state.locks.hold("local", purpose="apply"):
            [lock] = state.locks.current()
        [event] = state.audit_log.events()
        state.gc_runs.record("local", GcResult("local", False, ["gc"], 0, "", T0, T0))
        [run] = state.gc_runs.recent()
    assert isinstance(event, AuditEvent) and isinstance(lock, LockInfo)
    assert isinstance(run, GcRun)
    assert list(event.to_json_dict()) == [
        "id", "at", "event", "registry", "plan_id", "actor", "details",
    ]  # fmt: skip
    assert list(lock.to_json_dict()) == [
        "name", "hostname", "pid", "purpose", "acquired_at", "heartbeat_at", "child_pid",
        "stale",
    ]  # fmt: skip
    assert list(run.to_json_dict()) == [
        "id", "registry", "dry_run", "command", "exit_code", "ok", "output", "started_at",
        "finished_at", "bytes_before", "bytes_after", "bytes_freed", "warnings", "eligible",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(ApprovalRow)] == [
        "by", "method", "decision", "note", "team", "at",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(PlanFields)] == [
        "requested_by", "expires_at",
    ]  # fmt: skip
    assert json.loads(json.dumps(event.to_json_dict(), default=str))["details"] == {"k": 1}
    for row in (event, lock, run):
        with pytest.raises(dataclasses.FrozenInstanceError):
            row.id = 0  # type: ignore[misc]  # frozen on purpose: this must raise


@pytest.mark.parametrize("hook", EVENT_HOOKS)
def test_event_hooks_offer_the_audit_log_and_keep_state_for_old_plugins(hook: str) -> None:
    parameters = inspect.signature(getattr(hookspecs, hook)).parameters
    assert parameters["audit"].annotation == "AuditLog"
    assert parameters["state"].annotation == "State"


@pytest.mark.parametrize("hook", AUDIT_HOOKS)
def test_the_builtin_audit_plugin_takes_only_the_audit_log(hook: str) -> None:
    parameters = inspect.signature(getattr(audit_plugin, hook)).parameters
    assert "audit" in parameters and "state" not in parameters


def test_the_audit_plugin_records_through_audit_without_touching_state() -> None:
    """Every event hook fired with a ``state`` that raises on any use: the built-in
    audit plugin still records each event, so it needs nothing but ``audit``."""
    manager = get_plugin_manager(load_entrypoints=False)
    with State(":memory:") as state:
        audit: AuditLog = state.audit_log
        result = GcResult("local", True, ["gc"], 0, "", T0, T0)
        notify(manager, "gc_finished", name="local", result=result, state=NoState(), audit=audit)
        plan = _stored_plan(state)
        approval = Approval("approved", "alice", "cli")
        decided = {"old": "pending", "new": "approved", "actor": "alice", "reason": ""}
        for hook, kwargs in (
            ("plan_created", {}),
            ("plan_decided", {"approval": approval}),  # recorded by plan_status_changed
            ("plan_status_changed", {**decided, "method": "cli"}),
            ("item_deleted", {"item": plan.delete[0]}),
            ("item_skipped", {"item": plan.delete[0], "reason": "tag moved"}),
            ("item_failed", {"item": plan.delete[0], "error": "500"}),
        ):
            notify(manager, hook, plan=plan, state=NoState(), audit=audit, **kwargs)
        events = [e.event for e in reversed(audit.events())]
    assert events == [
        "gc.dry_run",
        "plan.created",
        "plan.approved",
        "item.deleted",
        "item.skipped",
        "item.failed",
    ]


def _stored_plan(state: State) -> Plan:
    plan = make_plan("hook0001")
    state.plans.save(plan)
    return plan
