"""Interrupting gc: SIGINT/SIGTERM to a real ``regprune gc`` subprocess, SIGKILL, the lock.

The GC command is a shell script that records its pid (and a grandchild's) and
sleeps; ``before``/``after`` write markers. After an interruption the ``after``
command must have run (the registry is not left read-only), no GC process may
survive, and the lock must be gone; after a SIGKILL of regprune the lock must stay
held for as long as the GC child lives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from regprune import interrupts, processes
from regprune.cli import run
from regprune.engine import Engine
from regprune.errors import GcInterrupted, Interrupted, LockHeld
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State
from regprune.testing import DEFAULT_REGISTRY, make_engine, make_settings

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}
WAIT = 20.0  # seconds a step may take before the test gives up (never a pass condition)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is gone, only unreaped


class Scene:
    """A config whose GC is a sleeping script, and the files that tell what happened."""

    def __init__(
        self, tmp_path: Path, url: str, *, ignore_term: bool = False, after: str = ""
    ) -> None:
        self.dir = tmp_path
        self.pids = tmp_path / "gc.pids"
        self.steps = tmp_path / "steps.log"
        self.after_started = tmp_path / "after.started"
        trap = "trap '' TERM\n" if ignore_term else ""
        gc = tmp_path / "gc.sh"
        # The grandchild (sleep) is what a wrapper's real work looks like.
        gc.write_text(
            f"#!/bin/sh\n{trap}sleep 60 &\necho $! >> {self.pids}\necho $$ >> {self.pids}\nwait\n"
        )
        gc.chmod(0o755)
        step = tmp_path / "step.sh"
        step.write_text(
            f'#!/bin/sh\n[ "$1" = after ] && touch {self.after_started} && {after or ":"}\necho "$1" >> {self.steps}\n'
        )
        step.chmod(0o755)
        self.gc = {
            "command": [str(gc)],
            "before": [[str(step), "readonly"]],
            "after": [[str(step), "after"]],
        }
        self.config = tmp_path / "regprune.toml"
        self.config.write_text(
            "\n".join(
                [
                    "[registry.local]",
                    f"url = {json.dumps(url)}",
                    "[registry.local.gc]",
                    *(f"{key} = {json.dumps(value)}" for key, value in self.gc.items()),
                ]
            )
            + "\n"
        )
        self.state = tmp_path / "state.db"

    def gc_pids(self) -> list[int]:
        text = self.pids.read_text() if self.pids.exists() else ""
        return [int(pid) for pid in text.split()]

    def gc_running(self) -> bool:
        return len(self.gc_pids()) == 2

    def start(self) -> subprocess.Popen[str]:
        def default_signals() -> None:
            # As from a terminal: SIGINT must not be inherited as ignored from the runner.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regprune",
                "--config",
                str(self.config),
                "--state",
                str(self.state),
                "gc",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "REGPRUNE_LOAD_PLUGINS": ""},
            preexec_fn=default_signals,
        )

    def steps_run(self) -> list[str]:
        return self.steps.read_text().split() if self.steps.exists() else []

    def locks(self) -> list[dict]:
        with State(self.state) as state:
            return state.locks.current()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_gc_stops_its_group_runs_after_and_says_so(
    registry_server, tmp_path, signum
):
    scene = Scene(tmp_path, registry_server.url)
    regprune = scene.start()
    wait_for(scene.gc_running, "the GC command to start")

    regprune.send_signal(signum)
    _, err = regprune.communicate(timeout=WAIT)

    assert regprune.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    what = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert lines[0].startswith(f"error: interrupted ({what}) during garbage collection"), err
    assert "GC stopped" in lines[0] and "after commands ran" in lines[0], err
    assert "run `regprune gc` again" in lines[0]
    assert scene.steps_run() == ["readonly", "after"]  # not left read-only
    assert not any(alive(pid) for pid in scene.gc_pids())  # the grandchild too
    assert scene.locks() == []
    with State(scene.state) as state:
        assert state.gc_runs.recent(limit=1)[0].exit_code == 130  # the interrupted run is recorded


def test_a_second_signal_waits_for_the_after_commands(registry_server, tmp_path):
    scene = Scene(tmp_path, registry_server.url, after="sleep 1")
    regprune = scene.start()
    wait_for(scene.gc_running, "the GC command to start")

    regprune.send_signal(signal.SIGTERM)
    wait_for(scene.after_started.exists, "the after command to start")
    regprune.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    _, err = regprune.communicate(timeout=WAIT)

    assert regprune.returncode == 130, err
    [line] = err.strip().splitlines()
    # The line tells of the first interruption: SIGTERM stopped the GC.
    assert line.startswith("error: interrupted (SIGTERM) during garbage collection"), err
    assert "GC stopped" in line and "after commands ran" in line, err
    assert scene.steps_run() == ["readonly", "after"]  # after finished despite the signal


ORPHAN_ZOMBIE = """
import ctypes, json, os, subprocess, sys, time
from regprune import processes
# Orphans become our children and are never reaped here, as under a container's PID 1
# that reaps late or not at all.
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
wrapper = subprocess.Popen(
    ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True
)
worker = int(wrapper.stdout.readline())
started = time.monotonic()
used = processes.stop_group(wrapper, grace=float(sys.argv[1]))
print(json.dumps({"used": used, "seconds": time.monotonic() - started,
                  "worker": open(f"/proc/{worker}/stat").read().rpartition(")")[2].split()[0]}))
