"""Ctrl-C and SIGTERM as one thing: an interruption that unwinds the stack.

`KeyboardInterrupt` is what both become (inside `termination_as_interrupt`), so
every ``finally`` block runs on SIGTERM too: the lock is released, a GC child is
stopped, ``after`` commands run.  `deferred` holds both signals for a block that
must finish (``after`` commands leaving read-only mode) and delivers them at its
end.  Signals can only be handled in the main thread; elsewhere (a bot front end's
workers) both context managers do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # signals seen since termination_as_interrupt started


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def signal_name(signum: int | None) -> str:
    """``Ctrl-C`` for SIGINT (or no signal at all: a raised KeyboardInterrupt), else its name."""
    if signum is None or signum == signal.SIGINT:
        return "Ctrl-C"
    return signal.Signals(signum).name


def last_signal() -> int | None:
    """The last SIGINT/SIGTERM received inside `termination_as_interrupt`, or None."""
    return _received[-1] if _received else None


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (and Ctrl-C) raise `KeyboardInterrupt` in the main thread.

    A signal the process was started with ignored (``nohup``, a background job's
    SIGINT) stays ignored.  The previous handlers come back on exit.
    """
    if not _in_main_thread():
        yield
        return
    _received.clear()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig, handler in previous.items():
        if handler in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, _raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    For work that must not be cut short by a second Ctrl-C: the ``after`` commands
    that take the registry out of read-only mode.  A signal that arrived meanwhile is
    raised again once the previous handlers are back (so it becomes a
    `KeyboardInterrupt`, or ends the process where SIGTERM has its default action).
    """
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {}
    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not signal.SIG_IGN:
            previous[sig] = handler
            signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in dict.fromkeys(pending):  # each kind once, in arrival order
        signal.raise_signal(signum)
