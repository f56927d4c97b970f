"""Tests of the state DB on a real SQLite file and on in-memory DBs."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from regprune.engine import RESUMABLE
from regprune.errors import LockHeld, RegpruneError, UsageError
from regprune.models import (
    Approval,
    Blob,
    GcResult,
    KeepItem,
    ManifestFacts,
    Plan,
    PlanItem,
    PlanStatus,
    PlanSummary,
)
from regprune.state import (
    FINAL_PLAN_STATUSES,
    PRUNED_EVENT,
    UNFINISHED_PLAN_STATUSES,
    ApprovalRow,
    PlanFields,
    PlanRemoved,
    State,
    content_hash,
    migrations,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EXPECTED_TABLES = {
    "_sqlite_migrations",
    "digests",
    "first_seen",
    "plans",
    "plan_items",
    "approvals",
    "audit",
    "gc_runs",
    "locks",
    "plan_messages",
    "usage",
    "usage_events",
    "usage_sessions",
}


def sha(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def make_plan(plan_id: str = "1a2b3c4d5e6f", *, created_at: datetime = T0, **kw: Any) -> Plan:
    delete = [
        PlanItem(
            seq=1,
            repository="app",
            digest=sha(1),
            tags=("v1", "old"),
            role="image",
            parent=None,
            media_type="application/vnd.oci.image.index.v1+json",
            created="2025-01-01T00:00:00Z",
            size=1234,
            reasons=("older than 14d",),
        ),
        PlanItem(
            seq=2,
            repository="app",
            digest=sha(2),
            tags=(),
            role="child",
            parent=sha(1),
            media_type="application/vnd.oci.image.manifest.v1+json",
            created=None,
            size=500,
            reasons=("child of " + sha(1),),
        ),
    ]
    keep = [
        KeepItem(
            repository="app",
            digest=sha(3),
            tags=("latest",),
            created="2026-02-28T00:00:00Z",
            reasons=("tag matches ^latest$",),
        )
    ]
    fields: dict[str, Any] = {
        "id": plan_id,
        "registry": "local",
        "registry_url": "http://127.0.0.1:5000",
        "policy": "nightly",
        "created_at": created_at,
        "delete": delete,
        "keep": keep,
        "summary": PlanSummary(
            images=1, manifests=2, tags=2, bytes=1734, kept_images=1, repositories={"app": 1}
        ),
        "approval": "cli",
        "gc": True,
        "requested_by": "alice",
        "expires_at": created_at + timedelta(days=1),
        "warnings": ["registry 2.8: --delete-untagged disabled"],
    }
    fields.update(kw)
    return Plan(**fields)


def facts(n: int) -> ManifestFacts:
    return ManifestFacts(
        digest=sha(n),
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=100 + n,
        config_digest=sha(-n),
        created="2026-01-01T00:00:00Z",
        labels={"org.opencontainers.image.revision": str(n)},
        blobs=(Blob(sha(10_000 + n), 42), Blob(sha(20_000 + n), 7)),
        children=(),
        subject=None,
    )


@pytest.fixture
def state() -> Any:
    with State(":memory:") as st:
        yield st


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "state.db"


@pytest.fixture
def file_state(db_path: Path) -> Any:
    with State(db_path) as st:
        yield st


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(0..n-1) in n threads released together; return results (or exceptions)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- migrations ---------------------------------------------------------------------


def all_migrations() -> list[str]:
    """Every migration's name, in order (what a fresh DB has pending)."""
    return [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]


def test_migrations_apply_to_fresh_in_memory_db() -> None:
    db = sqlite_utils.Database(memory=True)
    assert [m.name for m in migrations.pending(db)][:2] == ["m001_initial", "m002_lock_child"]
    migrations.apply(db)
    assert set(db.table_names()) == EXPECTED_TABLES
    assert migrations.pending(db) == []
    assert [m.name for m in migrations.applied(db)] == all_migrations()
    assert db.table("locks").pks == ["name"]
    assert db.table("plan_items").pks == ["plan_id", "seq"]
    assert db.table("approvals").pks == ["plan_id", "by", "decision"]
    assert set(db.table("plans").columns_dict) == {
        "id",
        "registry",
        "registry_url",
        "policy",
        "created_at",
        "status",
        "content",
        "content_hash",
        "requested_by",
        "expires_at",
        "updated_at",
    }
    assert set(db.table("plan_items").columns_dict) == {
        "plan_id",
        "seq",
        "repository",
        "digest",
        "role",
        "status",
        "reason",
        "updated_at",
    }


def test_migrations_apply_twice_is_a_no_op() -> None:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    schema = db.schema
    applied = [(m.name, m.applied_at) for m in migrations.applied(db)]
    migrations.apply(db)
    assert db.schema == schema
    assert [(m.name, m.applied_at) for m in migrations.applied(db)] == applied


def test_state_in_memory_is_migrated(state: State) -> None:
    assert set(state.db.table_names()) == EXPECTED_TABLES
    assert state.path == ":memory:"
    assert migrations.pending(state.db) == []


def test_file_state_creates_dirs_wal_busy_timeout(db_path: Path) -> None:
    with State(db_path) as st:
        assert db_path.exists()
        assert st.path == str(db_path)
        assert st.db.journal_mode == "wal"
        assert st.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
        assert st.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # Reopening does not migrate again.
    with State(str(db_path)) as st:
        assert len(migrations.applied(st.db)) == len(all_migrations())


def test_concurrent_first_open_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    results = race(4, lambda i: State(path))
    assert all(isinstance(r, State) for r in results), results
    for st in results:
        st.close()
    with State(path) as st:
        assert [m.name for m in migrations.applied(st.db)] == all_migrations()


# -- digest cache -------------------------------------------------------------------


