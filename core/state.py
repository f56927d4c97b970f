"""The state DB: digest cache, plans and their items, approvals, audit log, gc runs, locks.

One SQLite file (sqlite-utils on top of ``sqlite3``) shared by every front end: a CLI
``apply`` and a Slack bot thread may open it at the same time, so it runs in WAL mode
with a busy timeout, and every write that depends on what is already stored is a
single conditional statement (compare-and-set) or runs inside ``BEGIN IMMEDIATE``.

The schema is versioned with ``sqlite_utils.migrations.Migrations``: add a new
``@migrations()`` function ``mNNN_what(db)`` at the end, never edit an applied one.

Datetimes are stored as ISO-8601 UTC strings with microseconds (so they sort as
text) and returned as timezone-aware datetimes.  Naive datetimes passed in are
taken to be UTC.

Plans are the only thing that grows without bound (a plan of a large registry is
megabytes), so ``prune_plans`` removes old ones by an allow-list of statuses: a plan
with work left (``approved``, ``applying``, ``failed``) is never removed.  The audit
log, digest cache and first-seen times are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .errors import LockHeld, RegpruneError, UsageError
from .models import (
    Approval,
    GcResult,
    ItemStatus,
    KeepItem,
    ManifestFacts,
    Plan,
    PlanItem,
    PlanStatus,
    PlanSummary,
)

__all__ = [
    "BUSY_TIMEOUT",
    "FINAL_PLAN_STATUSES",
    "PRUNED_EVENT",
    "UNFINISHED_PLAN_STATUSES",
    "PlanRemoved",
    "PruneResult",
    "State",
    "StateBusy",
    "content_hash",
    "migrations",
]

BUSY_TIMEOUT = 10.0
"""Seconds a connection waits for another writer before giving up with "database is locked"."""

# Well under SQLite's limit on bound variables (999 before 3.32), and large enough
# that 2,000 digests cost four queries.
_CHUNK = 500

_PLAN_STATUSES = frozenset(PlanStatus)
_ITEM_STATUSES = frozenset(ItemStatus)
_PLAN_SIDE_FIELDS = ("requested_by", "expires_at", "slack_channel", "slack_ts")
_MIN_PREFIX = 4

FINAL_PLAN_STATUSES = ("done", "rejected", "expired", "cancelled")
"""Plans nothing more can happen to: removed once older than the retention."""
UNFINISHED_PLAN_STATUSES = ("approved", "applying", "failed")
"""Plans with work left that ``apply`` resumes: never removed, whatever their age."""
# "pending" is the third kind: removed once older than the retention (nobody approved
# it), unless it is still open for approval (its expires_at lies ahead).  Any status
# named nowhere here is kept: removal is an allow-list.

PRUNED_EVENT = "state.pruned"
VACUUMED_EVENT = "state.vacuumed"

migrations = Migrations("regprune")
log = logging.getLogger(__name__)


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
        defaults={"status": "pending", "reason": ""},
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


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a plan's content (``Plan.content()``)."""
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


def _canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _to_db(dt: datetime) -> str:
    """A datetime as a sortable ISO-8601 UTC string (naive means UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _from_db(text: str | None) -> datetime | None:
    return _parse(text) if text else None


def _parse(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(items: Iterable[str]) -> list[str]:
    # dict keeps the first-seen order, which keeps queries deterministic.
    return list(dict.fromkeys(items))


# Tokens of the locks held by any State object of this process (threads share a pid).
_PROCESS_TOKENS: set[str] = set()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    # A zombie has exited; it only waits to be reaped, which a container's pid 1 may
    # never do for an orphan (a GC child whose regprune was SIGKILLed).
    return _process_state(pid) != "Z"


def _process_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat (``Z`` for a zombie), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc), or None where unknown.

    Stored with a child's pid so a recycled pid is not taken for the child.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after ')'.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _child_alive(holder: dict[str, Any]) -> bool:
    """Whether the child process a lock holder recorded still runs (on this host)."""
    pid = holder.get("child_pid")
    if not pid or holder["hostname"] != socket.gethostname() or not _pid_alive(pid):
        return False
    started = holder.get("child_started")
    return started is None or _process_start(pid) in (None, started)


NOTICE_AFTER = 1.0
"""Seconds a write waits for another process before regprune says it is waiting."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


