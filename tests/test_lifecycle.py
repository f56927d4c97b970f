"""The plan lifecycle: statuses spelled once, every move an allowed edge.

- No status literal outside ``core/lifecycle.py`` (a drift test, like tests/test_docs.py).
- The transitions table is closed and consistent with the named groups.
- Random sequences of engine transitions over a real state DB: every
  compare-and-set either moves the plan along an allowed edge, exactly once, with
  one ``plan_status_changed`` call, or changes nothing at all.
"""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune import hookimpl, lifecycle
from regprune.config import parse_settings
from regprune.engine import Engine
from regprune.lifecycle import (
    TRANSITIONS,
    Decision,
    DeleteAnswer,
    ItemStatus,
    PlanStatus,
)
from regprune.models import Approval, Plan, PlanSummary
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State, content_hash

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "core", ROOT / "plugins", ROOT / "bots"]
LIFECYCLE = ROOT / "core" / "lifecycle.py"
NAMES = frozenset(
    {str(s) for s in PlanStatus}
    | {str(s) for s in ItemStatus}
    | {str(s) for s in Decision}
    | {str(s) for s in DeleteAnswer}
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- statuses are spelled in one module -------------------------------------------------


def status_literals(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every string literal of ``path`` that spells a status: the whole
    string (``"pending"``), or a quoted word inside one (SQL's ``status = 'pending'``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text in NAMES or any(f"'{name}'" in text for name in NAMES):
                yield node.lineno, text


def test_no_status_literal_outside_the_lifecycle_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for base in SOURCES
        for path in sorted(base.rglob("*.py"))
        if path != LIFECYCLE
        for line, text in status_literals(path)
    ]
    assert not found, (
        "status names are spelled only in core/lifecycle.py; use its names instead of:\n"
        + "\n".join(found)
    )


def test_the_literal_check_finds_a_status(tmp_path: Path) -> None:
    # The check above must see both spellings, or it proves nothing.
    sample = tmp_path / "sample.py"
    sample.write_text(
        'a = "cancelled"\nb = "UPDATE plans SET status = \'pending\'"\nc = "pending plans"\n'
    )
    assert [line for line, _ in status_literals(sample)] == [1, 2]


def test_statuses_keep_their_stored_spelling() -> None:
    # The state DB and --json hold these strings: renaming one is a migration, not a refactor.
    assert [str(s) for s in PlanStatus] == [
        "pending",
        "approved",
        "rejected",
        "expired",
        "applying",
        "done",
        "failed",
        "cancelled",
    ]
    assert [str(s) for s in ItemStatus] == ["pending", "deleting", "deleted", "skipped", "failed"]
    assert json.dumps({PlanStatus.DONE: ItemStatus.FAILED}) == '{"done": "failed"}'
    assert f"{PlanStatus.APPLYING}" == "applying"


# -- the table and its groups ----------------------------------------------------------


def test_every_status_has_a_row_and_finished_ones_go_nowhere() -> None:
    assert set(TRANSITIONS) == set(PlanStatus)
    for status in lifecycle.FINISHED:
        assert TRANSITIONS[status] == frozenset()
    unfinished = set(PlanStatus) - set(lifecycle.FINISHED)
    assert all(TRANSITIONS[status] for status in unfinished)


def test_the_groups_agree_with_the_table() -> None:
    for status in lifecycle.CANCELLABLE:
        assert PlanStatus.CANCELLED in TRANSITIONS[status]
    assert PlanStatus.APPLYING not in lifecycle.CANCELLABLE  # deletions under way
    for status in lifecycle.DECIDABLE:
        assert {PlanStatus.APPROVED, PlanStatus.REJECTED, PlanStatus.EXPIRED} <= TRANSITIONS[status]
    for status in lifecycle.RESUMABLE:
        assert PlanStatus.APPLYING in TRANSITIONS[status]
    for status in lifecycle.REOPENABLE:
        assert PlanStatus.PENDING in TRANSITIONS[status]
    assert set(lifecycle.UNATTENDED_RESUMABLE) < set(lifecycle.RESUMABLE)
    assert PlanStatus.FAILED not in lifecycle.UNATTENDED_RESUMABLE  # a person reads why
    # Nothing but a refused apply ever leads back to pending.
    assert lifecycle.sources(PlanStatus.PENDING) == lifecycle.REOPENABLE


def test_allowed_reads_strings() -> None:
    assert lifecycle.allowed("pending", "approved")
    assert not lifecycle.allowed("done", "applying")
    assert not lifecycle.allowed("pending", "finished")
    with pytest.raises(ValueError, match="unknown plan status 'finished'"):
        lifecycle.plan_status("finished")


# -- random transitions against a real state DB ---------------------------------------------


@dataclass
class Recorder:
    """A plugin that records every plan_status_changed call."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)

    @hookimpl
    def plan_status_changed(self, plan: Plan, old: str, new: str, actor: str) -> None:
        assert plan.status == new
        self.calls.append((plan.id, str(old), str(new)))


def make_engine(path: Path) -> tuple[Engine, Recorder]:
    manager = get_plugin_manager()
    recorder = Recorder()
    manager.register(recorder, name="recorder")
    settings = parse_settings({"registry": {"local": {"url": "http://127.0.0.1:1"}}})
    return Engine(settings, State(path), manager=manager, now=lambda: T0), recorder


def stored_plan(state: State, plan_id: str) -> Plan:
    plan = Plan(
        id=plan_id,
        registry="local",
        registry_url="http://127.0.0.1:1",
        policy="ci",
        created_at=T0,
        delete=[],
        keep=[],
        summary=PlanSummary(0, 0, 0, 0, 0, {}),
        approval="cli",
        gc=False,
    )
    plan.content_hash = content_hash(plan.content())
    state.plans.save(plan)
    return plan


statuses = st.sampled_from(list(PlanStatus))
moves = st.lists(
    st.tuples(statuses, st.none() | st.lists(statuses, max_size=4)), min_size=1, max_size=25
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moves)
def test_every_compare_and_set_moves_along_an_edge_or_changes_nothing(
    tmp_path: Path, sequence: list[tuple[PlanStatus, list[PlanStatus] | None]]
) -> None:
    path = tmp_path / f"cas-{uuid.uuid4().hex}.db"  # one fresh DB per example
    engine, recorder = make_engine(path)
    try:
        plan = stored_plan(engine.state, "cas00001")
        made = 0
        for new, among in sequence:
            before = engine.state.plans.get(plan.id).status
            moved = engine.transition(plan, new, actor="tester", allowed_from=among)
            after = engine.state.plans.get(plan.id).status
            if moved is None:
                assert after == before, f"{before} -> {new}: refused, yet the plan changed"
            else:
                assert moved == before
                assert lifecycle.allowed(before, after), f"{before} -> {after} is no edge"
                assert after == new
                assert among is None or before in among
                assert recorder.calls[-1] == (plan.id, str(before), str(new))
                made += 1
            legal = new in TRANSITIONS[PlanStatus(before)] and (among is None or before in among)
            assert (moved is not None) == legal, f"{before} -> {new} among {among}"
        assert len(recorder.calls) == made  # one hook call per move, none for a refusal
    finally:
        engine.state.close()


def test_a_move_back_to_pending_voids_the_approvals(tmp_path: Path) -> None:
    engine, recorder = make_engine(tmp_path / "reopen.db")
    with engine.state:
        plan = stored_plan(engine.state, "reopen01")
        assert engine.approve(plan, Approval(Decision.APPROVED, "alice", "cli --yes"))
        assert engine.state.approvals.of(plan.id)
        assert engine.transition(plan, PlanStatus.PENDING, actor="x") == PlanStatus.APPROVED
        assert engine.state.approvals.of(plan.id) == []
        assert recorder.calls[-1] == (plan.id, "approved", "pending")


def test_a_lost_race_fires_nothing(tmp_path: Path) -> None:
    engine, recorder = make_engine(tmp_path / "race.db")
    with engine.state:
        plan = stored_plan(engine.state, "race0001")
        other = State(tmp_path / "race.db")
        try:
            assert other.plans.set_status(plan.id, "rejected", expected=["pending"])
        finally:
            other.close()
        assert not engine.approve(plan, Approval(Decision.APPROVED, "alice", "cli --yes"))
        assert recorder.calls == []
        assert engine.state.approvals.of(plan.id) == []
