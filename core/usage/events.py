"""Reading Distribution's notification envelopes into `UsageEvent`s.

The registry POSTs ``{"events": [...]}`` (media type
``application/vnd.docker.distribution.events.v1+json``); each event has an ``id``,
a ``timestamp``, an ``action`` (push, pull, delete, mount), a ``target`` (mediaType,
digest, repository, tag, size, url) and the ``request`` that caused it (addr, host,
method, useragent).  Only manifest pushes and pulls are use: a blob event's target
is a layer or config (``application/octet-stream`` and the like), deletes and mounts
are not pulls.  regprune's own reads and the configured ``ignore_agents`` never
count.  Nothing here touches the state DB: `parse_envelope` is a pure function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..mediatypes import MANIFEST_TYPES
from ..patterns import Pattern
from ..state.usage import UsageEvent

ENVELOPE_TYPE = "application/vnd.docker.distribution.events.v1+json"
OWN_AGENT = re.compile(r"^regprune/")
"""regprune's scans send ``regprune/<version>``: they read every manifest, never use it."""
FUTURE_SLACK = timedelta(minutes=5)
"""A timestamp further ahead than this is a wrong clock: it becomes the received time."""

_MANIFESTS = frozenset(MANIFEST_TYPES)
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# Go writes RFC 3339 with up to nine fractional digits; Python reads six.
_FRACTION = re.compile(r"(\.\d{6})\d+")


class EnvelopeError(ValueError):
    """The body is not a notification envelope at all (not JSON, no ``events`` list)."""


@dataclass
class Parsed:
    """What one envelope held: the events to record, and what was left out and why."""

    events: list[UsageEvent] = field(default_factory=list)
    ignored: int = 0  # not use: blobs, deletes, mounts, regprune's and ignored agents' reads
    dropped: list[str] = field(default_factory=list)  # malformed events, one reason each
    clamped: list[str] = field(default_factory=list)  # ids whose future timestamp was clamped
    total: int = 0


def parse_envelope(
    body: bytes, received: datetime, ignore_agents: Sequence[Pattern] = ()
) -> Parsed:
    """The manifest pushes and pulls of one envelope; raise `EnvelopeError` when the
    body is not an envelope.  A malformed event is dropped with a reason, never raised:
    the registry would redeliver the whole envelope forever."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"body is not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise EnvelopeError('body is not an envelope: expected {"events": [...]}')
    parsed = Parsed(total=len(document["events"]))
    for index, raw in enumerate(document["events"]):
        try:
            event = _event(raw, received, ignore_agents, parsed)
        except ValueError as exc:
            shown = raw.get("id") if isinstance(raw, dict) else None
            label = f"event {shown!r}" if isinstance(shown, str) else f"event #{index}"
            parsed.dropped.append(f"{label}: {exc}")
            continue
        if event is None:
            parsed.ignored += 1
        else:
            parsed.events.append(event)
    return parsed


def _event(
    raw: Any, received: datetime, ignore_agents: Sequence[Pattern], parsed: Parsed
) -> UsageEvent | None:
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("no id")
    action = raw.get("action")
    if not isinstance(action, str):
        raise ValueError("no action")
    target = raw.get("target")
    if not isinstance(target, dict):
        raise ValueError("no target")
    if action not in ("push", "pull") or target.get("mediaType") not in _MANIFESTS:
        return None  # a delete, a mount, a blob: not the use of an image
    request = raw.get("request")
    agent = request.get("useragent") if isinstance(request, dict) else None
    agent = agent if isinstance(agent, str) and agent else None
    if action == "pull" and agent is not None and _ignored(agent, ignore_agents):
        return None
    repository = target.get("repository")
    if not isinstance(repository, str) or not repository:
        raise ValueError("no target.repository")
    digest = target.get("digest")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ValueError(f"target.digest {_shown(digest)} is not a digest")
    tag = target.get("tag")
    timestamp = _timestamp(raw.get("timestamp"))
    if timestamp > received + FUTURE_SLACK:
        parsed.clamped.append(event_id)
        timestamp = received
    return UsageEvent(
        id=event_id,
        action=action,  # type: ignore[arg-type]  # checked above: push or pull
        repository=repository,
        digest=digest,
        timestamp=timestamp,
        tag=tag if isinstance(tag, str) and tag else None,
        agent=agent,
    )


def _ignored(agent: str, ignore_agents: Sequence[Pattern]) -> bool:
    return bool(OWN_AGENT.match(agent)) or any(p.search(agent) for p in ignore_agents)


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("no timestamp")
    text = _FRACTION.sub(r"\1", value.strip())
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {_shown(value)} is not RFC 3339") from None
    if when.tzinfo is None:
        raise ValueError(f"timestamp {_shown(value)} has no time zone")
    return when.astimezone(UTC)


def _shown(value: Any, limit: int = 80) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
