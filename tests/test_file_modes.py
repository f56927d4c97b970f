"""Files regprune creates are private to the user (0600, directories 0700), even with umask 022.

The state DB holds every plan, the audit log (who approved what) and the registry
URLs; nobody else on the machine should read it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from regprune.cli import run
from regprune.state import State

from .support import days_ago


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_state_db_its_directories_and_wal_files_are_private(tmp_path, umask_022):
    db = tmp_path / "new" / "nested" / "state.db"
    with State(db) as state:
        state.audit_log.record("test.event", actor="tester", details={"n": 1})
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()  # WAL mode, connection open
        assert {p.name: mode(p) for p in (db, wal, shm)} == {
            "state.db": 0o600,
            "state.db-wal": 0o600,
            "state.db-shm": 0o600,
        }
    assert mode(tmp_path / "new") == 0o700
    assert mode(tmp_path / "new" / "nested") == 0o700


def test_rollback_journal_takes_the_db_files_mode(tmp_path, umask_022):
    # SQLite gives -journal (used outside WAL mode) the DB file's mode.
    db = tmp_path / "state.db"
    State(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO audit (at, event) VALUES ('2026-01-01', 'x')")
        journal = Path(f"{db}-journal")
        assert journal.exists()
        assert mode(journal) == 0o600
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_existing_directory_and_file_modes_are_left_alone(tmp_path, umask_022):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    db = shared / "state.db"
    db.touch(mode=0o640)
    os.chmod(db, 0o640)
    State(db).close()
    assert (mode(shared), mode(db)) == (0o750, 0o640)


def test_default_state_path_through_the_cli_is_private(
    registry_server, pusher, tmp_path, monkeypatch, capsys, umask_022
):
    pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    for name in ("REGPRUNE_CONFIG", "REGPRUNE_STATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGPRUNE_LOAD_PLUGINS", "")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)

    code = run(["plan", "--registry", registry_server.url, "--repo", "ci/*", "--keep", "0"])

    assert code == 0, capsys.readouterr().err
    made = tmp_path / "xdg-state"
    files = sorted(p for p in made.rglob("*"))
    assert files, "the state DB was not created"
    for path in [made, *files]:
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path.relative_to(tmp_path)}: {oct(mode(path))}"