class StateBusy(RegpruneError):
    """Another process held the state DB's write lock for longer than BUSY_TIMEOUT."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the state DB {path} stayed locked by another process for {BUSY_TIMEOUT:g}s; "
            "nothing was written: try again when it is done (a VACUUM or a long write; "
            f"`fuser {path}` shows who has it open)"
        )


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def create_private(path: Path) -> None:
    """Create the state DB file, and the directories it needs, private to the user.

    The DB holds plans, the audit log and who approved what; with umask 022 SQLite
    would create it world-readable.  Its ``-wal``, ``-shm`` and ``-journal`` files
    get the DB file's mode from SQLite, so a private DB file makes them private too.
    Directories and a file that already exist are left as they are: the user chose
    their modes (a group-shared state directory, for one).
    """
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            directory.mkdir(mode=PRIVATE_DIR)
            os.chmod(directory, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)  # exactly 0600, whatever the umask removed
    finally:
        os.close(fd)


class PlanRemoved(UsageError):
    """The plan asked for was stored once and removed by plan retention (exit code 2)."""

    def __init__(self, plan_id: str, removed_at: datetime | None) -> None:
        when = f" on {removed_at:%Y-%m-%d %H:%M} UTC" if removed_at else ""
        super().__init__(
            f"plan {plan_id} was removed from the state DB by plan retention{when}: plans"
            " that finished or were never approved are removed once older than"
            " [state] plan_retention (default 90d); its audit events remain, see"
            f" `regprune history --plan {plan_id}`"
        )
        self.plan_id = plan_id
        self.removed_at = removed_at


@dataclass
class PruneResult:
    """What ``State.prune_plans`` removed (or, with ``dry_run``, would remove)."""

    older_than: timedelta
    cutoff: datetime
    dry_run: bool
    plan_ids: list[str] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    items: int = 0
    approvals: int = 0
    bytes: int = 0
    """Size of the removed plans' stored content (what the plans table shrinks by)."""
    kept: int = 0
    """Plans older than the cutoff kept because work is left or approval is still open."""

    @property
    def plans(self) -> int:
        return len(self.plan_ids)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than_seconds": int(self.older_than.total_seconds()),
            "cutoff": self.cutoff.isoformat(),
            "plans": self.plans,
            "items": self.items,
            "approvals": self.approvals,
            "bytes": self.bytes,
            "by_status": dict(self.by_status),
            "kept": self.kept,
            "plan_ids": list(self.plan_ids),
        }


# Which plans prune_plans removes.  created_at is indexed, so the first condition
# keeps this cheap; updated_at (never earlier than created_at) measures age from the
# last change, so a plan approved late and applied yesterday is not removed today.
_PRUNABLE = (
    "created_at < :cutoff AND COALESCE(updated_at, created_at) < :cutoff"
    " AND (status IN ({final})"
    " OR (status = 'pending' AND (expires_at IS NULL OR expires_at <= :now)))"
).format(final=", ".join(f"'{status}'" for status in FINAL_PLAN_STATUSES))


