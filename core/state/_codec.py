"""Encoding shared by the state DB's parts: datetimes as sortable text, canonical JSON,
chunks of bound variables."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

# Well under SQLite's limit on bound variables (999 before 3.32), and large enough
# that 2,000 digests cost four queries.
CHUNK = 500


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a plan's content (``Plan.content()``)."""
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def canonical(content: dict[str, Any]) -> str:
    """The one JSON spelling of a plan's content that its hash is taken of."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_db(dt: datetime) -> str:
    """A datetime as a sortable ISO-8601 UTC string (naive means UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_db(text: str | None) -> datetime | None:
    """A stored datetime (or None) as a timezone-aware datetime."""
    return parse(text) if text else None


def parse(text: str) -> datetime:
    """A stored ISO-8601 string as a timezone-aware datetime (naive means UTC)."""
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most ``size`` (one query each)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in first-seen order (keeps queries deterministic)."""
    return list(dict.fromkeys(items))
