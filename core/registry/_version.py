"""Which major version of Distribution a registry runs: configured, else detected.

``[registry.NAME] version = 2 | 3`` wins whenever it is set.  Otherwise the version
is *detected* from what the registry's ordinary GET answers say, never from a DELETE
(a plan sends none):

- Distribution 2.8 answers its JSON endpoints (``/v2/``, ``_catalog``, ``tags/list``,
  errors) with ``Content-Type: application/json; charset=utf-8``; 3.x (checked on
  3.1.1) with ``Content-Type: application/json``.  The scan reads a catalog or a tag
  list anyway, so the first such answer is looked at and detection usually costs no
  request at all; only when nothing has been read yet does it send ``GET /v2/``.
- Anything else (another Content-Type, no answer) is "unknown": ``None``.

A proxy in front of the registry can fool this: one that rewrites or normalizes
``Content-Type`` (adding or dropping ``charset``), or that answers ``/v2/`` itself.
So every caller uses the version in the direction where a wrong answer is safe (see
docs/distribution-3.md): a wrong "3" for untag only meets a refused tag DELETE, and
gc's 2.x ``--delete-untagged`` judgement is silenced by a *configured* 3 only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import RegpruneError

__all__ = [
    "RegistryVersion",
    "VersionSniffer",
    "resolve_version",
    "version_from_content_type",
    "version_of",
]

VersionSource = Literal["configured", "detected", "unknown"]

# Exactly what each version's JSON handlers set (Distribution's errcode.ServeJSON and apiBase).
_BY_CONTENT_TYPE: dict[str, Literal[2, 3]] = {
    "application/json; charset=utf-8": 2,
    "application/json": 3,
}


@dataclass(frozen=True)
class RegistryVersion:
    """A registry's major version, where it came from, and what it was told by."""

    number: Literal[2, 3] | None
    source: VersionSource
    evidence: str

    @property
    def label(self) -> str:
        """``"Distribution 3.x (detected: ...)"`` for people."""
        if self.number is None:
            return f"Distribution version unknown ({self.evidence})"
        return f"Distribution {self.number}.x ({self.source}: {self.evidence})"

    def to_dict(self) -> dict[str, Any]:
        """The ``registry_version`` of ``plan --json``."""
        return {"version": self.number, "source": self.source, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegistryVersion:
        number = data.get("version")
        return cls(
            number if number in (2, 3) else None,
            data.get("source", "unknown"),
            str(data.get("evidence", "")),
        )


def version_from_content_type(value: str | None) -> Literal[2, 3] | None:
    """2 or 3 from the Content-Type of a Distribution JSON answer; None when it says neither."""
    if not value:
        return None
    normalized = "; ".join(part.strip().lower() for part in value.split(";"))
    return _BY_CONTENT_TYPE.get(normalized)


class VersionSniffer:
    """Remembers what the first JSON answer of a registry said about its version.

    Thread-safe: the scan's threads may all offer answers; the first one counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: tuple[Literal[2, 3] | None, str] | None = None

    def observe(self, content_type: str | None, what: str) -> None:
        """Look at the Content-Type of a successful JSON answer to ``what``
        (e.g. ``"GET /v2/"``)."""
        with self._lock:
            if self._seen is not None:
                return
            number = version_from_content_type(content_type)
            shown = content_type or "none"
            self._seen = (number, f"{what} answered Content-Type {shown}")

    @property
    def seen(self) -> tuple[Literal[2, 3] | None, str] | None:
        """``(number or None, evidence)`` once an answer was observed, else None."""
        with self._lock:
            return self._seen


def resolve_version(
    name: str,
    configured: Literal[2, 3] | None,
    detected: tuple[Literal[2, 3] | None, str] | None,
) -> RegistryVersion:
    """The configured version of ``[registry.NAME]`` when set, else the detected one,
    else unknown."""
    if configured is not None:
        return RegistryVersion(configured, "configured", f"[registry.{name}] version = {configured}")
    if detected is None:
        return RegistryVersion(None, "unknown", "the registry's back end does not tell")
    number, evidence = detected
    if number is None:
        return RegistryVersion(None, "unknown", evidence)
    return RegistryVersion(number, "detected", evidence)


def version_of(name: str, configured: Literal[2, 3] | None, backend: object) -> RegistryVersion:
    """The version of ``[registry.NAME]`` served by ``backend``: configured, else what its
    ``detect_version()`` says (a back end without that method tells nothing)."""
    if configured is not None:
        return resolve_version(name, configured, None)
    detect = getattr(backend, "detect_version", None)
    if not callable(detect):
        return resolve_version(name, None, None)
    try:
        detected = detect()
    except RegpruneError as exc:  # the same failure will surface where it matters
        detected = (None, f"GET /v2/ failed: {exc.message}")
    return resolve_version(name, None, detected)