def test_facts_roundtrip_and_unknown_digests(state: State) -> None:
    assert state.digests.get_facts([sha(1)]) == {}
    state.digests.put_facts([facts(1), facts(2)])
    got = state.digests.get_facts([sha(1), sha(2), sha(99), sha(1)])
    assert got == {sha(1): facts(1), sha(2): facts(2)}
    assert got[sha(1)].blobs[0] == Blob(sha(10_001), 42)
    state.digests.put_facts([facts(1)])  # upsert: no error, same answer
    assert state.digests.get_facts({sha(1)}) == {sha(1): facts(1)}
    state.digests.put_facts([])
    assert state.digests.get_facts([]) == {}


def test_facts_bulk_2000_digests_in_few_queries(file_state: State) -> None:
    all_facts = [facts(n) for n in range(2000)]
    file_state.digests.put_facts(all_facts)
    statements: list[str] = []
    file_state.db.conn.set_trace_callback(statements.append)
    got = file_state.digests.get_facts(f.digest for f in all_facts)
    file_state.db.conn.set_trace_callback(None)
    assert len(got) == 2000
    assert got[sha(1999)] == facts(1999)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 4  # chunks of 500, not one per digest (speed: bench/, not here)


def test_put_facts_is_one_transaction(file_state: State) -> None:
    statements: list[str] = []
    file_state.db.conn.set_trace_callback(statements.append)
    file_state.digests.put_facts([facts(n) for n in range(50)])
    file_state.db.conn.set_trace_callback(None)
    assert sum(1 for s in statements if s.startswith("BEGIN")) == 1
    assert sum(1 for s in statements if s == "COMMIT") == 1


def test_touch_first_seen(state: State) -> None:
    later = T0 + timedelta(hours=5)
    first = state.digests.touch_first_seen("local", "app", [sha(1), sha(2)], T0)
    assert first == {sha(1): T0, sha(2): T0}
    assert all(dt.tzinfo is not None for dt in first.values())
    second = state.digests.touch_first_seen("local", "app", iter([sha(2), sha(3)]), later)
    assert second == {sha(2): T0, sha(3): later}
    # Scoped by registry and repository.
    assert state.digests.touch_first_seen("local", "other", [sha(1)], later) == {sha(1): later}
    assert state.digests.touch_first_seen("remote", "app", [sha(1)], later) == {sha(1): later}
    assert state.digests.touch_first_seen("local", "app", [], later) == {}


def test_touch_first_seen_bulk_and_timezones(state: State) -> None:
    digests = [sha(n) for n in range(1200)]
    berlin = timezone(timedelta(hours=1))
    got = state.digests.touch_first_seen("local", "app", digests, datetime(2026, 3, 1, 13, tzinfo=berlin))
    assert len(got) == 1200
    assert set(got.values()) == {T0}
    assert got[sha(0)].utcoffset() == timedelta(0)
    # Naive datetimes are taken as UTC.
    naive = state.digests.touch_first_seen("local", "new", [sha(1)], datetime(2026, 3, 1, 12))
    assert naive[sha(1)] == T0


# -- plans --------------------------------------------------------------------------


def test_save_and_get_plan_roundtrip(state: State) -> None:
    plan = make_plan()
    state.plans.save(plan)
    canonical = json.dumps(plan.content(), sort_keys=True, separators=(",", ":"))
    assert plan.content_hash == hashlib.sha256(canonical.encode()).hexdigest()
    assert plan.content_hash == content_hash(plan.content())
    loaded = state.plans.get(plan.id)
    assert loaded == plan
    assert loaded.created_at.tzinfo is not None
    assert loaded.expires_at == T0 + timedelta(days=1)
    assert loaded.status == "pending"
    assert content_hash(loaded.content()) == loaded.content_hash
    assert state.plans.item_statuses(plan.id) == {1: ("pending", ""), 2: ("pending", "")}


def test_save_plan_keeps_given_hash_and_rejects_a_wrong_one(state: State) -> None:
    plan = make_plan("aaaa0001")
    plan.content_hash = content_hash(plan.content())
    state.plans.save(plan)
    assert state.plans.get("aaaa0001").content_hash == plan.content_hash
    wrong = make_plan("aaaa0002", content_hash="0" * 64)
    with pytest.raises(RegpruneError, match="does not match"):
        state.plans.save(wrong)
    with pytest.raises(UsageError):
        state.plans.get("aaaa0002")


def test_save_plan_rejects_duplicates_and_naive_times(state: State) -> None:
    state.plans.save(make_plan("dup00001"))
    with pytest.raises(RegpruneError, match="already exists"):
        state.plans.save(make_plan("dup00001"))
    with pytest.raises(ValueError, match="timezone-aware"):
        state.plans.save(make_plan("naive001", created_at=datetime(2026, 1, 1)))


