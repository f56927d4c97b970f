"""What a path from the config, a flag or the environment names, without surprises.

``Path.exists()``, ``is_file()`` and ``is_dir()`` answer False for a missing path but
re-raise every other ``OSError``: a name too long (ENAMETOOLONG), a parent that
cannot be searched (EACCES).  Those reached the user as "unexpected OSError".
`path_kind` answers what is there, or raises `PathProblem` with a few words for
the caller to put after the key or flag it names.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Literal

__all__ = ["PathKind", "PathProblem", "describe_mode", "describe_other", "path_kind", "shown_path"]

PathKind = Literal["missing", "file", "directory", "other"]
_REASONS = {
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.EACCES: "permission denied on the way to it",
}
_SHOWN = 80


class PathProblem(ValueError):
    """The path cannot be looked at; the message says why in a few words, ``errno``
    the error number (None for a NUL in the name)."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.errno = code

    @property
    def bad_name(self) -> bool:
        """Whether the name itself is wrong (too long, a NUL), whatever is on disk."""
        return self.errno in (None, errno.ENAMETOOLONG)


def path_kind(path: str | os.PathLike[str]) -> PathKind:
    """``missing``, ``file`` (a regular file), ``directory`` or ``other`` (a FIFO, a
    device, a socket); symbolic links are followed."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except ValueError:  # os.stat refuses a NUL in the name
        raise PathProblem("the name contains a NUL character") from None
    except OSError as exc:
        reason = _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        raise PathProblem(reason, exc.errno) from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "other"


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)


def describe_mode(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for a message: "a FIFO", "a directory"..."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def describe_other(path: str | os.PathLike[str]) -> str:
    """What a path of kind ``other`` is, for a message: "a FIFO", "a character device"..."""
    try:
        return describe_mode(os.stat(path).st_mode)
    except (OSError, ValueError):
        return "not a regular file"


def shown_path(path: str | os.PathLike[str]) -> str:
    """The path for a one-line message, its middle cut when it is very long."""
    text = os.fspath(path)
    if len(text) <= _SHOWN:
        return text
    return f"{text[:40]}...{text[-20:]} ({len(text)} characters)"