"""


def test_an_orphaned_zombie_does_not_make_the_stop_wait_for_the_grace():
    """A wrapper's child, killed with it, is a zombie until PID 1 reaps it (in a
    container, seconds later or never).  The group is gone all the same: the stop
    takes the SIGTERM path at once instead of waiting the grace and sending SIGKILL."""
    grace = WAIT
    done = subprocess.run(
        [sys.executable, "-c", ORPHAN_ZOMBIE, str(grace)],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["worker"] == "Z"  # the scene holds: the killed worker is an unreaped zombie
    assert result["used"] == "SIGTERM"
    assert result["seconds"] < grace / 2


def test_a_group_ignoring_sigterm_is_killed_after_the_grace(registry_server, tmp_path, monkeypatch):
    monkeypatch.setattr(processes, "STOP_GRACE", 0.5)
    scene = Scene(tmp_path, registry_server.url, ignore_term=True)
    engine = make_engine(
        registry_server.url, AGE, name="ci", state_dir=tmp_path, registry_options={"gc": scene.gc}
    )
    main = threading.main_thread().ident

    def interrupt() -> None:
        wait_for(scene.gc_running, "the GC command to start")
        signal.pthread_kill(main, signal.SIGTERM)

    with interrupts.termination_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(GcInterrupted) as stopped:
            engine.gc(DEFAULT_REGISTRY)

    assert "(SIGTERM)" in stopped.value.message
    assert "process group got SIGKILL" in stopped.value.message
    assert scene.steps_run() == ["readonly", "after"]
    assert not any(alive(pid) for pid in scene.gc_pids())
    assert engine.state.locks.current() == []


def test_while_a_sigkilled_gc_leaves_its_child_running_the_lock_is_not_stale(
    registry_server, tmp_path
):
    scene = Scene(tmp_path, registry_server.url)
    regprune = scene.start()
    wait_for(scene.gc_running, "the GC command to start")
    # Once the lock records the child (a few ms after it starts; longer on a busy machine).
    wait_for(lambda: any(lock.child_pid for lock in scene.locks()), "the lock to name the GC")

    regprune.kill()  # SIGKILL: nothing of regprune runs any more, not even finally blocks
    regprune.communicate(timeout=WAIT)

    gc_shell = scene.gc_pids()[1]
    assert alive(gc_shell)  # its own process group: it outlives regprune
    [lock] = scene.locks()
    assert lock.child_pid == gc_shell and not lock.stale
    quick = {"command": ["true"]}
    engine = Engine(
        make_settings(registry_server.url, AGE, name="ci", registry_options={"gc": quick}),
        State(scene.state),
        manager=get_plugin_manager(load_entrypoints=False),
    )
    with pytest.raises(LockHeld, match=f"pid {gc_shell}, still runs"):
        engine.gc(DEFAULT_REGISTRY)

    for pid in scene.gc_pids():  # the GC ends; now the lock is stale and is taken over
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in scene.gc_pids()), "the GC to end")
    assert scene.locks()[0].stale
    assert engine.gc(DEFAULT_REGISTRY).ok
    assert engine.state.locks.current() == []
    engine.state.close()


KILLED_WHILE_RECORDING = """
import os, signal, sys
from regprune import processes

