"""The state DB's schema, versioned with ``sqlite_utils.migrations.Migrations``.

Add a new ``@migrations()`` function ``mNNN_what(db)`` at the end; never edit an
applied one (existing DBs have run it already).
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ..lifecycle import ItemStatus

migrations = Migrations("regprune")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """Digest cache, first-seen times, plans, items, approvals, audit log, gc runs, locks."""
    db.table("digests").create(
        {"digest": str, "media_type": str, "size": int, "facts": str, "cached_at": str},
        pk="digest",
        not_null={"facts", "cached_at"},
    )
    db.table("first_seen").create(
        {"registry": str, "repository": str, "digest": str, "first_seen": str},
        pk=("registry", "repository", "digest"),
        not_null={"first_seen"},
    )
    db.table("plans").create(
        {
            "id": str,
            "registry": str,
            "registry_url": str,
            "policy": str,
            "created_at": str,
            "status": str,
            "content": str,
            "content_hash": str,
            "requested_by": str,
            "expires_at": str,
            "slack_channel": str,
            "slack_ts": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"registry", "policy", "created_at", "status", "content", "content_hash"},
    )
    db.table("plans").create_index(["registry", "created_at"])
    db.table("plans").create_index(["created_at"])
    db.table("plan_items").create(
        {
            "plan_id": str,
            "seq": int,
            "repository": str,
            "digest": str,
            "role": str,
            "status": str,
            "reason": str,
            "updated_at": str,
        },
        pk=("plan_id", "seq"),
        foreign_keys=[("plan_id", "plans", "id")],
        not_null={"repository", "digest", "role", "status"},
        defaults={"status": str(ItemStatus.PENDING), "reason": ""},
    )
    db.table("approvals").create(
        {
            "plan_id": str,
            "by": str,
            "decision": str,
            "method": str,
            "note": str,
            "team": str,
            "at": str,
        },
        # One row per person and decision: a double click records nothing new.
        pk=("plan_id", "by", "decision"),
        foreign_keys=[("plan_id", "plans", "id")],
        not_null={"method", "at"},
    )
    # No foreign key on plan_id: audit events outlive plans and may name plans
    # that were never stored (a refused plan, a typo).
    db.table("audit").create(
        {
            "id": int,
            "at": str,
            "event": str,
            "registry": str,
            "plan_id": str,
            "actor": str,
            "details": str,
        },
        pk="id",
        not_null={"at", "event"},
    )
    db.table("audit").create_index(["at"])
    db.table("audit").create_index(["registry", "at"])
    db.table("audit").create_index(["plan_id", "at"])
    db.table("gc_runs").create(
        {
            "id": int,
            "registry": str,
            "dry_run": int,
            "command": str,
            "exit_code": int,
            "ok": int,
            "output": str,
            "started_at": str,
            "finished_at": str,
            "bytes_before": int,
            "bytes_after": int,
            "bytes_freed": int,
            "warnings": str,
        },
        pk="id",
        not_null={"registry", "started_at", "finished_at"},
    )
    db.table("gc_runs").create_index(["registry", "started_at"])
    db.table("locks").create(
        {
            "name": str,
            "token": str,
            "hostname": str,
            "pid": int,
            "purpose": str,
            "acquired_at": str,
            "heartbeat_at": str,
        },
        # The primary key is what makes acquiring atomic: only one INSERT can win.
        pk="name",
        not_null={"token", "hostname", "pid", "acquired_at", "heartbeat_at"},
    )


@migrations()
def m002_lock_child(db: sqlite_utils.Database) -> None:
    """A lock records the child process (a GC command) its holder runs: while that
    child lives the lock is not stale, even if its holder was SIGKILLed."""
    db.table("locks").add_column("child_pid", int)
    db.table("locks").add_column("child_started", str)


# The front end whose message columns m001 created on ``plans``: the schema's only
# front-end name, kept so that DBs made before plan_messages keep their posted plans.
_M001_FRONT_END = "slack"
_M001_COLUMNS = ("slack_channel", "slack_ts")


@migrations()
def m003_plan_messages(db: sqlite_utils.Database) -> None:
    """Message references in one generic table (front end, plan, channel, reference,
    created) instead of a pair of columns per front end on ``plans``; the messages m001's
    columns recorded move into it, and the columns go."""
    db.table("plan_messages").create(
        {
            "front_end": str,
            "plan_id": str,
            "channel": str,
            "reference": str,
            "created": str,
        },
        # One message per front end, plan and channel: posting twice records nothing new.
        pk=("front_end", "plan_id", "channel"),
        foreign_keys=[("plan_id", "plans", "id")],
        not_null={"reference", "created"},
    )
    db.table("plan_messages").create_index(["front_end", "channel", "reference"], unique=True)
    db.table("plan_messages").create_index(["plan_id"])
    channel, reference = _M001_COLUMNS
    db.execute(
        "INSERT OR IGNORE INTO plan_messages (front_end, plan_id, channel, reference, created)"
        f" SELECT ?, id, {channel}, {reference}, COALESCE(updated_at, created_at) FROM plans"
        f" WHERE {channel} IS NOT NULL AND {channel} != ''"
        f" AND {reference} IS NOT NULL AND {reference} != ''",
        [_M001_FRONT_END],
    )
    for column in _M001_COLUMNS:
        db.execute(f"ALTER TABLE plans DROP COLUMN {column}")


@migrations()
def m004_usage(db: sqlite_utils.Database) -> None:
    """Image use from the registry's notifications (``regprune listen``): usage per
    digest, the event ids already recorded, and when the listener was listening."""
    db.table("usage").create(
        {
            "registry": str,
            "repository": str,
            "digest": str,
            "first_push": str,
            "last_pull": str,
            "last_pull_tag": str,
            "last_pull_agent": str,
            "pulls": int,
            "agents": str,
        },
        pk=("registry", "repository", "digest"),
        not_null={"pulls"},
        defaults={"pulls": 0},
    )
    db.table("usage_events").create(
        {"registry": str, "id": str, "received": str},
        # The key that makes a redelivered event a no-op.
        pk=("registry", "id"),
        not_null={"received"},
    )
    db.table("usage_events").create_index(["received"])
    db.table("usage_sessions").create(
        {
            "id": int,
            "registry": str,
            "started": str,
            "first_event": str,
            "heard": str,
            "ended": str,
            # The listener's settings for this session (seconds): how often it says it
            # is alive, and how long a gap before it the registry's retries bridge.
            "heartbeat": float,
            "max_gap": float,
        },
        pk="id",
        not_null={"registry", "started", "heard"},
    )
    db.table("usage_sessions").create_index(["registry", "started"])


@migrations()
def m005_gc_eligible(db: sqlite_utils.Database) -> None:
    """A GC run records what the collector said is eligible for deletion (JSON of
    ``GcEligible``; NULL when it printed no counts, and for runs stored before)."""
    db.table("gc_runs").add_column("eligible", str)
