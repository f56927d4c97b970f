"""Where an image's time comes from: ``created``, ``label``, ``first_seen``, and, from
the registry's storage, ``pushed`` and ``tagged``, and from its notifications ``pushed_event``.

A policy's ``time_source = ["created", "label", "first_seen"]`` picks the order;
``resolve_time`` takes the first trustworthy reading.  A time is not trusted when it
is missing, before 2013 (reproducible builds — ko, Jib, Bazel, Nix — write the Unix
epoch, and no container image predates Docker's 2013 release) or more than five
minutes in the future.  An untrusted time is never used to delete anything; the
note says why, so the plan can show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from regprune import hookimpl
from regprune.mediatypes import is_index
from regprune.models import Image, ManifestFacts, TimeReading
from regprune.timing import (  # noqa: F401  (re-exported for plugin authors)
    EARLIEST_TRUSTED,
    FUTURE_SLACK,
    UNIX_EPOCH,
    TimeSourceFn,
    aware,
    format_time,
    parse_rfc3339,
    resolve_time,
    untrusted,
)

CREATED_LABEL = "org.opencontainers.image.created"


def _newest(values: Iterable[datetime | None]) -> datetime | None:
    times = [value for value in values if value is not None]
    return max(times) if times else None


def _children_of_index(image: Image) -> list[ManifestFacts]:
    # Only an index has children; the media type check guards against odd input.
    return list(image.children) if is_index(image.facts.media_type) else []


def created_time(image: Image) -> TimeReading:
    """The ``created`` time of the image config; for an index, its newest platform image's."""
    own = image.facts.created
    if own:
        moment = parse_rfc3339(own)
        if moment is None:
            return TimeReading(None, f"created {own!r} is not an RFC 3339 time")
        return TimeReading(moment, "created")
    children = _children_of_index(image)
    newest = _newest(parse_rfc3339(child.created) for child in children)
    if newest is not None:
        return TimeReading(newest, "created (newest platform image of the index)")
    return TimeReading(None, "no created time in the image config")


def label_time(image: Image) -> TimeReading | None:
    """The ``org.opencontainers.image.created`` label (for an index, its newest child's)."""
    own = image.facts.labels.get(CREATED_LABEL)
    if own:
        moment = parse_rfc3339(own)
        if moment is None:
            return TimeReading(None, f"{CREATED_LABEL} {own!r} is not an RFC 3339 time")
        return TimeReading(moment, f"label {CREATED_LABEL}")
    values = [child.labels.get(CREATED_LABEL) for child in _children_of_index(image)]
    newest = _newest(parse_rfc3339(value) for value in values if value)
    if newest is not None:
        return TimeReading(newest, f"label {CREATED_LABEL} (newest platform image of the index)")
    if any(values):
        return TimeReading(None, f"{CREATED_LABEL} of the platform images is not an RFC 3339 time")
    return None  # knows nothing: the note reads "label: none"


def first_seen_time(image: Image) -> TimeReading:
    """When regprune first saw the digest (the engine sets it from its state DB)."""
    if image.first_seen is None:
        return TimeReading(None, "not recorded yet")
    return TimeReading(aware(image.first_seen), "first seen by regprune")


STORAGE_NEEDED = "known only from the registry's storage ([registry.NAME] storage)"


def pushed_time(image: Image) -> TimeReading:
    """When the manifest was pushed to the repository: its revision link's time in the storage."""
    if image.pushed is None:
        return TimeReading(None, f"push time {STORAGE_NEEDED}")
    return TimeReading(aware(image.pushed), "pushed (revision link in the storage)")


def tagged_time(image: Image) -> TimeReading:
    """When a tag last moved onto the image: its newest tag link's time in the storage."""
    if image.tagged_at is None:
        if image.pushed is not None and not image.tags:
            return TimeReading(None, "no tag points to it")
        return TimeReading(None, f"tag time {STORAGE_NEEDED}")
    return TimeReading(aware(image.tagged_at), "tagged (tag link in the storage)")


def pushed_event_time(image: Image) -> TimeReading:
    """When the registry reported the manifest's push (``regprune listen``)."""
    if image.usage is None or image.usage.first_push is None:
        return TimeReading(None, "no push recorded by regprune listen")
    return TimeReading(aware(image.usage.first_push), "pushed (registry event)")


@hookimpl
def register_time_sources(register: Callable[[str, TimeSourceFn], None]) -> None:
    """Register the ``created``, ``label``, ``first_seen``, ``pushed``, ``tagged`` and
    ``pushed_event`` time sources."""
    register("created", created_time)
    register("label", label_time)
    register("first_seen", first_seen_time)
    register("pushed", pushed_time)
    register("tagged", tagged_time)
    register("pushed_event", pushed_event_time)
