"""An image's build time: the first trustworthy answer of the policy's time sources.

Tags carry no dates, so age comes from the image itself.  A time is not trusted
when it is missing, before 2013 (reproducible builds — ko, Jib, Bazel, Nix — write
the Unix epoch, and no container image predates Docker's 2013 release) or more
than five minutes in the future.  An image without a trusted time is never
selected by age; the note says why, so the plan can show it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .durations import format_duration
from .errors import ConfigError
from .models import Image, TimeReading


def aware(moment: datetime) -> datetime:
    """Treat a naive datetime as UTC, so comparisons never raise."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


EARLIEST_TRUSTED = datetime(2013, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(minutes=5)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimeSourceFn = Callable[[Image], "TimeReading | None"]

_RFC3339 = re.compile(
    r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?$"
)


def parse_rfc3339(value: str | None) -> datetime | None:
    """Parse an RFC 3339 time into an aware UTC datetime, or None when it is not one.

    Accepts ``Z`` or ``±HH:MM`` offsets and any number of fractional digits (Go writes
    nanoseconds; the extra digits are dropped).  A time without an offset is taken
    as UTC.
    """
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    parts = match.groupdict()
    fraction = (parts["fraction"] or "")[:6].ljust(6, "0")
    zone = parts["zone"]
    if zone is None or zone in ("Z", "z"):
        tz: timezone = UTC
    else:
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= timedelta(hours=24):
            return None
        tz = timezone(-offset if zone[0] == "-" else offset)
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"]),
            int(parts["minute"]),
            min(int(parts["second"]), 59),  # a leap second :60 is kept as :59
            int(fraction),
            tzinfo=tz,
        )
    except ValueError:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
        return None


def format_time(moment: datetime) -> str:
    """``1970-01-01T00:00:00Z`` (year zero-padded, unlike strftime on Linux)."""
    m = aware(moment).astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def untrusted(moment: datetime, now: datetime) -> str | None:
    """Why a time cannot be trusted, or None when it can."""
    moment, now = aware(moment), aware(now)
    if moment == UNIX_EPOCH:
        return "the Unix epoch, set by reproducible builds"
    if moment.year == 1:
        return "the zero time, not a real build time"
    if moment < EARLIEST_TRUSTED:
        return "before 2013, earlier than any container image"
    if moment > now + FUTURE_SLACK:
        return f"{format_duration(moment - now)} in the future; is a clock wrong?"
    return None


def resolve_time(
    image: Image,
    sources: Sequence[str],
    available: Mapping[str, TimeSourceFn],
    now: datetime,
) -> tuple[datetime | None, str | None, str | None]:
    """Return ``(time, source_name, note)`` from the first trustworthy reading in order.

    Without a trustworthy reading the result is ``(None, None, note)`` where the note
    explains every source, e.g. ``created is 1970-01-01T00:00:00Z (the Unix epoch, set
    by reproducible builds); label: none; first_seen: not configured``.  When a later
    source gives the time, the note explains why the earlier ones were passed over
    (None when the first source answered).  Unknown source names raise ValueError.
    """
    unknown = [name for name in sources if name not in available]
    if unknown:
        known = ", ".join(sorted(available)) or "none registered"
        raise ValueError(f"time_source: unknown time source {unknown[0]!r} (available: {known})")
    notes: list[str] = []
    for name in sources:
        try:
            reading = available[name](image)
        except Exception as exc:  # a broken source must not stop the plan; the note shows it
            notes.append(f"{name}: failed ({type(exc).__name__}: {exc})")
            continue
        if reading is None:
            notes.append(f"{name}: none")
            continue
        # A plugin's answer is checked, not trusted: nonsense is "no time", never a crash.
        if not isinstance(reading, TimeReading) or not isinstance(
            reading.time, datetime | None
        ):
            notes.append(f"{name}: answered {type(reading).__name__}, not a TimeReading; ignored")
            continue
        if reading.time is None:
            notes.append(f"{name}: {reading.note}")
            continue
        problem = untrusted(reading.time, now)
        if problem is None:
            return aware(reading.time).astimezone(UTC), name, "; ".join(notes) or None
        notes.append(f"{name} is {format_time(reading.time)} ({problem})")
    # Point at sources that could have answered, e.g. first_seen for epoch builds.
    notes += [f"{name}: not configured" for name in available if name not in sources]
    return None, None, "; ".join(notes) or "no time source configured"


parse_time = parse_rfc3339


def check_time_sources(names: Sequence[str], available: Mapping[str, Any], where: str) -> None:
    """Fail with the config key named when a policy lists a time source nobody registered."""
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ConfigError(
            f"{where}: unknown time source {unknown[0]!r} (available: {', '.join(sorted(available))})"
        )
