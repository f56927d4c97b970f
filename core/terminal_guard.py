"""Text for a person at a terminal that may stop reading or go away mid-command.

Everything regprune writes to stderr on a terminal (progress bars, ``warning:``
and ``error:`` lines) is for someone watching.  When nobody reads that terminal
any more, its writes either fail (the window was closed: ``EIO``) or block (the
reader is stuck, or output is paused).  Neither may stop the work, keep the
process from ending on SIGTERM, or pile up: rich keeps text it failed to write
and tries it again, with everything since, at every redraw.

`GuardedTerminal` writes through a non-blocking descriptor of its own for the
same terminal (the shell's descriptor stays as it was).  A write the terminal
does not take within `PATIENCE` seconds is dropped, and so is everything for the
`QUIET` seconds after it (a stuck terminal costs one wait, not one per line);
after a write error the terminal counts as gone and every later write is
dropped.  A guarded write never raises ``OSError``; writes from several threads
(a progress bar's refresh, the listener's requests) go one at a time.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from typing import IO, cast

PATIENCE = 5.0
"""Seconds one write may wait for a terminal that does not take it."""
QUIET = 30.0
"""Seconds after such a wait in which writes are dropped without waiting."""

_guards: dict[int, GuardedTerminal] = {}  # by id() of the stream they guard


class GuardedTerminal:
    """A write-only text stream for ``stream``, a terminal: bounded, never failing."""

    def __init__(
        self, stream: IO[str], patience: float | None = None, quiet: float | None = None
    ) -> None:
        self.stream = stream
        self.patience = PATIENCE if patience is None else patience
        self.quiet = QUIET if quiet is None else quiet
        self.gone = False
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self._fd = stream.fileno()
        self._own_fd = _nonblocking_copy(self._fd)
        self._lock = threading.Lock()
        self._quiet_until = 0.0

    def write(self, text: str) -> int:
        if self.gone or not text:
            return len(text)
        with self._lock:
            if time.monotonic() < self._quiet_until:
                return len(text)  # stuck a moment ago: dropped without waiting again
            with contextlib.suppress(OSError, ValueError):  # gone, or closed meanwhile
                self.stream.flush()  # what was written to it directly goes first
            if not self._write(text.encode(self.encoding, errors="replace")):
                self._quiet_until = time.monotonic() + self.quiet
        return len(text)

    def _write(self, data: bytes) -> bool:
        """False when the terminal did not take it all in time (the rest is dropped)."""
        fd = self._fd if self._own_fd is None else self._own_fd
        deadline = time.monotonic() + self.patience
        while data:
            try:
                if self._own_fd is None and not _writable(fd, deadline):
                    return False
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                if not _writable(fd, deadline):
                    return False
            except OSError:
                self.gone = True
                return True  # gone, not stuck: `gone` drops the rest
        return True

    def flush(self) -> None:
        """Nothing to do: every write goes straight to the terminal."""

    def isatty(self) -> bool:
        return not self.gone

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True


def _nonblocking_copy(fd: int) -> int | None:
    """A new non-blocking descriptor of the terminal behind ``fd``, or None where
    it cannot be opened (then each write first waits until the terminal takes some)."""
    try:
        return os.open(os.ttyname(fd), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def _writable(fd: int, deadline: float) -> bool:
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    try:
        return bool(select.select([], [fd], [], left)[1])
    except (OSError, ValueError):
        return False


def guarded(stream: IO[str]) -> IO[str]:
    """``stream`` behind a `GuardedTerminal` if it is a terminal, else as it is.

    One guard per stream, so a terminal found gone stays gone for the process.
    While a progress bar is live, rich's stand-in for ``sys.stderr`` is returned as
    it is: it prints above the bar, through a console that is itself guarded.
    """
    if hasattr(stream, "rich_proxied_file"):
        return stream
    guard = _guards.get(id(stream))
    if guard is not None and guard.stream is stream:
        return cast(IO[str], guard)  # a write-only text stream, as rich and logging use it
    try:
        if not stream.isatty():
            return stream
        guard = GuardedTerminal(stream)
    except (AttributeError, OSError, ValueError):  # no descriptor, or closed
        return stream
    _guards[id(stream)] = guard
    return cast(IO[str], guard)