class State:
    """regprune's state DB: one SQLite file, opened and migrated on construction.

    ``State(":memory:")`` gives a private in-memory DB (tests).  For a file, parent
    directories are created, WAL mode and a busy timeout are set, so processes and
    threads may share the file: each should open its own ``State`` (its own
    connection), which is how concurrent writers are serialised by SQLite.  A single
    ``State`` may still be used from several threads (the connection is opened with
    ``check_same_thread=False`` and every call holds an internal lock), but calls then
    run one at a time.

    Every public write commits before it returns, so outcomes are durable as they
    happen; nothing is left in an open transaction between calls.
    """

    path: str
    db: sqlite_utils.Database

    def __init__(self, path: str | Path, *, notify: Callable[[str], None] | None = None) -> None:
        self.path = str(path)
        # Told once when a write has to wait for another process (the CLI prints it).
        self._notify = notify or log.warning
        self._mutex = threading.RLock()
        self._held: dict[str, str] = {}  # lock name -> our token
        self._stops: dict[str, threading.Event] = {}  # lock name -> stops its heartbeat thread
        self._closed = False
        memory = self.path == ":memory:"
        if not memory:
            create_private(Path(self.path))
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            self.db.execute("PRAGMA foreign_keys = ON")
            if not memory:
                self.db.enable_wal()
                # WAL makes NORMAL safe against corruption; a crash loses at most the
                # last commits, never consistency.
                self.db.execute("PRAGMA synchronous = NORMAL")
            if migrations.pending(self.db):
                # IMMEDIATE so two processes opening a fresh file do not both migrate.
                with self._write():
                    migrations.apply(self.db)
        except BaseException:
            conn.close()
            raise

    # -- connection ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection.  Locks still held by this object are released first."""
        for event in list(self._stops.values()):
            event.set()
        with self._mutex:
            if self._closed:
                return
            for name in list(self._held):
                with contextlib.suppress(sqlite3.Error):
                    self._release(name)
            self._closed = True
            self.db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"State({self.path!r})"

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front, so a
        read-then-write inside cannot fail half-way with SQLITE_BUSY in WAL mode."""
        with self._mutex:
            conn = self.db.conn
            self._begin(conn)
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE; if another process holds the write lock for more than
        ``NOTICE_AFTER`` seconds, say so, wait up to ``BUSY_TIMEOUT`` in all, then raise
        ``StateBusy`` (one line) instead of sqlite's "database is locked"."""
        conn.execute(f"PRAGMA busy_timeout = {int(NOTICE_AFTER * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        self._notify(
            f"waiting for the state DB {self.path}: another process is writing to it "
            f"(up to {BUSY_TIMEOUT:g}s)"
        )
        conn.execute(f"PRAGMA busy_timeout = {int((BUSY_TIMEOUT - NOTICE_AFTER) * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise StateBusy(self.path) from None
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._mutex:
            cursor = self.db.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- digest cache -------------------------------------------------------------

    def get_facts(self, digests: Iterable[str]) -> dict[str, ManifestFacts]:
        """Cached facts for those of ``digests`` that are known (one query per 500)."""
        wanted = _unique(digests)
        found: dict[str, ManifestFacts] = {}
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT digest, facts FROM digests WHERE digest IN ({marks})", chunk
            ):
                try:
                    facts = ManifestFacts.from_json(row["facts"])
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue  # a damaged cache row is a cache miss: fetched again, then replaced
                if facts.digest == row["digest"]:
                    found[row["digest"]] = facts
        return found

    def put_facts(self, facts: Iterable[ManifestFacts]) -> None:
        """Cache facts by digest, all in one transaction."""
        now = _to_db(_now())
        rows = [(f.digest, f.media_type, f.size, f.to_json(), now) for f in facts]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO digests (digest, media_type, size, facts, cached_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (digest) DO UPDATE SET media_type = excluded.media_type,"
                " size = excluded.size, facts = excluded.facts, cached_at = excluded.cached_at",
                rows,
            )

    def touch_first_seen(
        self, registry: str, repository: str, digests: Iterable[str], now: datetime
    ) -> dict[str, datetime]:
        """Record ``now`` as first-seen time of digests never seen in this repository;
        return the first-seen time of every digest passed."""
        wanted = _unique(digests)
        if not wanted:
            return {}
        stamp = _to_db(now)
        result: dict[str, datetime] = {}
        with self._write() as conn:
            # OR IGNORE keeps the earliest time: a digest's first sighting never moves.
            conn.executemany(
                "INSERT OR IGNORE INTO first_seen (registry, repository, digest, first_seen)"
                " VALUES (?, ?, ?, ?)",
                [(registry, repository, digest, stamp) for digest in wanted],
            )
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                cursor = conn.execute(
                    "SELECT digest, first_seen FROM first_seen WHERE registry = ?"
                    f" AND repository = ? AND digest IN ({marks})",
                    [registry, repository, *chunk],
                )
                for digest, first_seen in cursor.fetchall():
                    result[digest] = _parse(first_seen)
        return result

    # -- plans --------------------------------------------------------------------

    def save_plan(self, plan: Plan) -> None:
        """Store a plan and one ``pending`` item row per delete item.

        Sets ``plan.content_hash`` when empty; a hash given must match the content.
        Raises ``RegpruneError`` if a plan with that id exists already.
        """
        if plan.created_at.tzinfo is None:
            # created_at is part of the hashed content: it must read the same everywhere.
            raise ValueError("plan.created_at must be timezone-aware")
        content = plan.content()
        digest = content_hash(content)
        if not plan.content_hash:
            plan.content_hash = digest
        elif plan.content_hash != digest:
            raise RegpruneError(
                f"plan {plan.id}: content_hash {plan.content_hash} does not match its content"
            )
        if plan.status not in _PLAN_STATUSES:
            raise ValueError(f"unknown plan status {plan.status!r}")
        now = _to_db(_now())
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO plans (id, registry, registry_url, policy, created_at, status,"
                    " content, content_hash, requested_by, expires_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        plan.id,
                        plan.registry,
                        plan.registry_url,
                        plan.policy,
                        _to_db(plan.created_at),
                        plan.status,
                        _canonical(content),
                        plan.content_hash,
                        plan.requested_by,
                        _to_db(plan.expires_at) if plan.expires_at else None,
                        now,
                    ),
                )
                conn.executemany(
                    "INSERT INTO plan_items (plan_id, seq, repository, digest, role, status,"
                    " reason, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', '', ?)",
                    [
                        (plan.id, item.seq, item.repository, item.digest, item.role, now)
                        for item in plan.delete
                    ],
                )
        except sqlite3.IntegrityError as exc:
            if self._plan_row(plan.id) is not None:
                raise RegpruneError(f"plan {plan.id} already exists") from exc
            raise RegpruneError(f"plan {plan.id} cannot be stored: {exc}") from exc

    def _plan_row(self, plan_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM plans WHERE id = ?", (plan_id,))
        return rows[0] if rows else None

    def _resolve(self, plan_id: str) -> dict[str, Any]:
        """The plan row for an exact id or a unique prefix of at least 4 characters."""
        row = self._plan_row(plan_id)
        if row is not None:
            return row
        if len(plan_id) < _MIN_PREFIX:
            raise UsageError(
                f"no plan '{plan_id}'; give at least {_MIN_PREFIX} characters of its id,"
                " list plans with `regprune history`"
            )
        # substr, not LIKE: exact and case-sensitive, no wildcards to escape.
        rows = self._rows(
            "SELECT * FROM plans WHERE substr(id, 1, ?) = ? ORDER BY created_at DESC LIMIT 6",
            (len(plan_id), plan_id),
        )
        if len(rows) > 1:
            self._ambiguous(plan_id, [r["id"] for r in rows])
        if rows:
            return rows[0]
        removed = self._removed_plans(plan_id)
        if len(removed) > 1:
            self._ambiguous(plan_id, sorted(removed))
        if removed:
            raise PlanRemoved(*next(iter(removed.items())))
        raise UsageError(f"no plan '{plan_id}'; list plans with `regprune history`")

    @staticmethod
    def _ambiguous(plan_id: str, ids: Sequence[str]) -> None:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise UsageError(
            f"plan id '{plan_id}' is ambiguous (matches {shown}); give more characters"
        )

    def _removed_plans(self, plan_id: str) -> dict[str, datetime | None]:
        """``{id: removed_at}`` of plans removed by retention whose id is ``plan_id`` or
        starts with it, from the ``state.pruned`` audit events (only asked when no
        stored plan matches, so the scan of those events costs nothing in normal use)."""
        found: dict[str, datetime | None] = {}
        for row in self._rows(
            "SELECT at, details FROM audit WHERE event = ? AND instr(details, ?) > 0"
            " ORDER BY at, id",
            (PRUNED_EVENT, json.dumps(plan_id)[:-1]),  # '"<prefix>' inside the JSON list
        ):
            try:
                ids = json.loads(row["details"]).get("plan_ids") or []
            except (ValueError, AttributeError):
                continue
            for removed_id in ids:
                if isinstance(removed_id, str) and removed_id.startswith(plan_id):
                    found.setdefault(removed_id, _from_db(row["at"]))
        return found

    def plan_id_of(self, plan_id: str) -> str:
        """The full id of a stored plan, or of one removed by retention (its audit events
        remain), given its id or a unique prefix; ``UsageError`` otherwise."""
        try:
            return str(self._resolve(plan_id)["id"])
        except PlanRemoved as removed:
            return removed.plan_id

    @staticmethod
    def _plan_from_row(row: dict[str, Any]) -> Plan:
        content = json.loads(row["content"])
        return Plan(
            id=row["id"],
            registry=content["registry"],
            registry_url=content["registry_url"],
            policy=content["policy"],
            created_at=datetime.fromisoformat(content["created_at"]),
            delete=[PlanItem.from_dict(item) for item in content["delete"]],
            keep=[KeepItem.from_dict(item) for item in content["keep"]],
            summary=PlanSummary(**content["summary"]),
            approval=content["approval"],
            gc=content["gc"],
            content_hash=row["content_hash"],
            status=row["status"],
            requested_by=row["requested_by"] or "",
            expires_at=_from_db(row["expires_at"]),
            warnings=list(content.get("warnings", [])),
            keep_rules=content.get("keep_rules"),
        )

    def get_plan(self, plan_id: str) -> Plan:
        """The stored plan with that id or unique id prefix (>= 4 characters).

        Raises ``UsageError`` for an unknown or ambiguous id, and ``RegpruneError`` if
        the stored content no longer matches its hash (someone edited the DB).
        """
        row = self._resolve(plan_id)
        tampered = RegpruneError(
            f"plan {row['id']} was modified after it was stored (content hash mismatch);"
            " make a new plan"
        )
        try:
            content = json.loads(row["content"])
        except ValueError:
            raise tampered from None
        if content_hash(content) != row["content_hash"]:
            raise tampered
        plan = self._plan_from_row(row)
        # The item rows repeat what apply acts on; they must agree with the content too.
        stored = {
            (r["seq"], r["repository"], r["digest"], r["role"])
            for r in self._rows(
                "SELECT seq, repository, digest, role FROM plan_items WHERE plan_id = ?",
                (row["id"],),
            )
        }
        if stored != {(i.seq, i.repository, i.digest, i.role) for i in plan.delete}:
            raise tampered
        return plan

    def list_plans(
        self,
        *,
        limit: int = 50,
        registry: str | None = None,
        policy: str | None = None,
        status: str | None = None,
    ) -> list[Plan]:
        """Stored plans, newest first.  For display: hashes are not checked here,
        ``get_plan`` checks them before anything acts on a plan."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("registry", registry), ("policy", policy), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM plans"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [self._plan_from_row(row) for row in self._rows(sql, [*params, limit])]

    def set_plan_status(self, plan_id: str, status: str, *, expected: Iterable[str]) -> bool:
        """Move a plan to ``status`` only if its status is one of ``expected``.

        A single conditional UPDATE, so two processes racing (two approvers, an apply
        and an expiry) cannot both win.  Returns whether this call changed it.
        """
        if status not in _PLAN_STATUSES:
            raise ValueError(f"unknown plan status {status!r}")
        allowed = list(expected)
        if not allowed:
            return False
        marks = ",".join("?" * len(allowed))
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE plans SET status = ?, updated_at = ? WHERE id = ? AND status IN ({marks})",
                [status, _to_db(_now()), plan_id, *allowed],
            )
            return cursor.rowcount == 1

    def reopen_plan(self, plan_id: str, *, expected: Iterable[str]) -> bool:
        """Move a plan back to ``pending`` and void its approvals, in one transaction, if
        its status is one of ``expected``: an apply the registry refused before deleting
        anything needs a fresh approval.  The audit log keeps who approved it."""
        allowed = list(expected)
        if not allowed:
            return False
        marks = ",".join("?" * len(allowed))
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE plans SET status = 'pending', updated_at = ? WHERE id = ? AND status IN ({marks})",
                [_to_db(_now()), plan_id, *allowed],
            )
            if cursor.rowcount != 1:
                return False
            conn.execute("DELETE FROM approvals WHERE plan_id = ?", (plan_id,))
            return True

    def set_plan_fields(self, plan_id: str, **fields: Any) -> None:
        """Set side fields that are not part of the hashed content: ``requested_by``,
        ``expires_at`` (datetime or None), ``slack_channel``, ``slack_ts``."""
        unknown = set(fields) - set(_PLAN_SIDE_FIELDS)
        if unknown:
            raise ValueError(
                f"cannot set {', '.join(sorted(unknown))} on a stored plan;"
                f" settable: {', '.join(_PLAN_SIDE_FIELDS)}"
            )
        if not fields:
            return
        values = {
            key: (_to_db(value) if isinstance(value, datetime) else value)
            for key, value in fields.items()
        }
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE plans SET {assignments}, updated_at = ? WHERE id = ?",
                [*values.values(), _to_db(_now()), plan_id],
            )
            if cursor.rowcount != 1:
                raise UsageError(f"no plan '{plan_id}'; list plans with `regprune history`")

    def plan_fields(self, plan_id: str) -> dict[str, Any]:
        """The side fields of a plan (see ``set_plan_fields``); ``expires_at`` as datetime."""
        rows = self._rows(
            f"SELECT {', '.join(_PLAN_SIDE_FIELDS)} FROM plans WHERE id = ?", (plan_id,)
        )
        if not rows:
            raise UsageError(f"no plan '{plan_id}'; list plans with `regprune history`")
        fields = rows[0]
        fields["expires_at"] = _from_db(fields["expires_at"])
        return fields

    def item_statuses(self, plan_id: str) -> dict[int, tuple[str, str]]:
        """``{seq: (status, reason)}`` for every delete item of a plan."""
        rows = self._rows(
            "SELECT seq, status, reason FROM plan_items WHERE plan_id = ? ORDER BY seq",
            (plan_id,),
        )
        return {row["seq"]: (row["status"], row["reason"] or "") for row in rows}

    def set_item_status(self, plan_id: str, seq: int, status: str, reason: str = "") -> None:
        """Record one item's outcome, committed at once so an interrupted apply resumes."""
        if status not in _ITEM_STATUSES:
            raise ValueError(f"unknown item status {status!r}")
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE plan_items SET status = ?, reason = ?, updated_at = ?"
                " WHERE plan_id = ? AND seq = ?",
                (status, reason, _to_db(_now()), plan_id, seq),
            )
            if cursor.rowcount != 1:
                raise RegpruneError(f"plan {plan_id} has no item {seq}")

    # -- retention ----------------------------------------------------------------

    def prune_plans(
        self,
        older_than: timedelta,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        actor: str | None = None,
        trigger: str = "regprune state prune",
        record_empty: bool = True,
    ) -> PruneResult:
        """Remove stored plans older than ``older_than``, with their items and approvals.

        Removed: plans that finished (``done``, ``rejected``, ``expired``,
        ``cancelled``) and ``pending`` plans nobody approved, once both their creation
        and their last change are older than the cutoff; a pending plan still open for
        approval (``expires_at`` ahead) stays.  Never removed, whatever their age:
        ``approved``, ``applying`` and ``failed`` plans (``apply`` resumes them).

        Everything happens in one ``BEGIN IMMEDIATE`` transaction, together with the
        ``state.pruned`` audit event (counts and the removed ids), so a plan's status
        cannot change between the choice and the delete, and nothing is removed
        without its record.  The event is written unless ``dry_run``, or nothing was
        removed and ``record_empty`` is false (the automatic prune after each plan).
        The audit log, digest cache and first-seen times are never touched.
        """
        if older_than < timedelta(0):
            raise ValueError("older_than must not be negative")
        moment = now or _now()
        cutoff = moment - older_than
        params = {"cutoff": _to_db(cutoff), "now": _to_db(moment)}
        result = PruneResult(older_than=older_than, cutoff=cutoff, dry_run=dry_run)
        select = (
            "SELECT id, status, length(CAST(content AS BLOB)) AS size FROM plans"
            f" WHERE {_PRUNABLE} ORDER BY created_at, id"
        )
        # Everything prunable is older than the cutoff: the rest of those is kept.
        kept = "SELECT COUNT(*) FROM plans WHERE created_at < :cutoff"
        if dry_run:
            with self._mutex:
                self._choose(self.db.conn, select, kept, params, result, delete=False)
            return result
        with self._write() as conn:
            self._choose(conn, select, kept, params, result, delete=True)
            if result.plans or record_empty:
                conn.execute(
                    "INSERT INTO audit (at, event, registry, plan_id, actor, details)"
                    " VALUES (?, ?, NULL, NULL, ?, ?)",
                    (
                        _to_db(_now()),
                        PRUNED_EVENT,
                        actor,
                        json.dumps({**result.to_json_dict(), "trigger": trigger}, sort_keys=True),
                    ),
                )
        return result

    @staticmethod
    def _choose(
        conn: sqlite3.Connection,
        select: str,
        kept: str,
        params: dict[str, str],
        result: PruneResult,
        *,
        delete: bool,
    ) -> None:
        for plan_id, status, size in conn.execute(select, params).fetchall():
            result.plan_ids.append(plan_id)
            result.by_status[status] = result.by_status.get(status, 0) + 1
            result.bytes += size or 0
        result.kept = conn.execute(kept, {"cutoff": params["cutoff"]}).fetchone()[0] - len(
            result.plan_ids
        )
        for chunk in _chunks(result.plan_ids):
            marks = ",".join("?" * len(chunk))
            if not delete:
                result.items += conn.execute(
                    f"SELECT COUNT(*) FROM plan_items WHERE plan_id IN ({marks})", chunk
                ).fetchone()[0]
                result.approvals += conn.execute(
                    f"SELECT COUNT(*) FROM approvals WHERE plan_id IN ({marks})", chunk
                ).fetchone()[0]
                continue
            # Children first: the foreign keys are enforced.
            result.items += conn.execute(
                f"DELETE FROM plan_items WHERE plan_id IN ({marks})", chunk
            ).rowcount
            result.approvals += conn.execute(
                f"DELETE FROM approvals WHERE plan_id IN ({marks})", chunk
            ).rowcount
            conn.execute(f"DELETE FROM plans WHERE id IN ({marks})", chunk)

    def file_size(self) -> int:
        """Bytes the DB takes on disk: the file and its write-ahead log (0 in memory)."""
        if self.path == ":memory:":
            return 0
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total

    def check_idle(self) -> None:
        """Raise ``LockHeld`` while a live apply or gc holds a registry's lock."""
        busy = [lock for lock in self.locks() if not lock["stale"]]
        if busy:
            lock = busy[0]
            raise LockHeld(
                f"not vacuuming the state DB while registry '{lock['name']}' is busy"
                f" ({lock['purpose']} by {lock['hostname']}:{lock['pid']}); run --vacuum"
                " when no apply or gc runs"
            )

    def vacuum(self, *, actor: str | None = None) -> tuple[int, int]:
        """Rebuild the DB file to return the pages freed by removed plans to the disk;
        ``(bytes before, bytes after)``.  Also empties the write-ahead log, which the
        rebuild fills.  Needs free disk space about twice the DB's size, and holds the
        write lock for its whole run: refused while a live apply or gc lock is held."""
        self.check_idle()
        with self._mutex:
            before = self.file_size()
            try:
                self.db.conn.execute("VACUUM")
                if self.path != ":memory:":
                    self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:
                raise RegpruneError(f"VACUUM of the state DB {self.path} failed: {exc}") from None
            after = self.file_size()
        self.audit(
            VACUUMED_EVENT, actor=actor, details={"bytes_before": before, "bytes_after": after}
        )
        return before, after

    # -- approvals ----------------------------------------------------------------

    def add_approval(
        self,
        plan_id: str,
        approval: Approval,
        *,
        at: datetime | None = None,
        team: str | None = None,
    ) -> bool:
        """Record a decision; False if this person already recorded this decision."""
        try:
            with self._write() as conn:
                cursor = conn.execute(
                    'INSERT OR IGNORE INTO approvals (plan_id, "by", decision, method, note,'
                    " team, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        plan_id,
                        approval.by,
                        approval.decision,
                        approval.method,
                        approval.note,
                        team,
                        _to_db(at or _now()),
                    ),
                )
                return cursor.rowcount == 1
        except sqlite3.IntegrityError as exc:  # the foreign key: no such plan
            raise UsageError(f"no plan '{plan_id}'; list plans with `regprune history`") from exc

    def approvals(self, plan_id: str) -> list[dict[str, Any]]:
        """Decisions on a plan, oldest first: by, method, decision, note, team, at."""
        rows = self._rows(
            'SELECT "by", method, decision, note, team, at FROM approvals'
            " WHERE plan_id = ? ORDER BY at, rowid",
            (plan_id,),
        )
        for row in rows:
            row["at"] = _from_db(row["at"])
            row["note"] = row["note"] or ""
        return rows

    # -- audit log ----------------------------------------------------------------

    def audit(
        self,
        event: str,
        *,
        registry: str | None = None,
        plan_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Append an event to the audit log (committed at once)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO audit (at, event, registry, plan_id, actor, details)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _to_db(at or _now()),
                    event,
                    registry,
                    plan_id,
                    actor,
                    # default=str: details may carry datetimes or paths; never fail to audit.
                    json.dumps(details or {}, sort_keys=True, default=str),
                ),
            )

    def audit_events(
        self, *, limit: int = 100, registry: str | None = None, plan_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit events, newest first: id, at, event, registry, plan_id, actor, details."""
        where: list[str] = []
        params: list[Any] = []
        if registry is not None:
            where.append("registry = ?")
            params.append(registry)
        if plan_id is not None:
            where.append("plan_id = ?")
            params.append(plan_id)
        sql = "SELECT id, at, event, registry, plan_id, actor, details FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        rows = self._rows(sql, [*params, limit])
        for row in rows:
            row["at"] = _from_db(row["at"])
            row["details"] = json.loads(row["details"]) if row["details"] else {}
        return rows

    # -- garbage collection runs --------------------------------------------------

    def record_gc(self, registry: str, result: GcResult) -> None:
        """Store the outcome of one garbage-collection run."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO gc_runs (registry, dry_run, command, exit_code, ok, output,"
                " started_at, finished_at, bytes_before, bytes_after, bytes_freed, warnings)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    registry,
                    int(result.dry_run),
                    json.dumps(result.command),
                    result.exit_code,
                    int(result.ok),
                    result.output,
                    _to_db(result.started_at),
                    _to_db(result.finished_at),
                    result.bytes_before,
                    result.bytes_after,
                    result.bytes_freed,
                    json.dumps(result.warnings),
                ),
            )

    def gc_runs(self, *, limit: int = 20, registry: str | None = None) -> list[dict[str, Any]]:
        """Garbage-collection runs, newest first, with the fields of ``GcResult.to_json_dict``
        plus ``id``."""
        sql = "SELECT * FROM gc_runs"
        params: list[Any] = []
        if registry is not None:
            sql += " WHERE registry = ?"
            params.append(registry)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        rows = self._rows(sql, [*params, limit])
        for row in rows:
            row["dry_run"] = bool(row["dry_run"])
            row["ok"] = bool(row["ok"])
            row["command"] = json.loads(row["command"] or "[]")
            row["warnings"] = json.loads(row["warnings"] or "[]")
            row["started_at"] = _from_db(row["started_at"])
            row["finished_at"] = _from_db(row["finished_at"])
        return rows

    # -- locks --------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(
        self,
        name: str,
        *,
        purpose: str,
        stale_after: timedelta = timedelta(hours=1),
        auto_heartbeat: bool = True,
    ) -> Iterator[None]:
        """Hold the named lock (one apply or gc per registry) for the ``with`` block.

        Raises ``LockHeld`` if another live holder has it.  A lock is stale, and taken
        over, when its holder ran on this host and its pid is gone, or its heartbeat is
        older than ``stale_after``.  With ``auto_heartbeat`` a daemon thread refreshes
        the heartbeat every ``stale_after / 4`` so a long gc is not taken for dead.
        Released on exit, but only if it is still ours.
        """
        token = self._acquire(name, purpose=purpose, stale_after=stale_after)
        stop = self._stops[name] = threading.Event()
        beater: threading.Thread | None = None
        if auto_heartbeat:
            interval = max(stale_after.total_seconds() / 4, 0.05)

            def beat() -> None:
                while not stop.wait(interval):
                    try:
                        if not self._beat(name, token):
                            return  # taken over; the next explicit heartbeat() says so
                    except sqlite3.Error:
                        continue  # busy or closing: try again next round

            beater = threading.Thread(target=beat, name=f"regprune-lock-{name}", daemon=True)
            beater.start()
        try:
            yield
        finally:
            stop.set()
            self._stops.pop(name, None)
            if beater is not None:
                beater.join()
            if not self._closed:  # close() already released it
                self._release(name, token)

    def _acquire(self, name: str, *, purpose: str, stale_after: timedelta) -> str:
        token = secrets.token_hex(16)
        hostname, pid = socket.gethostname(), os.getpid()
        with self._mutex:
            for _ in range(5):  # a holder releasing between our two statements: retry
                now = _to_db(_now())
                with self._write() as conn:
                    inserted = conn.execute(
                        "INSERT OR IGNORE INTO locks (name, token, hostname, pid, purpose,"
                        " acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (name, token, hostname, pid, purpose, now, now),
                    ).rowcount
                if inserted == 1:
                    self._held[name] = token
                    _PROCESS_TOKENS.add(token)
                    return token
                rows = self._rows("SELECT * FROM locks WHERE name = ?", (name,))
                if not rows:
                    continue
                holder = rows[0]
                if not self._is_stale(holder, stale_after):
                    raise self._busy(name, holder)
                # Compare-and-set on the stale holder's token: of two takers, only the
                # first UPDATE matches; the second sees our token and reports us busy.
                with self._write() as conn:
                    taken = conn.execute(
                        "UPDATE locks SET token = ?, hostname = ?, pid = ?, purpose = ?,"
                        " acquired_at = ?, heartbeat_at = ?, child_pid = NULL,"
                        " child_started = NULL WHERE name = ? AND token = ?",
                        (token, hostname, pid, purpose, now, now, name, holder["token"]),
                    ).rowcount
                if taken == 1:
                    self._held[name] = token
                    _PROCESS_TOKENS.add(token)
                    return token
            raise LockHeld(f"could not acquire lock '{name}': it changed hands repeatedly")

    @staticmethod
    def _is_stale(holder: dict[str, Any], stale_after: timedelta) -> bool:
        if _child_alive(holder):
            # A GC child outlives a SIGKILLed regprune (it has its own process group):
            # until it ends, nobody may take the registry, heartbeat or not.
            return False
        if holder["hostname"] == socket.gethostname():
            if not _pid_alive(holder["pid"]):
                return True
            # Our own pid but not our token: a restarted container (pid 1 again, same
            # hostname) looking at the lock its previous life left behind.
            if holder["pid"] == os.getpid() and holder["token"] not in _PROCESS_TOKENS:
                return True
        heartbeat = _from_db(holder["heartbeat_at"])
        return heartbeat is None or _now() - heartbeat > stale_after

    @staticmethod
    def _busy(name: str, holder: dict[str, Any]) -> LockHeld:
        since = _from_db(holder["acquired_at"])
        when = since.strftime("%Y-%m-%d %H:%M:%S UTC") if since else "?"
        what = holder["purpose"] or "a lock holder"
        child = (
            f" (its command, pid {holder['child_pid']}, still runs)" if _child_alive(holder) else ""
        )
        return LockHeld(
            f"registry '{name}' is busy: {what} by {holder['hostname']}:{holder['pid']}{child}"
            f" since {when}; wait or, if that process is gone, remove the lock with"
            f" `regprune unlock {name}`"
        )

    def set_lock_child(self, name: str, pid: int | None) -> None:
        """Record (or with None clear) the child process run under a lock we hold."""
        token = self._held.get(name)
        if token is None:
            raise LockHeld(f"lock '{name}' is not held by this process")
        started = _process_start(pid) if pid else None
        with self._mutex, self._write() as conn:
            conn.execute(
                "UPDATE locks SET child_pid = ?, child_started = ? WHERE name = ? AND token = ?",
                (pid, started, name, token),
            )

    def _beat(self, name: str, token: str) -> bool:
        with self._write() as conn:
            return (
                conn.execute(
                    "UPDATE locks SET heartbeat_at = ? WHERE name = ? AND token = ?",
                    (_to_db(_now()), name, token),
                ).rowcount
                == 1
            )

    def _release(self, name: str, token: str | None = None) -> None:
        with self._mutex:
            token = token or self._held.get(name)
            if token is None:
                return
            if self._held.get(name) == token:
                del self._held[name]
            _PROCESS_TOKENS.discard(token)
            with self._write() as conn:
                conn.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

    def heartbeat(self, name: str) -> None:
        """Refresh the heartbeat of a lock this object holds.

        Raises ``LockHeld`` if we do not hold it (any more): someone took it over as
        stale, so whatever we are doing under it must stop.
        """
        token = self._held.get(name)
        if token is None or not self._beat(name, token):
            raise LockHeld(
                f"lock '{name}' is no longer held by this process (taken over or removed)"
            )

    def break_lock(self, name: str) -> bool:
        """Remove a lock whoever holds it (``regprune unlock``); False if there was none."""
        with self._write() as conn:
            return conn.execute("DELETE FROM locks WHERE name = ?", (name,)).rowcount == 1

    def locks(self) -> list[dict[str, Any]]:
        """Current locks: name, hostname, pid, purpose, acquired_at, heartbeat_at, and
        stale (by the default one-hour rule)."""
        rows = self._rows(
            "SELECT name, token, hostname, pid, purpose, acquired_at, heartbeat_at,"
            " child_pid, child_started FROM locks ORDER BY name"
        )
        for row in rows:
            row["stale"] = self._is_stale(row, timedelta(hours=1))
            del row["token"], row["child_started"]
            row["acquired_at"] = _from_db(row["acquired_at"])
            row["heartbeat_at"] = _from_db(row["heartbeat_at"])
        return rows
