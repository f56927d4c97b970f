"""The state DB's connection: opening a private file in WAL mode, migrating it, and
the write transactions every part runs its writes in.

One SQLite file shared by every front end: a CLI ``apply`` and a bot thread may
open it at the same time, so it runs in WAL mode with a busy timeout, and every write
that depends on what is already stored is a single conditional statement
(compare-and-set) or runs inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import RegpruneError
from .schema import migrations

BUSY_TIMEOUT = 10.0
"""Seconds a connection waits for another writer before giving up with "database is locked"."""

NOTICE_AFTER = 1.0
"""Seconds a write waits for another process before regprune says it is waiting."""

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

log = logging.getLogger("regprune.state")


class StateBusy(RegpruneError):
    """Another process held the state DB's write lock for longer than BUSY_TIMEOUT."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the state DB {path} stayed locked by another process for {BUSY_TIMEOUT:g}s; "
            "nothing was written: try again when it is done (a VACUUM or a long write; "
            f"`fuser {path}` shows who has it open)"
        )


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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


class Connection:
    """One SQLite connection, opened and migrated on construction, shared by the parts.

    ``check_same_thread=False`` and an internal re-entrant lock (``mutex``) let one
    connection serve several threads, one call at a time.
    """

    path: str
    db: sqlite_utils.Database

    def __init__(self, path: str | Path, *, notify: Callable[[str], None] | None = None) -> None:
        self.path = str(path)
        # Told once when a write has to wait for another process (the CLI prints it).
        self._notify = notify or log.warning
        self.mutex = threading.RLock()
        self.closed = False
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
                with self.write():
                    migrations.apply(self.db)
        except BaseException:
            conn.close()
            raise

    @property
    def in_memory(self) -> bool:
        """Whether this is a private in-memory DB (no file, no WAL)."""
        return self.path == ":memory:"

    def close(self) -> None:
        """Close the connection (once)."""
        with self.mutex:
            if self.closed:
                return
            self.closed = True
            self.db.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front, so a
        read-then-write inside cannot fail half-way with SQLITE_BUSY in WAL mode."""
        with self.mutex:
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

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """The rows of one query as dicts (column name -> value)."""
        with self.mutex:
            cursor = self.db.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def file_size(self) -> int:
        """Bytes the DB takes on disk: the file and its write-ahead log (0 in memory)."""
        if self.in_memory:
            return 0
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total
