"""What ``exec`` would say about a command, asked before it is started.

Commands are started through a start gate (see `regprune.processes`): a shell
that waits until regprune has recorded it, then ``exec``s the command.  For a
command that cannot run, the reason must still be the one ``exec`` itself gives
(not a shell's message), so the program is found and checked here first:
looked up in ``PATH`` as ``execvpe`` does, a directory or a file without the
execute bit refused, a file that is neither a ``#!`` script nor an ELF binary
refused as ``ENOEXEC`` would.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping

_RUNNABLE_HEADS = (b"#!", b"\x7fELF")


def _error(code: int, name: str) -> OSError:
    return OSError(code, os.strerror(code), name)


def resolve_executable(name: str, env: Mapping[str, str] | None = None) -> str:
    """The path ``exec`` would run for ``name``; raises the `OSError` it would raise.

    ``env`` is the command's environment (None: regprune's): its ``PATH`` is
    searched for a name without a ``/``.
    """
    if "/" in name:
        path = name
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    else:
        search = (os.environ if env is None else env).get("PATH", os.defpath)
        found = shutil.which(name, mode=os.F_OK, path=search)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        path = found
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
    try:
        with open(path, "rb") as program:
            head = program.read(4)
    except OSError:
        return path  # execute-only: exec may still run it, let it decide
    if not head.startswith(_RUNNABLE_HEADS):
        raise _error(errno.ENOEXEC, name)
    return path
