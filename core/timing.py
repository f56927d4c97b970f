"""An image's build time: the first trustworthy answer of the policy's time sources.

Tags carry no dates, so age comes from the image itself.  A time is not trusted
when it is missing, before 2013 (reproducible builds — ko, Jib, Bazel, Nix — write
the Unix epoch; no container image predates Docker's 2013 release) or more than
five minutes in the future.  An image without a trusted time is never selected by
age, and the note says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ConfigError

EARLIEST_TRUSTED = datetime(2013, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(minutes=5)


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 time (any precision, ``Z`` or offset) into an aware UTC datetime."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes nanoseconds; Python takes at most microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def untrusted_reason(moment: datetime, now: datetime) -> str | None:
    """Why a time cannot be trusted, or None when it can."""
    if moment < EARLIEST_TRUSTED:
        if moment.year == 1970:
            return f"{moment:%Y-%m-%dT%H:%M:%SZ} (the Unix epoch, as reproducible builds set it)"
        return f"{moment:%Y-%m-%dT%H:%M:%SZ} (before 2013, not a real build time)"
    if moment > now + FUTURE_SLACK:
        return f"{moment:%Y-%m-%dT%H:%M:%SZ} (in the future)"
    return None


def check_time_sources(names: Sequence[str], available: Mapping[str, Any], where: str) -> None:
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ConfigError(
            f"{where}: unknown time source {unknown[0]!r} (available: {', '.join(sorted(available))})"
        )


def resolve_time(
    image: Any,
    names: Sequence[str],
    available: Mapping[str, Callable[[Any], Any]],
    now: datetime,
) -> tuple[datetime | None, str | None, str | None]:
    """Return (time, source, note): the first trustworthy reading, or (None, None, why not)."""
    notes = []
    for name in names:
        reading = available[name](image)
        if reading is None or reading.time is None:
            notes.append(f"{name}: {reading.note if reading else 'nothing'}")
            continue
        moment = reading.time if reading.time.tzinfo else reading.time.replace(tzinfo=UTC)
        problem = untrusted_reason(moment, now)
        if problem is None:
            return moment, name, None
        notes.append(f"{name}: {problem}")
    return None, None, "no trustworthy build time (" + "; ".join(notes) + ")"
