"""Repository names and globs as the Distribution registry accepts them.

A name is path components joined by ``/``; each component is lower-case letters
and digits, with ``.``, ``_``, ``__`` or dashes between them; the whole name has at
most 255 characters (Distribution's reference grammar).  A name outside it would
reach the registry as a 301, a 404 or a 500, so every repository a policy, a flag
or an argument names is checked here first, before any request.

A glob (an entry with ``*``, ``?`` or ``[``) is only checked for what can never
match: an empty entry and empty path components (``//``, ``/`` at either end).
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "NAME_RULE",
    "REPOSITORY_NAME",
    "check_repository",
    "repository_problem",
]

MAX_NAME_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_PATTERN = rf"{_COMPONENT}(?:/{_COMPONENT})*"
"""Distribution's repository name grammar, unanchored: the one copy regprune has."""
REPOSITORY_NAME = re.compile(NAME_PATTERN)
"""`NAME_PATTERN` compiled; use ``fullmatch``."""
_NAME = REPOSITORY_NAME
NAME_RULE = (
    "use lower-case letters and digits, '.', '_', '__' or '-' between them, and single "
    "'/' between path components, e.g. 'team/app-web'"
)
_SHOWN = 60


def _shown(name: str) -> str:
    text = repr(name)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 4] + "...'"


def _is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def repository_problem(pattern: str) -> str | None:
    """What is wrong with a repository name or glob, in a few words, or None."""
    if not pattern:
        return "empty repository name; give a name like 'team/app' or a glob like 'ci/*'"
    if _is_glob(pattern):
        if pattern.startswith("/") or pattern.endswith("/") or "//" in pattern:
            return (
                f"glob {_shown(pattern)} has an empty path component ('//', or '/' at the "
                "start or end); no repository name has one"
            )
        return None
    if len(pattern) > MAX_NAME_LENGTH:
        return (
            f"repository name {_shown(pattern)} has {len(pattern)} characters; "
            f"a repository name has at most {MAX_NAME_LENGTH}"
        )
    if not _NAME.fullmatch(pattern):
        if _NAME.fullmatch(pattern.lower()):
            return (
                f"{_shown(pattern)} is not a repository name: names are lower-case, "
                f"e.g. {_shown(pattern.lower())}"
            )
        return f"{_shown(pattern)} is not a repository name: {NAME_RULE}"
    return None


def check_repository(pattern: str) -> str:
    """Return ``pattern`` unchanged, or raise ValueError saying what is wrong (pydantic)."""
    problem = repository_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    return pattern
