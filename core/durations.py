"""Durations written the way people write them in config: ``90s``, ``30m``, ``12h``, ``14d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# ASCII digits only: `\d` would take full-width digits (U+FF11 U+FF14 "d") as 14 days.
_PART = re.compile(r"([0-9]+)([smhdw])")
_WHOLE = re.compile(r"^(?:[0-9]{1,12}[smhdw]){1,10}$")

MAX_DURATION = timedelta(days=100 * 365)
"""The longest duration accepted (about 100 years).

Durations are subtracted from and added to today's date (``older_than``, plan
retention, a plan's expiry); a duration past year 1 or 9999 cannot be, so a
longer one is an error when the config is read, not a crash in the middle of a run."""


def parse_duration(text: str) -> timedelta:
    """Parse ``14d`` or ``1w2d`` into a timedelta; raise ValueError with a hint otherwise."""
    if not isinstance(text, str):
        raise ValueError(
            f"invalid duration {text!r}: write it as a string with a unit, like '14d' or '12h'"
        )
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or not _WHOLE.match(cleaned):
        raise ValueError(
            f"invalid duration {_shown(text)}: use a number and a unit s, m, h, d or w, "
            "like '14d' or '12h'"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _PART.findall(cleaned))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"duration {_shown(text)} is too long: at most {MAX_DURATION.days // 365} years "
            f"({MAX_DURATION.days}d)"
        )
    return timedelta(seconds=seconds)


def parse_positive_duration(text: str) -> timedelta:
    """Like :func:`parse_duration`, and longer than zero (a timeout, a TTL)."""
    delta = parse_duration(text)
    if delta <= timedelta(0):
        raise ValueError(f"must be longer than 0, not {_shown(text)}; use a duration like '1h'")
    return delta


def _shown(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly for tables: ``3d``, ``5h``, ``12m``, ``40s``."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}"
    return f"{sign}{seconds}s"