def test_save_plan_with_non_utc_created_at_roundtrips(state: State) -> None:
    plan = make_plan(
        "tz000001", created_at=datetime(2026, 3, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    )
    state.plans.save(plan)
    assert state.plans.get("tz000001") == plan


def test_get_plan_by_prefix(state: State) -> None:
    state.plans.save(make_plan("abcd1111"))
    state.plans.save(make_plan("abcd2222"))
    state.plans.save(make_plan("ffff0000"))
    assert state.plans.get("abcd1").id == "abcd1111"
    assert state.plans.get("ffff").id == "ffff0000"
    assert state.plans.get("abcd2222").id == "abcd2222"
    with pytest.raises(UsageError, match="ambiguous") as exc:
        state.plans.get("abcd")
    assert "abcd1111" in str(exc.value) and "abcd2222" in str(exc.value)
    with pytest.raises(UsageError) as unknown:
        state.plans.get("0123456")
    assert str(unknown.value) == "no plan '0123456'; list plans with `regprune plans`"
    with pytest.raises(UsageError, match="at least 4"):
        state.plans.get("ff")
    # Prefixes are literal: LIKE wildcards match nothing.
    with pytest.raises(UsageError):
        state.plans.get("ab%_")


def test_get_plan_detects_tampered_content(file_state: State) -> None:
    plan = make_plan()
    file_state.plans.save(plan)
    row = file_state.db.execute("SELECT content FROM plans WHERE id = ?", [plan.id]).fetchone()
    content = json.loads(row[0])
    content["delete"][0]["digest"] = sha(42)
    file_state.db.execute(
        "UPDATE plans SET content = ? WHERE id = ?", [json.dumps(content), plan.id]
    )
    with pytest.raises(RegpruneError) as exc:
        file_state.plans.get(plan.id[:6])
    assert str(exc.value) == (
        f"plan {plan.id} was modified after it was stored (content hash mismatch); make a new plan"
    )
    assert not isinstance(exc.value, UsageError)


def test_get_plan_detects_tampered_hash_items_and_garbage(state: State) -> None:
    for plan_id in ("hash0001", "item0001", "junk0001"):
        state.plans.save(make_plan(plan_id))
    state.db.execute("UPDATE plans SET content_hash = ? WHERE id = 'hash0001'", ["f" * 64])
    state.db.execute(
        "UPDATE plan_items SET digest = ? WHERE plan_id = 'item0001' AND seq = 1", [sha(7)]
    )
    state.db.execute("UPDATE plans SET content = 'not json' WHERE id = 'junk0001'")
    for plan_id in ("hash0001", "item0001", "junk0001"):
        with pytest.raises(RegpruneError, match="modified after it was stored"):
            state.plans.get(plan_id)


def test_list_plans_newest_first_with_filters(state: State) -> None:
    for i, (registry, policy) in enumerate(
        [("local", "nightly"), ("local", "weekly"), ("remote", "nightly"), ("local", "nightly")]
    ):
        state.plans.save(
            make_plan(
                f"plan{i:04d}", created_at=T0 + timedelta(hours=i), registry=registry, policy=policy
            )
        )
    state.plans.set_status("plan0001", "approved", expected=["pending"])
    assert [p.id for p in state.plans.find()] == ["plan0003", "plan0002", "plan0001", "plan0000"]
    assert [p.id for p in state.plans.find(limit=2)] == ["plan0003", "plan0002"]
    assert [p.id for p in state.plans.find(registry="local")] == [
        "plan0003",
        "plan0001",
        "plan0000",
    ]
    assert [p.id for p in state.plans.find(registry="local", policy="nightly")] == [
        "plan0003",
        "plan0000",
    ]
    assert [p.id for p in state.plans.find(status="approved")] == ["plan0001"]
    assert state.plans.find(registry="nowhere") == []
    assert state.plans.find()[0].content_hash


def test_set_plan_status_compare_and_set(state: State) -> None:
    state.plans.save(make_plan("cas00001"))
    before = state.db.execute("SELECT updated_at FROM plans").fetchone()[0]
    time.sleep(0.002)
    assert state.plans.set_status("cas00001", "approved", expected=["pending"]) is True
    assert state.plans.get("cas00001").status == "approved"
    assert state.db.execute("SELECT updated_at FROM plans").fetchone()[0] > before
    assert state.plans.set_status("cas00001", "rejected", expected=["pending"]) is False
    assert state.plans.set_status("cas00001", "applying", expected=("pending", "approved"))
    assert state.plans.set_status("cas00001", "done", expected=[]) is False
    assert state.plans.set_status("nope", "done", expected=["applying"]) is False
    assert state.plans.get("cas00001").status == "applying"
    with pytest.raises(ValueError):
        state.plans.set_status("cas00001", "finished", expected=["applying"])


def test_set_plan_status_race_between_connections(db_path: Path) -> None:
    states = [State(db_path) for _ in range(4)]
    try:
        for round_ in range(15):
            plan_id = f"race{round_:04d}"
            states[0].plans.save(make_plan(plan_id))
            states[0].plans.set_status(plan_id, "approved", expected=["pending"])
            results = race(
                4,
                lambda i, plan_id=plan_id: states[i].plans.set_status(
                    plan_id, "applying", expected=["approved"]
                ),
            )
            assert sorted(results) == [False, False, False, True], results
            assert states[3].plans.get(plan_id).status == "applying"
    finally:
        for st in states:
            st.close()


def test_plan_side_fields(state: State) -> None:
    plan = make_plan("side0001")
    state.plans.save(plan)
    assert state.plans.fields("side0001") == PlanFields(
        requested_by="alice",
        expires_at=T0 + timedelta(days=1),
    )
    later = T0 + timedelta(days=3)
    state.plans.set_fields("side0001", expires_at=later, requested_by="bob")
    fields = state.plans.fields("side0001")
    assert fields == PlanFields(requested_by="bob", expires_at=later)
    loaded = state.plans.get("side0001")  # side fields are outside the hash
    assert (loaded.requested_by, loaded.expires_at) == ("bob", later)
    with pytest.raises(ValueError, match="policy"):
        state.plans.set_fields("side0001", policy="evil")
    # Message references are no side field (tests/test_plan_messages.py).
    with pytest.raises(ValueError, match="slack_ts"):
        state.plans.set_fields("side0001", slack_ts="1700000000.000100")
    with pytest.raises(UsageError):
        state.plans.set_fields("missing1", requested_by="x")
    with pytest.raises(UsageError):
        state.plans.fields("missing1")


def test_item_statuses_are_durable_at_once(db_path: Path) -> None:
    with State(db_path) as writer, State(db_path) as reader:
        writer.plans.save(make_plan("item0001"))
        writer.plans.set_item_status("item0001", 1, "deleting")
        assert reader.plans.item_statuses("item0001")[1] == ("deleting", "")
        writer.plans.set_item_status("item0001", 1, "deleted")
        writer.plans.set_item_status("item0001", 2, "skipped", "tag moved to a new digest")
        assert reader.plans.item_statuses("item0001") == {
            1: ("deleted", ""),
            2: ("skipped", "tag moved to a new digest"),
        }
        assert not writer.db.conn.in_transaction
        with pytest.raises(RegpruneError, match="no item 9"):
            writer.plans.set_item_status("item0001", 9, "deleted")
        with pytest.raises(ValueError):
            writer.plans.set_item_status("item0001", 1, "gone")
        assert reader.plans.item_statuses("nope") == {}


# -- approvals ----------------------------------------------------------------------


def test_approvals_are_idempotent_per_person_and_decision(state: State) -> None:
    state.plans.save(make_plan("appr0001"))
    yes = Approval(decision="approved", by="U1", method="slack", note="lgtm")
    assert state.approvals.add("appr0001", yes, at=T0, team="T9") is True
    assert state.approvals.add("appr0001", yes, at=T0 + timedelta(seconds=1)) is False
    no = Approval(decision="rejected", by="U1", method="slack")
    assert state.approvals.add("appr0001", no, at=T0 + timedelta(minutes=1)) is True
    assert state.approvals.add("appr0001", Approval("approved", "U2", "cli")) is True
    rows = state.approvals.of("appr0001")
    assert [(r.by, r.decision) for r in rows] == [
        ("U1", "approved"),
        ("U1", "rejected"),
        ("U2", "approved"),
    ]
    assert rows[0] == ApprovalRow(
        by="U1", method="slack", decision="approved", note="lgtm", team="T9", at=T0
    )
    assert rows[2].at.tzinfo is not None
    assert state.approvals.of("nope0000") == []
    with pytest.raises(UsageError, match="no plan"):
        state.approvals.add("nope0000", yes)


def test_double_click_race_records_once(db_path: Path) -> None:
    states = [State(db_path) for _ in range(3)]
    try:
        states[0].plans.save(make_plan("click001"))
        vote = Approval(decision="approved", by="U1", method="slack")
        results = race(3, lambda i: states[i].approvals.add("click001", vote))
        assert sorted(results) == [False, False, True]
    finally:
        for st in states:
            st.close()


# -- audit log ----------------------------------------------------------------------


def test_audit_events(state: State) -> None:
    state.audit_log.record("plan.created", registry="local", plan_id="p1", actor="alice", at=T0)
    state.audit_log.record(
        "item.deleted",
        registry="local",
        plan_id="p1",
        actor="alice",
        details={"digest": sha(1), "when": T0, "path": Path("/x")},
        at=T0 + timedelta(seconds=1),
    )
    state.audit_log.record("gc.finished", registry="remote", at=T0 + timedelta(seconds=2))
    state.audit_log.record("noted")
    events = state.audit_log.events()
    assert [e.event for e in events] == [
        "noted",
        "gc.finished",
        "item.deleted",
        "plan.created",
    ]
    deleted = events[2]
    assert deleted.details == {"digest": sha(1), "when": str(T0), "path": "/x"}
    assert deleted.at == T0 + timedelta(seconds=1)
    assert (deleted.registry, deleted.plan_id, deleted.actor) == ("local", "p1", "alice")
    assert events[0].details == {}
    assert [e.event for e in state.audit_log.events(registry="local")] == [
        "item.deleted",
        "plan.created",
    ]
    assert [e.event for e in state.audit_log.events(plan_id="p1", limit=1)] == ["item.deleted"]
    assert state.audit_log.events(registry="local", plan_id="p2") == []


# -- gc runs ------------------------------------------------------------------------


def test_gc_runs(state: State) -> None:
    first = GcResult(
        registry="local",
        dry_run=True,
        command=["registry", "garbage-collect", "--dry-run", "/etc/docker/registry/config.yml"],
        exit_code=0,
        output="12 blobs marked",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=30),
    )
    second = GcResult(
        registry="local",
        dry_run=False,
        command=["registry", "garbage-collect"],
        exit_code=1,
        output="boom",
        started_at=T0 + timedelta(hours=1),
        finished_at=T0 + timedelta(hours=1, seconds=5),
        bytes_before=1000,
        bytes_after=400,
        warnings=["restart the registry"],
    )
    other = GcResult("remote", False, ["gc"], 0, "", T0, T0)
    state.gc_runs.record("local", first)
    state.gc_runs.record("local", second)
    state.gc_runs.record("remote", other)
    runs = state.gc_runs.recent()
    # Newest first; equal start times by insertion, newest first.
    assert [(r.registry, r.exit_code) for r in runs] == [
        ("local", 1),
        ("remote", 0),
        ("local", 0),
    ]
    local = state.gc_runs.recent(registry="local")
    assert len(local) == 2
    newest = local[0]
    expected = second.to_json_dict()
    for key, value in expected.items():
        assert getattr(newest, key) == (value if "_at" not in key else getattr(second, key)), key
    assert newest.ok is False and newest.dry_run is False
    assert newest.bytes_freed == 600
    assert local[1].bytes_freed is None and local[1].ok is True
    assert state.gc_runs.recent(limit=1, registry="local")[0].id == newest.id
    assert state.gc_runs.recent(registry="none") == []


