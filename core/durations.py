"""Durations written the way people write them in config: ``90s``, ``30m``, ``12h``, ``14d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+[smhdw])+$")


def parse_duration(text: str) -> timedelta:
    """Parse ``14d`` or ``1w2d`` into a timedelta; raise ValueError with a hint otherwise."""
    cleaned = str(text).strip().lower().replace(" ", "")
    if not cleaned or not _WHOLE.match(cleaned):
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit s, m, h, d or w, like '14d' or '12h'"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _PART.findall(cleaned))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly for tables: ``3d``, ``5h``, ``12m``, ``40s``."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}"
    return f"{sign}{seconds}s"
