"""Encoding shared by the state DB's parts: datetimes as sortable text, canonical JSON,
chunks of bound variables."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Well under SQLite's limit on bound variables (999 before 3.32), and large enough
# that 2,000 digests cost four queries.
CHUNK = 500


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a plan's content (``Plan.content()``)."""
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def canonical(content: Any) -> str:
    """The one JSON spelling of a plan's content that its hash is taken of."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_pieces(
    head: dict[str, Any], lists: Mapping[str, Iterable[Any]], batch: int = 1000
) -> Iterator[str]:
    """``canonical(content)`` in pieces, where ``content`` is ``head`` with each key of
    ``lists`` holding ``[item.to_dict() for item in lists[key]]``.

    The items are encoded ``batch`` at a time, so no list of item dicts (about 1 KB per
    item) is ever built: joined, the pieces are exactly ``canonical(content)`` (keys
    sorted, the same separators), and so hash the same.
    """
    yield "{"
    for index, key in enumerate(sorted({*head, *lists})):
        yield ("," if index else "") + canonical(key) + ":"
        if key not in lists:
            yield canonical(head[key])
            continue
        parts: list[str] = []
        first = True
        yield "["
        for item in lists[key]:
            parts.append(canonical(item.to_dict()))
            if len(parts) == batch:
                yield ("" if first else ",") + ",".join(parts)
                parts, first = [], False
        if parts:
            yield ("" if first else ",") + ",".join(parts)
        yield "]"
    yield "}"


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