# -- locks --------------------------------------------------------------------------


def test_lock_acquire_release(state: State) -> None:
    assert state.locks.current() == []
    with state.locks.hold("local", purpose="apply of plan 1a2b3c4d"):
        (row,) = state.locks.current()
        assert row.name == "local"
        assert row.hostname == socket.gethostname()
        assert row.purpose == "apply of plan 1a2b3c4d"
        assert row.acquired_at.tzinfo is not None
        assert row.stale is False
        assert not hasattr(row, "token")
        # Not reentrant: a second acquisition of the same name is refused.
        with pytest.raises(LockHeld), state.locks.hold("local", purpose="gc"):
            pass
        with state.locks.hold("remote", purpose="gc"):
            assert {r.name for r in state.locks.current()} == {"local", "remote"}
    assert state.locks.current() == []


def test_lock_released_on_exception(state: State) -> None:
    with pytest.raises(RuntimeError), state.locks.hold("local", purpose="apply"):
        raise RuntimeError("boom")
    assert state.locks.current() == []


def test_lock_contention_between_two_states(db_path: Path) -> None:
    with State(db_path) as a, State(db_path) as b:
        with a.locks.hold("local", purpose="apply of plan 1a2b3c4d"):
            with pytest.raises(LockHeld) as exc, b.locks.hold("local", purpose="gc"):
                pass
            message = str(exc.value)
            assert message.startswith(
                f"registry 'local' is busy: apply of plan 1a2b3c4d by {socket.gethostname()}:"
            )
            assert " since 2" in message and "UTC" in message
            assert message.endswith(
                "; wait or, if that process is gone, remove the lock with `regprune unlock local`"
            )
        with b.locks.hold("local", purpose="gc"):
            assert b.locks.current()[0].purpose == "gc"