def record(pid):
    if pid is not None:  # regprune dies right after the child started, before recording it
        print(pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

processes.run_group(["/bin/sh", "-c", "touch " + sys.argv[1]], 60, on_start=record)
"""


def test_a_command_never_runs_when_regprune_dies_before_recording_it(tmp_path):
    """The start gate: a child whose pid the lock does not hold yet waits; if regprune
    dies (SIGKILL) before recording it, the child exits without running the command."""
    ran = tmp_path / "the-command-ran"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_RECORDING, str(ran)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    gate = int(done.stdout)
    deadline = time.monotonic() + WAIT
    while alive(gate):
        assert time.monotonic() < deadline, "the gated child never ended"
        time.sleep(0.02)
    time.sleep(0.2)  # what a command that did run would have needed to touch its file
    assert not ran.exists(), "the command ran although its start was never recorded"


def test_a_recycled_child_pid_does_not_hold_the_lock(tmp_path):
    """A lock whose recorded child pid now belongs to another process (a different start
    time) is stale once its holder is gone: pid reuse cannot block a registry forever."""
    with (
        State(tmp_path / "state.db") as state,
        state.locks.hold("local", purpose="garbage collection"),
    ):
        state.locks.set_child("local", os.getpid())
        state.db.execute(
            "UPDATE locks SET pid = 999999999, child_started = '1' WHERE name = 'local'"
        )
        state.db.conn.commit()
        assert state.locks.current()[0].stale
        state.db.execute("UPDATE locks SET child_started = NULL WHERE name = 'local'")
        state.db.conn.commit()
        assert not state.locks.current()[0].stale  # our pid lives: the "child" runs


# -- the CLI-wide mechanism ---------------------------------------------------------------


def test_a_keyboard_interrupt_without_a_story_still_prints_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REGPRUNE_LOAD_PLUGINS", "")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("regprune.state.Locks.current", interrupted)
    code = run(["--state", str(tmp_path / "state.db"), "unlock"])

    err = capsys.readouterr().err
    assert code == 130
    [line] = err.strip().splitlines()
    assert line.startswith("error: interrupted (Ctrl-C) before the command finished")
    assert "regprune apply PLAN_ID" in line


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            "interrupted (Ctrl-C) after 3 of 5 deletions; resume with `regprune apply 1234`",
            "error: interrupted (Ctrl-C) after 3",
        ),
        ("stopped after 3 of 5", "error: interrupted: stopped after 3 of 5"),
    ],
)
def test_an_interrupted_error_is_one_interrupted_line(tmp_path, capsys, monkeypatch, message, line):
    monkeypatch.setenv("REGPRUNE_LOAD_PLUGINS", "")

    def interrupted(*args, **kwargs):
        raise Interrupted(message)

    monkeypatch.setattr("regprune.state.Locks.current", interrupted)
    code = run(["--state", str(tmp_path / "state.db"), "unlock"])

    err = capsys.readouterr().err
    assert code == 130
    assert err.strip().splitlines() == [err.strip()] and err.startswith(line)


def test_sigterm_to_any_command_is_one_interrupted_line(tmp_path):
    """A registry that accepts connections and never answers: `regprune ls` hangs in a
    request until SIGTERM, which must end it like Ctrl-C, in one line, exit 130."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        ls = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regprune",
                "--state",
                str(tmp_path / "s.db"),
                "ls",
                "--registry",
                url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "REGPRUNE_LOAD_PLUGINS": ""},
        )
        server.settimeout(WAIT)
        connection, _ = server.accept()  # regprune is now waiting for an answer
        ls.send_signal(signal.SIGTERM)
        _, err = ls.communicate(timeout=WAIT)
        connection.close()
    finally:
        server.close()
    assert ls.returncode == 130, err
    [line] = err.strip().splitlines()
    assert line.startswith("error: interrupted (SIGTERM)")
