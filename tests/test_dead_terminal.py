"""A terminal nobody reads, a closed terminal, a pipe whose reader left, a second signal.

What a command writes for a person (bars, warnings, errors on stderr) must never
keep it from finishing or from ending on SIGTERM, nor pile up in memory:

- a closed terminal (every write fails with EIO): the command finishes its work
  (the plan is stored) and exits 1, quickly;
- a terminal nobody reads (writes block): SIGTERM and SIGHUP still end it with
  the interrupted exit code, within the guard's patience;
- ``| head``: the reader leaving ends the command with exit code 1 and no
  "unexpected" line;
- a second signal while the first unwinds ends the process at once and kills the
  commands it started.

Real registries, real pseudo-terminals, the real CLI in a subprocess.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from regprune import terminal_guard
from regprune.terminal_guard import GuardedTerminal
from regprune.testing import ImagePusher, RegistryServer
from regprune.usage.server import stderr_log
from tests.terminal import Terminal, cli_env, regprune_command

REPOSITORIES = [f"ci/service-{n}" for n in range(40)]
TAGS = [f"build-{n}" for n in range(30)]  # 1,200 tags: a scan of a second or more


@pytest.fixture
def busy_registry(registry_server: RegistryServer, pusher: ImagePusher) -> RegistryServer:
    pusher.push_many([(REPOSITORIES[0], tag) for tag in TAGS])  # one image per tag
    registry_server.clone_repository(REPOSITORIES[0], REPOSITORIES[1:])
    return registry_server


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def state_args(home: Path) -> list[str]:
    return ["--state", str(home / "state.db")]


# -- the guard itself, on real pseudo-terminals -----------------------------------


def test_a_guarded_write_to_a_closed_terminal_neither_raises_nor_blocks() -> None:
    master, slave = os.openpty()
    stream = open(slave, "w", closefd=True)  # noqa: SIM115  # closed below
    guard = GuardedTerminal(stream)
    guard.write("visible\n")
    assert b"visible" in os.read(master, 1024)
    os.close(master)
    started = time.monotonic()
    for _ in range(1000):
        guard.write("x" * 200 + "\n")
    assert time.monotonic() - started < 2
    assert guard.gone and not guard.isatty()
    stream.close()


def test_a_guarded_write_to_an_unread_terminal_gives_up_within_its_patience() -> None:
    master, slave = os.openpty()
    stream = open(slave, "w", closefd=True)  # noqa: SIM115  # closed below
    guard = GuardedTerminal(stream, patience=0.5, quiet=1.0)
    started = time.monotonic()
    guard.write("y" * 1_000_000)  # far more than a pty holds
    # Then a thousand lines (a listener's log, a bar's redraws): one wait in all.
    for _ in range(1000):
        guard.write("z" * 80 + "\n")
    took = time.monotonic() - started
    assert took < 2, f"the writes waited {took:.1f}s"
    # Stalled is not gone: once read again, the terminal gets later writes.
    assert not guard.gone
    os.set_blocking(master, False)
    try:
        while os.read(master, 65536):
            pass
    except BlockingIOError:
        pass
    time.sleep(1.0)  # the quiet period after the stall
    guard.write("after\n")
    time.sleep(0.1)
    assert b"after" in os.read(master, 65536)
    os.close(master)
    stream.close()


def test_a_listener_log_line_never_fails_or_holds_up_an_event(monkeypatch) -> None:
    """The listener logs from its request threads: a stderr that went away, or a
    terminal nobody reads, loses the line and nothing else."""

    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sys, "stderr", Gone())
    stderr_log("dropped malformed event")  # no exception

    master, slave = os.openpty()
    with open(slave, "w", closefd=True) as unread:
        monkeypatch.setattr(sys, "stderr", unread)
        monkeypatch.setattr(terminal_guard, "PATIENCE", 0.3)
        started = time.monotonic()
        for n in range(2000):
            stderr_log(f"127.0.0.1: 401: bad token {n} " + "x" * 60)
        assert time.monotonic() - started < 3
    os.close(master)


# -- the real CLI -------------------------------------------------------------------


def test_a_plan_in_a_terminal_closed_mid_scan_is_stored_and_the_command_ends(
    busy_registry: RegistryServer, tmp_path: Path
) -> None:
    terminal = Terminal(
        [
            *state_args(tmp_path),
            "plan",
            "--registry",
            busy_registry.url,
            "--repo",
            "ci/*",
            "--keep",
            "3",
        ],
        tmp_path,
    )
    try:
        terminal.expect("tags", timeout=60)  # the scan's bar is up
        os.close(terminal.master)  # the window closes: every write now fails
        peak = 0
        deadline = time.monotonic() + 90
        while terminal.process.poll() is None and time.monotonic() < deadline:
            peak = max(peak, rss_kb(terminal.process.pid))
            time.sleep(0.2)
        assert terminal.process.poll() == 1, "the command did not end on a closed terminal"
        assert peak < 400_000, f"it grew to {peak} kB"
    finally:
        terminal.kill()
    stored = subprocess.run(
        regprune_command(*state_args(tmp_path), "plans", "--json"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(tmp_path),
        timeout=60,
        check=True,
    )
    plans = json.loads(stored.stdout)
    assert len(plans) == 1, stored.stdout
    assert plans[0]["summary"]["tags"] == len(REPOSITORIES) * (len(TAGS) - 3)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_a_command_whose_terminal_nobody_reads(
    busy_registry: RegistryServer, tmp_path: Path, signum: int
) -> None:
    terminal = Terminal([*state_args(tmp_path), "ls", "--registry", busy_registry.url], tmp_path)
    try:
        terminal.expect("tags", timeout=60)
        # Nobody reads from here on: the bar, then the listing, fill the terminal.
        time.sleep(8)
        assert terminal.process.poll() is None, "the listing fit the terminal: test too small"
        terminal.process.send_signal(signum)
        code = wait_exit(terminal.process, 20)
        assert code == 130, f"still running 20 s after {signal.Signals(signum).name}"
    finally:
        terminal.kill()
        os.close(terminal.master)


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_pipe_whose_reader_left_ends_the_listing_quietly(
    busy_registry: RegistryServer, tmp_path: Path, fmt: str
) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # `| true`: the reader is gone before the listing is written
    try:
        done = subprocess.run(
            regprune_command(
                *state_args(tmp_path), "ls", "--registry", busy_registry.url, "--format", fmt
            ),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=cli_env(tmp_path),
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (1, "")


def test_a_second_signal_while_unwinding_ends_the_process_and_its_commands(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import sys, time
        from regprune import interrupts, processes
        with interrupts.termination_as_interrupt():
            try:
                print("working", flush=True)
                time.sleep(60)
            except KeyboardInterrupt:
                # Clean-up that never ends, running a command that ignores SIGTERM.
                print("unwinding", flush=True)
                processes.run_group(
                    ["sh", "-c", "echo $$ > {pidfile}; trap '' TERM; sleep 60"], timeout=120
                )
        print("unwound", flush=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "working\n"
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline() == "unwinding\n"
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the clean-up command never started"
        time.sleep(0.05)
    child = int(pidfile.read_text())
    process.send_signal(signal.SIGTERM)
    assert wait_exit(process, 5) == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, "the command it started outlived it"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_a_closed_stdout_runs_the_command_and_a_full_one_is_one_line(
    busy_registry: RegistryServer, tmp_path: Path
) -> None:
    """``>&-`` (Python then has no sys.stdout) and ``> /dev/full`` (ENOSPC)."""
    ls = " ".join(regprune_command(*state_args(tmp_path), "ls", "--registry", busy_registry.url))

    def shell(redirect: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", f"exec {ls} --json {redirect}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=cli_env(tmp_path),
            timeout=60,
            check=False,
        )

    closed = shell(">&-")
    assert (closed.returncode, closed.stderr) == (0, "")
    full = shell("> /dev/full")
    assert full.returncode == 1
    assert full.stderr.splitlines() == [
        "error: cannot write the output: No space left on device; what was done stays done"
    ]