def test_lock_race_only_one_wins(db_path: Path) -> None:
    states = [State(db_path) for _ in range(4)]
    try:
        # The winner holds the lock until every thread has tried.
        tried = threading.Barrier(4)

        def take(i: int) -> str:
            try:
                with states[i].locks.hold("local", purpose=f"taker {i}"):
                    tried.wait(5)
            except LockHeld:
                tried.wait(5)
                raise
            return "won"

        results = race(4, take)
        assert sum(r == "won" for r in results) == 1, results
        assert sum(isinstance(r, LockHeld) for r in results) == 3, results
        assert states[0].locks.current() == []
    finally:
        for st in states:
            st.close()


def _plant_lock(st: State, *, hostname: str, pid: int, heartbeat: datetime) -> None:
    st.db.execute(
        "INSERT INTO locks (name, token, hostname, pid, purpose, acquired_at, heartbeat_at)"
        " VALUES ('local', 'theirs', ?, ?, 'apply of plan deadbeef', ?, ?)",
        [hostname, pid, heartbeat.isoformat(), heartbeat.isoformat()],
    )


def test_stale_lock_dead_pid_on_this_host_is_taken_over(state: State) -> None:
    _plant_lock(state, hostname=socket.gethostname(), pid=dead_pid(), heartbeat=datetime.now(UTC))
    assert state.locks.current()[0].stale is True
    with state.locks.hold("local", purpose="gc"):
        (row,) = state.locks.current()
        assert row.purpose == "gc"
        assert row.pid != 0


def test_lock_live_pid_on_this_host_is_not_stale(state: State) -> None:
    # pid 1 always exists: a holder on this host whose process is alive is not stale.
    _plant_lock(state, hostname=socket.gethostname(), pid=1, heartbeat=datetime.now(UTC))
    with pytest.raises(LockHeld, match="apply of plan deadbeef"), state.locks.hold("local", purpose="gc"):
        pass


def test_stale_lock_old_heartbeat_is_taken_over(state: State) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    _plant_lock(state, hostname="elsewhere", pid=1, heartbeat=old)
    with state.locks.hold("local", purpose="gc"):
        assert state.locks.current()[0].hostname == socket.gethostname()


def test_lock_on_another_host_with_fresh_heartbeat_is_held(state: State) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=10)
    _plant_lock(state, hostname="elsewhere", pid=dead_pid(), heartbeat=recent)
    with pytest.raises(LockHeld, match="by elsewhere:"), state.locks.hold("local", purpose="gc"):
        pass
    # ...unless the caller's stale_after is shorter than the heartbeat's age.
    with state.locks.hold("local", purpose="gc", stale_after=timedelta(minutes=5)):
        pass


def test_stale_lock_takeover_race_has_one_winner(db_path: Path) -> None:
    states = [State(db_path) for _ in range(4)]
    try:
        _plant_lock(
            states[0],
            hostname="elsewhere",
            pid=1,
            heartbeat=datetime.now(UTC) - timedelta(hours=3),
        )
        hold = threading.Event()

        def take(i: int) -> str:
            with states[i].locks.hold("local", purpose=f"taker {i}"):
                hold.wait(1)
            return "won"

        results = race(4, take)
        assert sum(r == "won" for r in results) == 1, results
        assert all(isinstance(r, LockHeld) for r in results if r != "won")
    finally:
        for st in states:
            st.close()


def test_heartbeat_and_lost_lock(db_path: Path) -> None:
    with State(db_path) as a, State(db_path) as b:
        with a.locks.hold("local", purpose="apply", auto_heartbeat=False):
            a.db.execute("UPDATE locks SET heartbeat_at = '2000-01-01T00:00:00.000000+00:00'")
            a.locks.heartbeat("local")
            assert a.locks.current()[0].heartbeat_at > datetime.now(UTC) - timedelta(minutes=1)
            # Someone removes it (regprune unlock) and another process takes it.
            assert b.locks.break_lock("local") is True
            with b.locks.hold("local", purpose="gc"), pytest.raises(LockHeld, match="no longer held"):
                a.locks.heartbeat("local")
        # a's exit did not remove b's lock; b's exit did.
        assert a.locks.current() == []
        with a.locks.hold("local", purpose="apply"):
            assert b.locks.break_lock("local") is True
            with b.locks.hold("local", purpose="gc"):
                pass
            with b.locks.hold("local", purpose="gc2", auto_heartbeat=False):
                pass
        with pytest.raises(LockHeld):
            a.locks.heartbeat("local")


def test_release_only_if_still_ours(db_path: Path) -> None:
    with State(db_path) as a, State(db_path) as b:
        with a.locks.hold("local", purpose="apply", auto_heartbeat=False):
            b.locks.break_lock("local")
            _plant_lock(b, hostname="elsewhere", pid=1, heartbeat=datetime.now(UTC))
        (row,) = b.locks.current()
        assert row.hostname == "elsewhere"


def test_break_lock(state: State) -> None:
    assert state.locks.break_lock("local") is False
    _plant_lock(state, hostname="elsewhere", pid=1, heartbeat=datetime.now(UTC))
    assert state.locks.break_lock("local") is True
    assert state.locks.current() == []


