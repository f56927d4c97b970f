"""Run one command in its own process group, and stop the whole group when asked.

A GC command is often a wrapper (a shell script, ``kubectl exec``) whose children
do the work; signalling only the wrapper would leave them running.  Each command
therefore starts a new session (its own process group, out of reach of the
terminal's Ctrl-C, which only regprune handles) and is stopped as a group: SIGTERM,
then SIGKILL once `STOP_GRACE` seconds have passed.  That happens on a timeout and
on any exception while waiting (Ctrl-C, SIGTERM), before the exception goes on.

A command starts behind a gate: a shell that waits on a pipe and only then
``exec``s the command, in the same process.  regprune records the pid (the GC
child in the registry's lock) and then opens the gate.  If regprune dies before
that (SIGKILL), the pipe closes and the command never runs: no command ever runs
that its lock does not name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .executables import resolve_executable
from .interrupts import deferred, track_group, untrack_group

STOP_GRACE = 10.0
"""Seconds a stopped process group gets between SIGTERM and SIGKILL."""


def _gate(env: Mapping[str, str] | None) -> list[str]:
    """The start gate: a shell whose standard input is the gate's pipe.  A line is
    the go: the command then runs with stdin from /dev/null.  End of file (regprune
    is gone) exits 125 without running it.  The shell's own PWD is not passed on
    unless the command's environment had one."""
    given = os.environ if env is None else env
    forget = "" if "PWD" in given else "unset PWD; "
    script = f'read -r go || exit 125; {forget}exec "$@" </dev/null'
    return ["/bin/sh", "-c", script, "regprune-start-gate"]


@dataclass
class Outcome:
    """How one command ended: its exit code and output, and whether we stopped it."""

    exit_code: int
    output: str
    stopped: str | None = None
    """None, ``"SIGTERM"`` or ``"SIGKILL"``: the strongest signal its group needed."""


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived while a command ran; its group was stopped first."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__()
        self.outcome = outcome


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs; a zombie does not count.

    An orphaned child (the ``sleep`` of a killed wrapper script) is reparented to
    PID 1, and a container's PID 1 may reap it seconds later or never: counted as
    alive, it would make every stop wait the whole grace and end in SIGKILL.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = _group_states(pgid)
    return members is None or any(state != "Z" for state in members)


def _group_states(pgid: int) -> list[str] | None:
    """The state letters (``R``, ``S``, ``Z`` …) of group ``pgid``'s processes, from
    ``/proc``; None where there is no ``/proc`` to read."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    states = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 2 and fields[2] == str(pgid):
            states.append(fields[0])
    return states


def stop_group(process: subprocess.Popen[bytes], grace: float | None = None) -> str:
    """SIGTERM the process's group, SIGKILL what is left after ``grace``; reap the leader.

    Returns the strongest signal used.  Safe to call when the group is already gone.
    """
    grace = STOP_GRACE if grace is None else grace
    pgid = process.pid  # a session leader's pid is its group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, so a zombie does not count as alive
        if not _group_alive(pgid):
            return "SIGTERM"
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()
    return "SIGKILL"


OUTPUT_TAIL = 1024 * 1024
"""Bytes of a command's output an `Outcome` keeps: its end (a GC result keeps 8,000
characters).  The whole output only goes to ``on_output``, piece by piece."""
_PIECE = 1024 * 1024
_LONGEST_LINE = 64 * 1024
"""A line longer than this may reach ``on_output`` cut to its first 64 KiB."""


def _tail(log: IO[bytes]) -> str:
    """The last `OUTPUT_TAIL` bytes of the output, from a line's start when cut."""
    size = log.seek(0, os.SEEK_END)
    log.seek(max(0, size - OUTPUT_TAIL))
    data = log.read(OUTPUT_TAIL)
    if size <= OUTPUT_TAIL:
        return data.decode(errors="replace")
    start = data.find(b"\n") + 1  # 0 when no line starts in the tail: keep it whole
    kept = data[start:]
    return f"[{size - len(kept)} bytes of earlier output not kept]\n" + kept.decode(
        errors="replace"
    )


