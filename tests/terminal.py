"""The real ``regprune`` command in a pseudo-terminal of a set size, and what its screen shows.

``Terminal(argv, cwd)`` starts ``python -m regprune ARGV`` with stdin, stdout and
stderr on the slave side of a pty (80x24 by default, set with ``TIOCSWINSZ``, and
no ``COLUMNS``/``LINES`` in the environment, so the width is the terminal's).
``expect(text)`` reads until ``text`` was written; ``screen()`` renders everything
written so far through pyte, a VT100 emulator, as a person would see it.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyte

# What the CLI runs with: built-in plugins only, no config or state from this machine.
_DROPPED = ("COLUMNS", "LINES", "REGPRUNE_CONFIG", "REGPRUNE_STATE", "REGPRUNE_DEBUG")


def cli_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a new user's regprune, rooted at ``home``."""
    env = {name: value for name, value in os.environ.items() if name not in _DROPPED}
    env.update(
        REGPRUNE_LOAD_PLUGINS="",
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_STATE_HOME=str(home / "xdg-state"),
        TERM="xterm-256color",
    )
    env.pop("NO_COLOR", None)
    env.update(extra or {})
    return env


def regprune_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "regprune", *argv]


class Terminal:
    """One regprune process on a pty of ``columns`` x ``rows``."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        *,
        columns: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.master = master
        self.columns, self.rows = columns, rows
        self.output = b""
        self.process = subprocess.Popen(
            regprune_command(*argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=dict(env) if env is not None else cli_env(cwd),
            start_new_session=True,
        )
        os.close(slave)

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False once the process closed the pty."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            return False
        if not chunk:
            return False
        self.output += chunk
        return True

    def expect(self, text: str, timeout: float = 30) -> str:
        """Read until ``text`` has been written; everything written before it, decoded."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{text!r} never appeared; the terminal got {self.text()!r}")
        return self.output[: self.output.index(needle)].decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 60) -> int:
        """Read to the end and return the exit code."""
        deadline = time.monotonic() + timeout
        while self._read(0.2) and time.monotonic() < deadline:
            if self.process.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
        code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def screen(self) -> list[str]:
        """The screen's lines now, right-trimmed, as an 80-column terminal draws them."""
        screen = pyte.Screen(self.columns, self.rows)
        stream = pyte.ByteStream(screen)
        stream.feed(self.output)
        return [line.rstrip() for line in screen.display]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