def test_auto_heartbeat_keeps_a_long_holder_fresh(db_path: Path) -> None:
    with State(db_path) as a, State(db_path) as b:
        stale_after = timedelta(seconds=1)
        with a.locks.hold("local", purpose="gc", stale_after=stale_after):
            time.sleep(2.0)  # well past stale_after; the heartbeat thread keeps it alive
            assert datetime.now(UTC) - b.locks.current()[0].heartbeat_at < stale_after
            with pytest.raises(LockHeld), b.locks.hold("local", purpose="apply", stale_after=stale_after):
                pass
        assert b.locks.current() == []
        # Without the thread the same wait makes the lock stale, and it is taken over.
        with a.locks.hold("local", purpose="gc", stale_after=stale_after, auto_heartbeat=False):
            time.sleep(1.2)
            with b.locks.hold("local", purpose="apply", stale_after=stale_after):
                assert b.locks.current()[0].purpose == "apply"
                with pytest.raises(LockHeld, match="no longer held"):
                    a.locks.heartbeat("local")


def test_close_releases_held_locks(db_path: Path) -> None:
    a = State(db_path)
    cm = a.locks.hold("local", purpose="apply", auto_heartbeat=False)
    cm.__enter__()
    a.close()
    with State(db_path) as b:
        assert b.locks.current() == []


# -- plan retention -----------------------------------------------------------------

NOW = T0 + timedelta(days=365)
RETENTION = timedelta(days=90)
ALL_STATUSES: tuple[str, ...] = tuple(PlanStatus)


def stored_plan(
    st: State,
    plan_id: str,
    status: str,
    *,
    age_days: float,
    changed_days: float | None = None,
    **kw: Any,
) -> Plan:
    """A stored plan created ``age_days`` before NOW, last changed ``changed_days`` before
    NOW (default: when created), in ``status``; its approval window closed a day after
    creation unless ``expires_at`` is given."""
    plan = make_plan(plan_id, created_at=NOW - timedelta(days=age_days), **kw)
    st.plans.save(plan)
    changed = NOW - timedelta(days=age_days if changed_days is None else changed_days)
    # Status and updated_at as an apply, an approver or the bot would have left them.
    st.db.conn.execute(
        "UPDATE plans SET status = ?, updated_at = ? WHERE id = ?",
        (status, changed.isoformat(timespec="microseconds"), plan_id),
    )
    st.db.conn.commit()
    return plan


def plan_ids(st: State) -> set[str]:
    return {row[0] for row in st.db.execute("SELECT id FROM plans").fetchall()}


def count(st: State, sql: str, *params: Any) -> int:
    return st.db.execute(sql, params).fetchone()[0]


def test_every_plan_status_has_a_retention_rule() -> None:
    # A new status must be classified on purpose; until then it is kept (allow-list).
    final, unfinished = set(FINAL_PLAN_STATUSES), set(UNFINISHED_PLAN_STATUSES)
    assert not final & unfinished
    assert "pending" not in final | unfinished
    assert final | unfinished | {"pending"} == set(ALL_STATUSES)
    # What apply resumes is exactly what retention never removes.
    assert set(RESUMABLE) == unfinished == {"approved", "applying", "failed"}


@pytest.mark.parametrize("status", ["approved", "applying", "failed", "some-future-status"])
def test_unfinished_plans_are_never_removed_whatever_their_age(
    file_state: State, status: str
) -> None:
    """The safety property: work left in a plan (apply resumes approved, applying and
    failed plans) is never thrown away by retention, even with a zero retention and a
    plan twenty years old whose approval window closed long ago."""
    plan = stored_plan(file_state, "keep0001", status, age_days=7300)
    file_state.approvals.add("keep0001", Approval("approved", "alice", "cli"), at=NOW)
    items_before = file_state.plans.item_statuses("keep0001")
    # A removable neighbour proves the prune really ran.
    stored_plan(file_state, "gone0001", "done", age_days=7300)

    for dry_run in (True, False):
        result = file_state.retention.prune_plans(timedelta(0), now=NOW, dry_run=dry_run)
        assert result.plan_ids == ["gone0001"]
        assert result.kept == 1

    assert plan_ids(file_state) == {"keep0001"}
    assert file_state.plans.item_statuses("keep0001") == items_before
    assert [a.by for a in file_state.approvals.of("keep0001")] == ["alice"]
    if status in ALL_STATUSES:
        assert file_state.plans.get("keep0001").delete == plan.delete


