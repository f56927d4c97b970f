"""Read what the config names (a file, a command's output) with a limit, never blocking.

A path in the config may be anything: ``/dev/zero`` would be read until memory runs
out, a FIFO would block the open for ever, a directory fails late and obscurely.
Every file a config key names is therefore opened with ``O_NONBLOCK`` (a FIFO opens
at once instead of waiting for a writer), checked to be a regular file, checked
against a size limit, and read no further than that limit.  A command's standard
output is read the same way: past its limit the command is killed.

The refusals are `Refused` (a ValueError) with a message that names the path and
says what to do; callers prefix it with the config key, as they do their other
problems.
"""

from __future__ import annotations

import os
import selectors
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .paths import describe_mode

__all__ = [
    "CA_FILE_LIMIT",
    "COMMAND_OUTPUT_LIMIT",
    "DOCKER_CONFIG_LIMIT",
    "LIST_LIMIT",
    "Captured",
    "Refused",
    "capture",
    "check_regular_file",
    "limit_text",
    "read_regular_file",
]

MiB = 1024 * 1024
LIST_LIMIT = 16 * MiB
"""Bytes of a list file (``branches_file``, in_use ``file``)."""
COMMAND_OUTPUT_LIMIT = 16 * MiB
"""Bytes of standard output a ``branches_command`` or in_use ``command`` may print."""
DOCKER_CONFIG_LIMIT = 1 * MiB
"""Bytes of a Docker ``config.json`` (``docker_config``), and of a credential helper's answer."""
CA_FILE_LIMIT = 16 * MiB
"""Bytes of a ``ca_file`` (a whole system bundle is well under 1 MiB)."""
_STDERR_TAIL = 64 * 1024
"""Bytes of a command's standard error kept: its last line is all a message quotes."""
_CHUNK = 64 * 1024


class Refused(ValueError):
    """A file that is not a regular file or is over its limit, or a command whose
    output is over its limit.  The message names the path (or says "printed")."""


def limit_text(limit: int) -> str:
    """``16777216`` → ``16 MiB`` (limits are whole KiB or MiB)."""
    if limit % MiB == 0:
        return f"{limit // MiB} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


def _open_regular(path: str, limit: int, hint: str) -> tuple[int, int]:
    """An open descriptor of ``path`` and its size; Refused unless a regular file of
    at most ``limit`` bytes.  OSError (missing, no permission) passes through."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{path} is not a regular file ({describe_mode(info.st_mode)}); {hint}")
        if info.st_size > limit:
            raise Refused(
                f"{path} is {info.st_size} bytes, over the {limit_text(limit)} limit; {hint}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def check_regular_file(path: str, limit: int, hint: str = "point it at a file") -> None:
    """Refused unless ``path`` is a regular file of at most ``limit`` bytes (for a file
    another library reads, such as ``ssl``'s CA bundle)."""
    fd, _ = _open_regular(path, limit, hint)
    os.close(fd)


def read_regular_file(path: str, limit: int, hint: str = "point it at a file") -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; else Refused.

    Never blocks on a FIFO and never reads more than ``limit`` bytes, even from a
    file that grows while it is read.  OSError (missing, no permission) passes through.
    """
    fd, _ = _open_regular(path, limit, hint)
    try:
        parts: list[bytes] = []
        total = 0
        while True:
            part = os.read(fd, min(_CHUNK * 16, limit + 1 - total))
            if not part:
                return b"".join(parts)
            parts.append(part)
            total += len(part)
            if total > limit:
                raise Refused(f"{path} grew over the {limit_text(limit)} limit; {hint}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Captured:
    """How a command ended: its exit code, its whole stdout and the tail of its stderr."""

    returncode: int
    stdout: bytes
    stderr: bytes


def capture(
    argv: Sequence[str],
    *,
    timeout: float,
    limit: int,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> Captured:
    """Run ``argv`` and collect at most ``limit`` bytes of its standard output.

    Like ``subprocess.run(capture_output=True, timeout=...)``: the command is killed
    and ``subprocess.TimeoutExpired`` raised when it runs longer than ``timeout``
    seconds; it is killed and `Refused` raised ("printed more than ...") as soon as
    its output passes ``limit``.  Only the last 64 KiB of standard error are kept.
    Standard input is ``input`` (small: written at once), else /dev/null.  An OSError
    starting the command (not found, not executable) passes through.
    """
    deadline = time.monotonic() + timeout
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    out, err = bytearray(), bytearray()
    try:
        if process.stdin is not None:
            try:
                process.stdin.write(input or b"")
                process.stdin.close()
            except BrokenPipeError:
                pass
        assert process.stdout is not None and process.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ, out)
            selector.register(process.stderr, selectors.EVENT_READ, err)
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(list(argv), timeout)
                for key, _ in selector.select(left):
                    data = os.read(key.fd, _CHUNK)
                    if not data:
                        selector.unregister(key.fileobj)
                        continue
                    buffer: bytearray = key.data
                    buffer += data
                    if buffer is out and len(out) > limit:
                        raise Refused(f"printed more than {limit_text(limit)}; stopped it")
                    if buffer is err and len(err) > _STDERR_TAIL:
                        del err[:-_STDERR_TAIL]
        code = process.wait(max(deadline - time.monotonic(), 0.0))
        return Captured(code, bytes(out), bytes(err))
    except BaseException:
        process.kill()
        raise
    finally:
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait()
