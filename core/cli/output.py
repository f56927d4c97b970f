"""The consoles the CLI prints through: a terminal's width on a terminal, no width at all elsewhere.

On a terminal rich folds tables to fit the screen.  Output to a pipe or a file is
for scripts, logs and ``grep``: there a line is as long as its text (a table row
never folds, a long reason stays on one line) and no line ends in the spaces rich
pads its cells with.  Which case applies is decided at each write, from whatever
``sys.stdout`` / ``sys.stderr`` is then (tests swap them).  On a terminal, stderr
is written through `regprune.terminal_guard`: a terminal that stops reading
or goes away drops the bars and warnings instead of stopping the command.
"""

from __future__ import annotations

import contextlib
import sys
from typing import IO, Any, cast

from rich.console import Console, ConsoleDimensions

from ..terminal_guard import GuardedTerminal, guarded

# Wide enough for any row regprune prints: rich needs a number, and tables do not
# expand to it (they take their content's width).
PIPE_WIDTH = 100_000


def _stream(stderr: bool) -> IO[str]:
    stream = sys.stderr if stderr else sys.stdout
    # While a progress bar is live, rich swaps in a proxy that prints through the
    # console: the console itself must write to the stream behind it.
    return getattr(stream, "rich_proxied_file", stream)


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class TrimmedLines:
    """Writes to the current stdout (or stderr) without the spaces that end a line.

    Spaces at the end of a write are held back until the next write shows whether
    more text follows them on the same line, so a line written in pieces is
    trimmed as a whole.
    """

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._spaces = ""

    def write(self, text: str) -> int:
        lines = (self._spaces + text).split("\n")
        last = lines[-1].rstrip(" ")
        self._spaces = lines[-1][len(last) :]
        with self._diagnostics():
            _stream(self.stderr).write(
                "\n".join([*(line.rstrip(" ") for line in lines[:-1]), last])
            )
        return len(text)

    def flush(self) -> None:
        with self._diagnostics():
            _stream(self.stderr).flush()

    def _diagnostics(self) -> contextlib.AbstractContextManager[None]:
        # Stderr that went away (a log pipe's reader left) loses the warning, not the work.
        return contextlib.suppress(OSError) if self.stderr else contextlib.nullcontext()

    def isatty(self) -> bool:
        return False


class OutputConsole(Console):
    """A rich console for stdout (``stderr=True``: stderr) that prints to a terminal as
    rich does, and to a pipe or a file at no width and with no trailing spaces."""

    def __init__(self, **options: Any) -> None:
        # Before rich's own set-up, which already asks for ``file``.
        self._trimmed = TrimmedLines(stderr=bool(options.get("stderr")))
        # What regprune prints holds the user's text (globs, regexes, names): a `[`
        # or `:name:` in it is text, never rich markup or an emoji code.
        options.setdefault("markup", False)
        options.setdefault("emoji", False)
        super().__init__(**options)

    @property
    def file(self) -> IO[str]:
        stream = _stream(self.stderr)
        if self.stderr:
            # Bars and warnings must not hang or fail the command on a terminal nobody
            # reads; a terminal found gone stays guarded (it no longer says it is one).
            guard = guarded(stream)
            if isinstance(guard, GuardedTerminal):
                return cast(IO[str], guard)
        return stream if is_terminal(stream) else cast(IO[str], self._trimmed)

    @file.setter
    def file(self, value: IO[str]) -> None:
        self._file = value

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if is_terminal(_stream(self.stderr)):
            return size
        return ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]  # mypy types a property as its value