def test_prune_removes_old_finished_and_pending_plans_with_items_and_approvals(
    file_state: State,
) -> None:
    st = file_state
    for n, status in enumerate(ALL_STATUSES):
        stored_plan(st, f"old{n:05d}", status, age_days=200)
        stored_plan(st, f"new{n:05d}", status, age_days=10)
    old = {status: f"old{n:05d}" for n, status in enumerate(ALL_STATUSES)}
    st.approvals.add(old["done"], Approval("approved", "alice", "cli"), at=NOW)
    st.approvals.add(old["rejected"], Approval("rejected", "bob", "slack"), at=NOW)
    st.approvals.add(old["approved"], Approval("approved", "carol", "cli"), at=NOW)
    st.audit_log.record("plan.created", plan_id=old["done"], registry="local")
    st.digests.put_facts([facts(1), facts(2)])
    st.digests.touch_first_seen("local", "app", [sha(1), sha(2)], NOW)

    result = st.retention.prune_plans(RETENTION, now=NOW, actor="cron@build-01")

    removed = {old[s] for s in ("pending", "done", "rejected", "expired", "cancelled")}
    assert set(result.plan_ids) == removed
    assert result.by_status == {
        s: 1 for s in ("pending", "done", "rejected", "expired", "cancelled")
    }
    assert (result.items, result.approvals, result.kept) == (10, 2, 3)
    assert result.bytes > 0 and result.cutoff == NOW - RETENTION and not result.dry_run
    assert plan_ids(st) == {f"new{n:05d}" for n in range(len(ALL_STATUSES))} | {
        old["approved"],
        old["applying"],
        old["failed"],
    }
    marks = ",".join("?" * len(removed))
    assert count(st, f"SELECT COUNT(*) FROM plan_items WHERE plan_id IN ({marks})", *removed) == 0
    assert count(st, f"SELECT COUNT(*) FROM approvals WHERE plan_id IN ({marks})", *removed) == 0
    assert [a.by for a in st.approvals.of(old["approved"])] == ["carol"]
    assert st.db.execute("PRAGMA foreign_key_check").fetchall() == []
    # The digest cache, first-seen times and the audit log are left alone.
    assert set(st.digests.get_facts([sha(1), sha(2)])) == {sha(1), sha(2)}
    assert count(st, "SELECT COUNT(*) FROM first_seen") == 2
    assert [e.event for e in st.audit_log.events(plan_id=old["done"])] == ["plan.created"]
    event = st.audit_log.events(limit=1)[0]
    assert (event.event, event.actor, event.plan_id) == (
        PRUNED_EVENT,
        "cron@build-01",
        None,
    )
    details = event.details
    assert (details["plans"], details["items"], details["approvals"], details["kept"]) == (
        5,
        10,
        2,
        3,
    )
    assert sorted(details["plan_ids"]) == sorted(removed)
    assert details["older_than_seconds"] == 90 * 86400
    assert details["trigger"] == "regprune state prune"

    # Nothing left to remove: a second run removes nothing and says so in the log.
    again = st.retention.prune_plans(RETENTION, now=NOW)
    assert (again.plans, again.kept) == (0, 3)
    assert st.audit_log.events(limit=1)[0].details["plans"] == 0


def test_prune_keeps_a_pending_plan_still_open_for_approval(state: State) -> None:
    stored_plan(state, "open0001", "pending", age_days=200, expires_at=NOW + timedelta(hours=1))
    stored_plan(state, "none0001", "pending", age_days=200, expires_at=None)

    assert state.retention.prune_plans(RETENTION, now=NOW).plan_ids == ["none0001"]
    assert plan_ids(state) == {"open0001"}
    later = NOW + timedelta(hours=2)
    assert state.retention.prune_plans(RETENTION, now=later).plan_ids == ["open0001"]


def test_prune_counts_age_from_the_last_change(state: State) -> None:
    # Approved late and applied five days ago: the record of that apply stays.
    stored_plan(state, "late0001", "done", age_days=200, changed_days=5)
    stored_plan(state, "cold0001", "done", age_days=200, changed_days=150)

    result = state.retention.prune_plans(RETENTION, now=NOW)
    assert (result.plan_ids, result.kept) == (["cold0001"], 1)
    assert state.retention.prune_plans(RETENTION, now=NOW + timedelta(days=86)).plan_ids == ["late0001"]


def test_prune_dry_run_reports_and_changes_nothing(file_state: State) -> None:
    for n, status in enumerate(ALL_STATUSES):
        stored_plan(file_state, f"dry{n:05d}", status, age_days=100)
    file_state.approvals.add("dry00000", Approval("approved", "alice", "cli"), at=NOW)
    before = plan_ids(file_state)

    dry = file_state.retention.prune_plans(RETENTION, now=NOW, dry_run=True)

    assert plan_ids(file_state) == before
    assert file_state.audit_log.events() == []
    real = file_state.retention.prune_plans(RETENTION, now=NOW)
    assert dry.dry_run and not real.dry_run
    assert (dry.plan_ids, dry.by_status, dry.items, dry.approvals, dry.bytes, dry.kept) == (
        real.plan_ids,
        real.by_status,
        real.items,
        real.approvals,
        real.bytes,
        real.kept,
    )


def test_prune_after_a_plan_records_only_when_it_removed_something(state: State) -> None:
    stored_plan(state, "auto0001", "done", age_days=10)
    state.retention.prune_plans(RETENTION, now=NOW, record_empty=False, trigger="after plan x")
    assert state.audit_log.events() == []
    stored_plan(state, "auto0002", "done", age_days=100)
    state.retention.prune_plans(RETENTION, now=NOW, record_empty=False, trigger="after plan y")
    [event] = state.audit_log.events()
    assert event.details["trigger"] == "after plan y"
    assert event.details["plan_ids"] == ["auto0002"]
    with pytest.raises(ValueError):
        state.retention.prune_plans(timedelta(days=-1), now=NOW)


def test_a_removed_plan_is_reported_as_removed_by_retention(state: State) -> None:
    stored_plan(state, "abcd1111", "done", age_days=100)
    stored_plan(state, "abcd2222", "rejected", age_days=100)
    stored_plan(state, "abce3333", "done", age_days=10)
    state.audit_log.record("plan.created", plan_id="abcd1111")
    state.retention.prune_plans(RETENTION, now=NOW)

    with pytest.raises(PlanRemoved) as caught:
        state.plans.get("abcd1111")
    error = caught.value
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert error.plan_id == "abcd1111" and error.removed_at is not None
    assert "plan abcd1111 was removed from the state DB by plan retention on " in error.message
    assert "plan_retention" in error.message
    assert "`regprune history --plan abcd1111`" in error.message
    with pytest.raises(PlanRemoved, match="abcd2222"):
        state.plans.get("abcd2")  # a unique prefix of a removed plan
    with pytest.raises(UsageError, match=r"ambiguous .*abcd1111, abcd2222"):
        state.plans.get("abcd")
    assert state.plans.get("abce").id == "abce3333"  # stored plans are found as before
    with pytest.raises(UsageError, match="no plan 'ffff0000'") as unknown:
        state.plans.get("ffff0000")
    assert not isinstance(unknown.value, PlanRemoved)
    # Its events stay reachable by id or prefix.
    assert state.plans.id_of("abcd1") == "abcd1111"
    assert state.plans.id_of("abce") == "abce3333"
    assert [e.event for e in state.audit_log.events(plan_id="abcd1111")] == ["plan.created"]
    with pytest.raises(UsageError, match="no plan"):
        state.plans.id_of("ffff")


