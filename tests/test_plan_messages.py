"""Message references (``state.messages``): one generic table for every front end,
and the migration that moved the Slack columns of ``plans`` into it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlite_utils
from sqlite_utils.migrations import Migrations

from regprune.bots.slack.messages import slack_fields
from regprune.errors import UsageError
from regprune.state import State, migrations
from regprune.state._codec import canonical, content_hash, to_db
from regprune.state.schema import m001_initial, m002_lock_child

from .test_state import NOW, RETENTION, T0, make_plan, stored_plan


def test_add_get_find(tmp_path: Path) -> None:
    with State(tmp_path / "s.db") as state:
        state.plans.save(make_plan("msg00001"))
        assert state.messages.get("chat", "msg00001") is None

        assert state.messages.add("chat", "msg00001", "ops", "m-1", at=T0) is True
        # The first post wins: a racing second post changes nothing.
        assert state.messages.add("chat", "msg00001", "ops", "m-2") is False
        # Another front end, or another channel, is another message.
        assert state.messages.add("slack", "msg00001", "C1", "1700.1", at=T0 + timedelta(1))
        assert state.messages.add("chat", "msg00001", "dev", "m-3", at=T0 + timedelta(2))

        first = state.messages.get("chat", "msg00001")
        assert first is not None
        assert (first.front_end, first.plan_id, first.channel, first.reference, first.created) == (
            "chat", "msg00001", "ops", "m-1", T0,
        )  # fmt: skip
        assert state.messages.find("chat", "ops", "m-1") == first
        assert state.messages.find("chat", "ops", "m-2") is None
        assert state.messages.find("slack", "ops", "m-1") is None
        assert [m.reference for m in state.messages.of_plan("msg00001")] == ["m-1", "1700.1", "m-3"]
        assert [m.reference for m in state.messages.of_plan("msg00001", "chat")] == ["m-1", "m-3"]


@pytest.mark.parametrize(
    ("front_end", "channel", "reference"), [("", "c", "r"), ("f", "", "r"), ("f", "c", "")]
)
def test_empty_parts_are_refused(tmp_path: Path, front_end: str, channel: str, reference: str):
    with State(tmp_path / "s.db") as state:
        state.plans.save(make_plan("msg00001"))
        with pytest.raises(ValueError, match="a message reference needs"):
            state.messages.add(front_end, "msg00001", channel, reference)
        assert state.messages.of_plan("msg00001") == []


def test_a_message_needs_a_stored_plan(tmp_path: Path) -> None:
    with State(tmp_path / "s.db") as state, pytest.raises(UsageError, match="no plan 'nothere1'"):
        state.messages.add("chat", "nothere1", "ops", "m-1")


def test_retention_removes_a_plans_messages_with_it(tmp_path: Path) -> None:
    with State(tmp_path / "s.db") as state:
        for plan_id, age in (("oldplan1", 200), ("newplan1", 1)):
            stored_plan(state, plan_id, "done", age_days=age)
            state.messages.add("chat", plan_id, "ops", f"m-{plan_id}")

        result = state.retention.prune_plans(RETENTION, now=NOW)

        assert result.plan_ids == ["oldplan1"]
        assert state.messages.of_plan("oldplan1") == []
        assert state.messages.get("chat", "newplan1") is not None
        count = state.db.execute("SELECT COUNT(*) FROM plan_messages").fetchone()[0]
        assert count == 1


# -- the migration, on a DB made by the old schema -------------------------------------


def old_schema_db(path: Path) -> sqlite_utils.Database:
    """A state DB as regprune made it before plan_messages: m001 and m002 only."""
    old = Migrations("regprune")  # the same migration set name as today's
    old()(m001_initial)
    old()(m002_lock_child)
    db = sqlite_utils.Database(path)
    old.apply(db)
    return db


def store_old_plan(db: sqlite_utils.Database, plan_id: str, channel: str | None, ts: str | None):
    """A plan as the old ``save_plan`` and ``set_plan_fields(slack_channel=, slack_ts=)`` left it."""
    plan = make_plan(plan_id)
    content = plan.content()
    db.execute(
        "INSERT INTO plans (id, registry, registry_url, policy, created_at, status, content,"
        " content_hash, requested_by, expires_at, slack_channel, slack_ts, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
        [
            plan.id, plan.registry, plan.registry_url, plan.policy, to_db(plan.created_at),
            canonical(content), content_hash(content), "slack:U1", to_db(T0 + timedelta(1)),
            channel, ts, to_db(T0 + timedelta(hours=1)),
        ],
    )  # fmt: skip
    db.conn.executemany(
        "INSERT INTO plan_items (plan_id, seq, repository, digest, role, status, reason,"
        " updated_at) VALUES (?, ?, ?, ?, ?, 'pending', '', ?)",
        [(plan.id, i.seq, i.repository, i.digest, i.role, to_db(T0)) for i in plan.delete],
    )
    db.conn.commit()


def test_old_state_dbs_keep_their_posted_plans(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = old_schema_db(path)
    assert {"slack_channel", "slack_ts"} <= set(db.table("plans").columns_dict)
    assert "plan_messages" not in db.table_names()
    store_old_plan(db, "posted01", "C0123PRUNE", "1700000000.000100")
    store_old_plan(db, "unposted", None, None)
    store_old_plan(db, "halfway1", "C0123PRUNE", None)  # a channel and no message: not posted
    db.close()

    with State(path) as state:  # opening migrates
        assert migrations.pending(state.db) == []
        columns = set(state.db.table("plans").columns_dict)
        assert not {"slack_channel", "slack_ts"} & columns
        message = state.messages.get("slack", "posted01")
        assert message is not None
        assert (message.channel, message.reference) == ("C0123PRUNE", "1700000000.000100")
        assert message.created == T0 + timedelta(hours=1)  # when it was posted (updated_at)
        assert state.messages.get("slack", "unposted") is None
        assert state.messages.get("slack", "halfway1") is None
        # The Slack bot finds the message it posted before the upgrade.
        fields = slack_fields(state, "posted01")
        assert (fields.slack_channel, fields.slack_ts) == ("C0123PRUNE", "1700000000.000100")
        assert fields.requested_by == "slack:U1"
        # The plans themselves are intact: content, hash and side fields.
        plan = state.plans.get("posted01")
        assert plan.content_hash == content_hash(make_plan("posted01").content())
        assert plan.status == "pending"
        assert state.plans.fields("unposted").expires_at == T0 + timedelta(1)
        assert state.db.execute("PRAGMA foreign_key_check").fetchall() == []