def _stream(log: IO[bytes], on_output: Callable[[bytes], None]) -> None:
    """Hand the whole output to ``on_output`` in pieces of whole lines (at most about
    1 MiB each), so that no more than that is ever in memory."""
    log.seek(0)
    carry = b""
    skipping = False  # inside a line longer than _LONGEST_LINE, after its first part
    while piece := log.read(_PIECE):
        data = carry + piece
        end = data.rfind(b"\n") + 1
        if skipping:
            newline = data.find(b"\n")
            if newline < 0:
                carry = b""
                continue
            data, end, skipping = data[newline + 1 :], end - newline - 1, False
        lines, carry = data[:end], data[end:]
        if lines:
            on_output(lines)
        if len(carry) > _LONGEST_LINE:
            on_output(carry[:_LONGEST_LINE] + b"\n")
            carry, skipping = b"", True
    if carry:
        on_output(carry + b"\n")


def _start_error(argv: Sequence[str], exc: OSError) -> Outcome:
    # 127 "not found" and 126 "cannot execute", as a shell would report them.
    code = 127 if isinstance(exc, FileNotFoundError) else 126
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOEXEC:
        reason += " (a script needs a #! line)"
    return Outcome(code, f"cannot run {argv[0]}: {reason}")


def _start_gated(
    program: str, argv: Sequence[str], log: IO[bytes], env: Mapping[str, str] | None
) -> tuple[subprocess.Popen[bytes], int]:
    """``argv`` (its ``program`` resolved) started behind a closed gate, in a new
    session; the process, and the gate's end to write the go to."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [*_gate(env), program, *argv[1:]],
            stdin=read_end,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return process, write_end


def run_group(
    argv: Sequence[str],
    timeout: float,
    *,
    on_start: Callable[[int | None], None] | None = None,
    env: Mapping[str, str] | None = None,
    on_output: Callable[[bytes], None] | None = None,
) -> Outcome:
    """Run ``argv`` (stdin closed, stdout and stderr together) in a new process group.

    ``on_start(pid)`` is called once the child runs and ``on_start(None)`` once it
    is gone, so a caller can record it (regprune keeps it in the registry's lock).
    A command that cannot start gives exit code 126/127 and says why; a timeout
    gives 124.  An exception while waiting stops the group, then propagates.
    ``env`` replaces the whole environment (None: inherit regprune's); its PATH is
    where ``argv[0]`` is looked up.

    The output goes to a temporary file, and the `Outcome` keeps its last
    `OUTPUT_TAIL` bytes only.  ``on_output`` (when the command ran to its end or
    timed out) gets the whole output, in pieces of whole lines, before this returns.
    """
    with tempfile.TemporaryFile() as log:
        process: subprocess.Popen[bytes] | None = None
        try:
            # Starting and recording the child is one step: an interrupt in between
            # would leave a child nobody stops.
            with deferred():
                try:
                    program = resolve_executable(argv[0], env)
                    process, gate = _start_gated(program, argv, log, env)
                except OSError as exc:
                    return _start_error(argv, exc)
                try:
                    track_group(process.pid)
                    if on_start is not None:
                        on_start(process.pid)  # recorded before the command may run
                    with contextlib.suppress(BrokenPipeError):  # the gate died: wait() says
                        os.write(gate, b"go\n")
                finally:
                    os.close(gate)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                with deferred():
                    stopped = stop_group(process)
                if on_output is not None:
                    _stream(log, on_output)
                return Outcome(
                    124, _tail(log) + f"\ntimed out after {timeout:.0f}s: {' '.join(argv)}", stopped
                )
            if on_output is not None:
                _stream(log, on_output)
            return Outcome(code, _tail(log))
        except KeyboardInterrupt as exc:
            stopped = None
            if process is not None and process.returncode is None:
                with deferred():
                    stopped = stop_group(process)
            raise Stopped(Outcome(130, _tail(log), stopped)) from exc
        except BaseException:
            if process is not None and process.returncode is None:
                with deferred():
                    stop_group(process)
            raise
        finally:
            if process is not None:
                untrack_group(process.pid)
            if process is not None and on_start is not None:
                with deferred():
                    on_start(None)
