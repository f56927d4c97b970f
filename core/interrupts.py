"""Ctrl-C, SIGTERM and SIGHUP as one thing: an interruption that unwinds the stack.

`KeyboardInterrupt` is what all three become (inside `termination_as_interrupt`),
so every ``finally`` block runs on SIGTERM, and on SIGHUP when the terminal closes,
too: the lock is released, a GC child is stopped, ``after`` commands run.  A second
signal while the first one unwinds ends the process at once (the usual "press
Ctrl-C again"), after killing the process groups of the commands it started
(`track_group`): nothing regprune does while unwinding can keep it from ending,
except where clean-up must finish (`no_forced_exit`: a GC's ``after`` commands).
`deferred` holds the signals for a block that must finish (``after`` commands
leaving read-only mode) and delivers them at its end.  Signals can only be handled
in the main thread; elsewhere (a bot front end's workers) both context managers do
nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # signals seen since termination_as_interrupt started
_groups: set[int] = set()  # process groups of running commands (GC, before/after)
_must_finish = 0  # depth of no_forced_exit blocks


def track_group(pgid: int) -> None:
    """Note a running command's process group: a forced exit kills it first."""
    _groups.add(pgid)


def untrack_group(pgid: int) -> None:
    """The command of group ``pgid`` is gone (or was stopped)."""
    _groups.discard(pgid)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    if _received and not _must_finish:
        _force_exit(signum)
    _received.append(signum)
    raise KeyboardInterrupt


def _force_exit(signum: int) -> None:
    """End the process now, as the signal's default action would, with no clean-up
    but killing the commands it started (a GC left running would outlive it)."""
    for pgid in list(_groups):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    os._exit(128 + signum)  # only reached if the default action does not end it


def signal_name(signum: int | None) -> str:
    """``Ctrl-C`` for SIGINT (or no signal at all: a raised KeyboardInterrupt), else its name."""
    if signum is None or signum == signal.SIGINT:
        return "Ctrl-C"
    return signal.Signals(signum).name


def last_signal() -> int | None:
    """The last signal received inside `termination_as_interrupt`, or None."""
    return _received[-1] if _received else None


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM, SIGHUP and Ctrl-C raise `KeyboardInterrupt` in the
    main thread; a second one ends the process at once (see the module's docstring).

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
def no_forced_exit() -> Iterator[None]:
    """Within the block a second signal interrupts like the first, never ending the
    process at once: for work whose clean-up must run to the end (a GC's ``after``
    commands take the registry out of read-only mode)."""
    global _must_finish
    _must_finish += 1
    try:
        yield
    finally:
        _must_finish -= 1


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them.

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
