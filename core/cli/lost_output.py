"""Standard output that went away mid-command: a pipe's reader ended, a terminal closed.

``regprune ls | head`` closes the pipe after ten lines; a closed terminal window
takes stdout with it.  Neither is a bug in regprune, and what the command did
stays done (a stored plan, deleted items).  Such a write error ends the command
with exit code 1 and no traceback; standard output is pointed at the null
device first, so the interpreter's last flush on exit cannot fail a second time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys

_GONE_ERRNOS = (errno.EPIPE, errno.EIO)
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_HUNG_UP = select.POLLERR | select.POLLHUP | select.POLLNVAL


def is_full_output(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that found no room (``> /dev/full``, a full disk or
    quota): the state DB reports its own as SQLite errors, so this is the output."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def open_missing_streams() -> None:
    """A process started with stdout or stderr closed (``>&-``) has None there: point
    it at the null device, so the command runs and its output goes nowhere."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115  # for the process's life


def is_lost_output(exc: BaseException) -> bool:
    """Whether ``exc`` is a write error of a standard output that is gone for good."""
    if not isinstance(exc, OSError) or exc.errno not in _GONE_ERRNOS:
        return False
    return _stdout_hung_up()


def _stdout_hung_up() -> bool:
    # Another EIO/EPIPE (a failing disk, a socket) leaves stdout itself fine.
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & _HUNG_UP for _, events in poller.poll(0))


def silence_stdout() -> None:
    """Point the process's standard output at the null device."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