def test_prune_racing_an_approval_never_loses_an_approved_plan(db_path: Path) -> None:
    """Retention and an approver race for an old pending plan: either the plan is gone
    and the approval failed, or the approval won and the plan stays."""
    states = [State(db_path) for _ in range(2)]
    try:
        for round_ in range(20):
            plan_id = f"race{round_:04d}"
            stored_plan(states[0], plan_id, "pending", age_days=100)

            def act(i: int, plan_id: str = plan_id) -> Any:
                if i == 0:
                    return states[0].retention.prune_plans(RETENTION, now=NOW).plan_ids
                return states[1].plans.set_status(plan_id, "approved", expected=["pending"])

            removed, approved = race(2, act)
            assert not isinstance(removed, Exception) and not isinstance(approved, Exception)
            if approved:
                assert removed == [] and states[1].plans.get(plan_id).status == "approved"
            else:
                assert removed == [plan_id] and plan_id not in plan_ids(states[1])
            states[0].plans.set_status(plan_id, "done", expected=["approved"])  # tidy up
            states[0].retention.prune_plans(RETENTION, now=NOW)
    finally:
        for st in states:
            st.close()


def big_plan(plan_id: str, created_at: datetime) -> Plan:
    """A plan with a large keep list, like one of a registry with thousands of tags."""
    keep = [
        KeepItem(
            repository=f"team/app-{n % 50}",
            digest=sha(100_000 + n),
            tags=(f"main-{n:08x}", f"build-{n}"),
            created="2026-02-28T00:00:00Z",
            reasons=("among the 5 newest", f"tag matches ^main-{n:08x}$"),
        )
        for n in range(1500)
    ]
    return make_plan(plan_id, created_at=created_at, keep=keep)


def test_vacuum_gives_the_freed_space_back(db_path: Path) -> None:
    with State(db_path) as st:
        for n in range(12):
            st.plans.save(big_plan(f"big{n:05d}", NOW - timedelta(days=200)))
        st.db.conn.execute("UPDATE plans SET status = 'done', updated_at = created_at")
        st.db.conn.commit()
        st.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = st.file_size()
        result = st.retention.prune_plans(RETENTION, now=NOW)
        assert result.plans == 12 and result.bytes > 2_000_000
        assert st.file_size() >= full  # pages are only freed for reuse

        with (
            State(db_path) as other,
            other.locks.hold("local", purpose="apply of plan x"),
            pytest.raises(LockHeld, match="not vacuuming the state DB while registry 'local'"),
        ):
            st.retention.vacuum()

        before, after = st.retention.vacuum(actor="ops")
        assert before >= full and after < full / 4
        # The rebuild did not stay in the write-ahead log (only the audit event is there).
        assert os.path.getsize(f"{db_path}-wal") < full / 20
        event = st.audit_log.events(limit=1)[0]
        assert (event.event, event.actor) == ("state.vacuumed", "ops")
        assert event.details == {"bytes_before": before, "bytes_after": after}
    with State(":memory:") as memory:
        assert memory.retention.vacuum() == (0, 0)


# -- threads sharing one State ------------------------------------------------------


def test_one_state_shared_by_threads(file_state: State) -> None:
    file_state.plans.save(make_plan("thrd0001"))

    def work(i: int) -> int:
        file_state.audit_log.record("tick", details={"i": i})
        file_state.digests.put_facts([facts(i)])
        file_state.digests.touch_first_seen("local", "app", [sha(i)], T0)
        return len(file_state.digests.get_facts([sha(i)]))

    assert race(8, work) == [1] * 8
    assert len(file_state.audit_log.events(limit=100)) == 8


def test_lock_left_by_an_earlier_life_of_this_pid_is_stale(tmp_path):
    """A restarted container runs as pid 1 on the same hostname again: the lock its previous
    life left behind carries our pid but a token this process never held."""
    path = tmp_path / "state.db"
    with State(path) as state:
        with state.locks.hold("local", purpose="apply of plan 1234abcd"):
            pass
        state.db.conn.execute(
            "INSERT INTO locks (name, token, hostname, pid, purpose, acquired_at, heartbeat_at)"
            " VALUES ('local', 'from-a-previous-life', ?, ?, 'apply', ?, ?)",
            (socket.gethostname(), os.getpid(), _now_text(), _now_text()),
        )
        state.db.conn.commit()
        with state.locks.hold("local", purpose="resumed apply"):
            assert state.locks.current()[0].purpose == "resumed apply"


def test_lock_held_by_another_state_object_of_this_process_is_busy(tmp_path):
    path = tmp_path / "state.db"
    with (
        State(path) as first,
        State(path) as second,
        first.locks.hold("local", purpose="bot thread"),
        pytest.raises(LockHeld, match="busy"),
        second.locks.hold("local", purpose="another thread"),
    ):
        pass


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


def test_m002_adds_the_lock_child_to_a_db_holding_a_lock() -> None:
    """A DB from before m002, with a lock held, migrates: the lock keeps its holder and
    gains an empty child (so it is judged by its holder, as before)."""
    db = sqlite_utils.Database(memory=True)
    migrations.pending(db)[0].fn(db)  # m001 only
    db.table("locks").insert(
        {"name": "main", "token": "t", "hostname": "h", "pid": 1, "purpose": "gc",
         "acquired_at": "2026-01-01", "heartbeat_at": "2026-01-01"}
    )  # fmt: skip
    m002 = next(m for m in migrations.pending(db) if m.name == "m002_lock_child")
    m002.fn(db)
    [row] = list(db.table("locks").rows)
    assert row["token"] == "t" and row["child_pid"] is None and row["child_started"] is None
