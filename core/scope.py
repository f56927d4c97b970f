"""Which repositories a policy (or `regprune ls`) covers, checked against the registry.

A repository named literally (no ``*``, ``?`` or ``[``) must exist: a typo is an
error (`UsageError`, exit 2) that suggests the closest names the registry has.  A
glob that matches nothing is only a warning: globs are meant to cover what comes
and goes.  Every front end gets the check because the engine makes it.

How a literal is checked, cheapest first:

- when the scope has a glob, the catalog is read anyway: a literal must be in it;
- otherwise each literal's tag list is read (``tags_or_none``: None when the
  registry answers 404, NAME_UNKNOWN); the scan reuses those lists, so a scope that
  is all literals still costs no request beyond the scan's own.  The catalog is read
  only to suggest names for a missing one, and when it cannot be read (no
  ``registry:catalog:*`` scope, no catalog API) the error says so.

A storage-backed source (``[registry.NAME] storage``) answers both from its files.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RegistryError, UsageError
from .registry import RegistryBackend
from .repository_names import repository_problem
from .scan import is_literal, match_repositories

__all__ = ["Scope", "resolve_scope", "suggestions"]

MAX_SUGGESTIONS = 3


@dataclass
class Scope:
    """The repositories to scan, and what the check found worth saying."""

    repositories: list[str]
    warnings: list[str] = field(default_factory=list)
    # Tag lists read while checking literals: the scan reuses them (no second request).
    listed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.repositories


def suggestions(name: str, catalog: Sequence[str]) -> list[str]:
    """The catalog's names closest to ``name`` (difflib's ratio), best first."""
    return difflib.get_close_matches(name, list(catalog), n=MAX_SUGGESTIONS, cutoff=0.6)


def resolve_scope(
    source: RegistryBackend,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    *,
    where: str,
    registry_url: str,
) -> Scope:
    """The repositories ``include``/``exclude`` cover on ``source``; `UsageError` for a
    literal name the registry does not have.  ``where`` names the setting or flag for
    messages (``policy ci``, ``ls``).  A name or glob no repository can have is a
    `UsageError` before any request (settings check them already; this is for callers
    that build a scope otherwise)."""
    for pattern in [*include, *exclude]:
        if (problem := repository_problem(pattern)) is not None:
            raise UsageError(f"{where}: {problem}")
    literals = [pattern for pattern in include if is_literal(pattern)]
    globs = [pattern for pattern in include if not is_literal(pattern)]
    scope = Scope(repositories=[])
    if globs:
        catalog = source.catalog()
        known = set(catalog)
        missing = [name for name in literals if name not in known]
        if missing:
            raise _missing(missing, catalog, None, where=where, registry_url=registry_url)
        names = [*catalog]
    else:
        found = _list_literals(source, literals)
        missing = [name for name in literals if found.get(name) is None]
        if missing:
            catalog, why = _catalog_or_reason(source)
            raise _missing(missing, catalog, why, where=where, registry_url=registry_url)
        scope.listed = {name: tags for name, tags in found.items() if tags is not None}
        names = list(literals)
    for pattern in globs:
        if not match_repositories(names, [pattern]):
            scope.warnings.append(
                f"{where}: {pattern!r} matches no repository on registry {registry_url}"
            )
    scope.repositories = match_repositories(names, include, exclude)
    if not scope.repositories and not scope.warnings:
        scope.warnings.append(f"{where}: every repository it names is excluded; nothing to scan")
    scope.listed = {name: tags for name, tags in scope.listed.items() if name in scope.repositories}
    return scope


def _list_literals(source: RegistryBackend, names: Sequence[str]) -> dict[str, list[str] | None]:
    """name -> its tags, or None when the registry does not have it."""
    unique = list(dict.fromkeys(names))
    lookup: Any = getattr(source, "tags_or_none", None)
    if lookup is None:
        # A back end without the optional method: the catalog tells, when it can.
        catalog, why = _catalog_or_reason(source)
        if why is not None:
            return {name: source.tags(name) for name in unique}  # cannot tell: scan as before
        known = set(catalog)
        return {name: (source.tags(name) if name in known else None) for name in unique}
    return dict(zip(unique, source.map(lookup, unique), strict=True))


def _catalog_or_reason(source: RegistryBackend) -> tuple[list[str], str | None]:
    """The catalog, or why it could not be read (it may need a scope literals do not)."""
    try:
        return source.catalog(), None
    except (RegistryError, UsageError) as exc:
        return [], str(exc)


def _missing(
    names: Sequence[str],
    catalog: Sequence[str],
    why: str | None,
    *,
    where: str,
    registry_url: str,
) -> UsageError:
    """One line: which names the registry does not have, and what it has instead."""
    parts = []
    for name in names:
        close = suggestions(name, catalog)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    what = "repository" if len(names) == 1 else "repositories"
    message = f"{where}: no {what} {', '.join(parts)} on registry {registry_url}"
    if why is not None:
        message += f"; no names to suggest: the catalog could not be read ({why.rstrip('.')})"
    elif not any(suggestions(name, catalog) for name in names):
        message += "; `regprune ls` lists the repositories it has"
    return UsageError(message)
