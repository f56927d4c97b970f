"""Named locks in the state DB: one apply or gc per registry at a time, across
processes and hosts, with heartbeats and stale-holder takeover."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import LockHeld
from ._codec import from_db, now, parse, to_db
from .connection import Connection

# Tokens of the locks held by any State object of this process (threads share a pid).
_PROCESS_TOKENS: set[str] = set()

DEFAULT_STALE_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class LockInfo:
    """A current lock, as ``regprune unlock`` lists it."""

    name: str
    hostname: str
    pid: int
    purpose: str | None
    acquired_at: datetime
    heartbeat_at: datetime
    child_pid: int | None
    stale: bool
    """By the default one-hour rule."""

    def to_json_dict(self) -> dict[str, Any]:
        """The lock as ``regprune unlock --json`` prints it."""
        return asdict(self)


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
    heartbeat = from_db(holder["heartbeat_at"])
    return heartbeat is None or now() - heartbeat > stale_after


def _busy(name: str, holder: dict[str, Any]) -> LockHeld:
    since = from_db(holder["acquired_at"])
    when = since.strftime("%Y-%m-%d %H:%M:%S UTC") if since else "?"
    what = holder["purpose"] or "a lock holder"
    child = f" (its command, pid {holder['child_pid']}, still runs)" if _child_alive(holder) else ""
    return LockHeld(
        f"registry '{name}' is busy: {what} by {holder['hostname']}:{holder['pid']}{child}"
        f" since {when}; wait or, if that process is gone, remove the lock with"
        f" `regprune unlock {name}`"
    )


class Locks:
    """The locks table (``state.locks``); locks this object holds are released when the
    state DB is closed."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._held: dict[str, str] = {}  # lock name -> our token
        self._stops: dict[str, threading.Event] = {}  # lock name -> stops its heartbeat thread

    @contextlib.contextmanager
    def hold(
        self,
        name: str,
        *,
        purpose: str,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
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
            if not self._conn.closed:  # close() already released it
                self._release(name, token)

    def _acquire(self, name: str, *, purpose: str, stale_after: timedelta) -> str:
        token = secrets.token_hex(16)
        hostname, pid = socket.gethostname(), os.getpid()
        with self._conn.mutex:
            for _ in range(5):  # a holder releasing between our two statements: retry
                stamp = to_db(now())
                with self._conn.write() as conn:
                    inserted = conn.execute(
                        "INSERT OR IGNORE INTO locks (name, token, hostname, pid, purpose,"
                        " acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (name, token, hostname, pid, purpose, stamp, stamp),
                    ).rowcount
                if inserted == 1:
                    self._held[name] = token
                    _PROCESS_TOKENS.add(token)
                    return token
                rows = self._conn.rows("SELECT * FROM locks WHERE name = ?", (name,))
                if not rows:
                    continue
                holder = rows[0]
                if not _is_stale(holder, stale_after):
                    raise _busy(name, holder)
                # Compare-and-set on the stale holder's token: of two takers, only the
                # first UPDATE matches; the second sees our token and reports us busy.
                with self._conn.write() as conn:
                    taken = conn.execute(
                        "UPDATE locks SET token = ?, hostname = ?, pid = ?, purpose = ?,"
                        " acquired_at = ?, heartbeat_at = ?, child_pid = NULL,"
                        " child_started = NULL WHERE name = ? AND token = ?",
                        (token, hostname, pid, purpose, stamp, stamp, name, holder["token"]),
                    ).rowcount
                if taken == 1:
                    self._held[name] = token
                    _PROCESS_TOKENS.add(token)
                    return token
            raise LockHeld(f"could not acquire lock '{name}': it changed hands repeatedly")

    def set_child(self, name: str, pid: int | None) -> None:
        """Record (or with None clear) the child process run under a lock we hold."""
        token = self._held.get(name)
        if token is None:
            raise LockHeld(f"lock '{name}' is not held by this process")
        started = _process_start(pid) if pid else None
        with self._conn.mutex, self._conn.write() as conn:
            conn.execute(
                "UPDATE locks SET child_pid = ?, child_started = ? WHERE name = ? AND token = ?",
                (pid, started, name, token),
            )

    def _beat(self, name: str, token: str) -> bool:
        with self._conn.write() as conn:
            return (
                conn.execute(
                    "UPDATE locks SET heartbeat_at = ? WHERE name = ? AND token = ?",
                    (to_db(now()), name, token),
                ).rowcount
                == 1
            )

    def _release(self, name: str, token: str | None = None) -> None:
        with self._conn.mutex:
            token = token or self._held.get(name)
            if token is None:
                return
            if self._held.get(name) == token:
                del self._held[name]
            _PROCESS_TOKENS.discard(token)
            with self._conn.write() as conn:
                conn.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

    def release_all(self) -> None:
        """Stop every heartbeat and release every lock this object holds (on close)."""
        for event in list(self._stops.values()):
            event.set()
        with self._conn.mutex:
            if self._conn.closed:
                return
            for name in list(self._held):
                with contextlib.suppress(sqlite3.Error):
                    self._release(name)

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
        with self._conn.write() as conn:
            return conn.execute("DELETE FROM locks WHERE name = ?", (name,)).rowcount == 1

    def current(self) -> list[LockInfo]:
        """Current locks, ``stale`` by the default one-hour rule."""
        rows = self._conn.rows(
            "SELECT name, token, hostname, pid, purpose, acquired_at, heartbeat_at,"
            " child_pid, child_started FROM locks ORDER BY name"
        )
        return [
            LockInfo(
                name=row["name"],
                hostname=row["hostname"],
                pid=row["pid"],
                purpose=row["purpose"],
                acquired_at=parse(row["acquired_at"]),
                heartbeat_at=parse(row["heartbeat_at"]),
                child_pid=row["child_pid"],
                stale=_is_stale(row, DEFAULT_STALE_AFTER),
            )
            for row in rows
        ]
