"""Checks on ``[registry.NAME.gc]`` made before anything runs.

Two jobs, both pure (no process is started, no request made):

- `validate_commands`: every ``before``/``command``/``after`` entry is a non-empty
  list of non-empty words whose program exists and is executable.  An ``after``
  command that cannot start would leave the registry read-only once ``before``
  switched it, so all of them are checked before the first one runs.
- `delete_untagged_spelling`: whether the GC command asks for ``--delete-untagged``,
  read the way the registry reads it.  ``registry garbage-collect`` parses its
  flags with cobra/pflag, which accepts ``--delete-untagged``, ``--delete-untagged=V``,
  ``-m``, ``-m=V`` and ``-m`` inside a group of short flags (``-dm``), interspersed
  with positional arguments until ``--``; for a bool flag, V is anything Go's
  ``strconv.ParseBool`` takes, and the last occurrence wins.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from .config import GcSettings
from .errors import ConfigError
from .executables import resolve_executable
from .gc_env import gc_environment
from .paths import PathProblem, path_kind

SUBCOMMAND = "garbage-collect"
LONG_FLAG = "--delete-untagged"
SHORT_FLAG = "m"
# Go's strconv.ParseBool; any other value makes pflag refuse the command line.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _words(command: Sequence[str]) -> list[str]:
    """The command's words, with shell snippets (``sh -c "..."``) split into theirs."""
    words: list[str] = []
    for word in command:
        if any(char.isspace() for char in word):
            try:
                words.extend(shlex.split(word))
            except ValueError:  # unbalanced quotes: a rough split still finds flags
                words.extend(word.split())
        else:
            words.append(word)
    return words


class _InvalidValue(Exception):
    """A bool flag's value Go's strconv.ParseBool rejects."""


def _flag_value(value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise _InvalidValue(value)


def _scan_pflag(words: Sequence[str]) -> tuple[bool, str] | None:
    """The last ``--delete-untagged`` setting in pflag-parsed ``words``: (value, spelling)."""
    found: tuple[bool, str] | None = None
    for word in words:
        if word == "--":
            break  # pflag: everything after is positional
        if word.startswith("--"):
            name, sep, value = word.partition("=")
            if name == LONG_FLAG:
                found = (_flag_value(value) if sep else True, word)
            continue
        if len(word) < 2 or not word.startswith("-"):
            continue  # a positional argument (cobra parses flags interspersed)
        shorts = word[1:]
        while shorts:
            char, rest = shorts[0], shorts[1:]
            if rest.startswith("="):
                # '-m=V' (also at the end of a group: '-dm=V'): the rest is a value.
                if char == SHORT_FLAG:
                    found = (_flag_value(rest[1:]), word)
                break
            if char == SHORT_FLAG:
                found = (True, word)
            # The registry's other short flags (-d, -q, -h) are bools too, so a group
            # goes on; an unknown letter would make pflag fail, so reading on is safe.
            shorts = rest
    return found


def delete_untagged_spelling(command: Sequence[str] | None, key: str = "gc.command") -> str | None:
    """How ``command`` sets ``--delete-untagged`` to true (e.g. ``'-dm'``), or None.

    Flags are read after the ``garbage-collect`` word (flags before it make the
    registry fail: its root command has no ``-m``).  Without a ``garbage-collect``
    word (a wrapper script), only the unambiguous long spelling counts, anywhere: a
    wrapper's own ``-m`` (``python -m``, ``docker run -m 1g``) is not the registry's.
    A value the registry would reject (``--delete-untagged=yes``; it then exits 0
    without collecting anything) is a `ConfigError` naming ``key``.
    """
    if not command:
        return None
    words = _words(command)
    if SUBCOMMAND in words:
        words = words[words.index(SUBCOMMAND) + 1 :]
    else:
        words = [word for word in words if word.startswith("--")]
    try:
        found = _scan_pflag(words)
    except _InvalidValue as exc:
        raise ConfigError(
            f"{key}: {exc.args[0]!r} is not a value the registry accepts for"
            " --delete-untagged (it would exit 0 without collecting anything); use true or false"
        ) from None
    return found[1] if found and found[0] else None


def _executable(program: str, path: str | None) -> str | None:
    """Why ``program`` cannot be started, or None when it can (as far as we can tell).

    ``path`` is the commands' own PATH (see ``gc_env``): that is where they are run from.
    """
    if "\0" in program:
        return "contains a NUL character"
    try:
        resolve_executable(program, {} if path is None else {"PATH": path})
    except FileNotFoundError:
        if os.sep in program:
            return "does not exist"
        return "is not found on PATH (give its full path or install it)"
    except PermissionError:
        return "is a directory" if os.path.isdir(program) else "is not executable (chmod +x it)"
    except OSError:
        return None  # ENOEXEC (no #! line): the start says so, with exec's own words
    return None


def validate_commands(gc: GcSettings, registry: str) -> None:
    """Raise `ConfigError` naming the key of the first command that cannot run.

    Checked up front, so nothing (no ``before`` command) runs when any of them,
    ``after`` included, is empty, has an empty word or names no executable program,
    or when ``storage_path`` is a name no file system takes (too long).
    """
    path = gc_environment(gc).get("PATH")
    entries: list[tuple[str, object]] = []
    if gc.command is not None:
        entries.append(("command", gc.command))
    entries += [(f"before.{i}", step) for i, step in enumerate(gc.before)]
    entries += [(f"after.{i}", step) for i, step in enumerate(gc.after)]
    for key, argv in entries:
        where = f"registry.{registry}.gc.{key}"
        if not isinstance(argv, list) or not argv:
            raise ConfigError(
                f"{where}: give the command as a non-empty list of words, e.g."
                ' ["registry", "garbage-collect", "/etc/docker/registry/config.yml"]'
            )
        for n, word in enumerate(argv):
            if not isinstance(word, str) or not word.strip():
                raise ConfigError(
                    f"{where}: word {n} is empty; remove it or give the argument it stands for"
                )
        problem = _executable(argv[0], path)
        if problem:
            raise ConfigError(f"{where}: program {argv[0]!r} {problem}")
    if gc.storage_path:
        try:
            path_kind(gc.storage_path)
        except PathProblem as exc:
            # Missing or unreadable only means the bytes freed are not recorded; a
            # name no file system takes is a mistake in the config.
            if exc.bad_name:
                raise ConfigError(
                    f"registry.{registry}.gc.storage_path: {exc}; set it to the registry's "
                    "storage root on this machine, or remove it"
                ) from None
