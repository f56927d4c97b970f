"""Text helpers every front end shares: sizes, short digests and tags, trimmed reasons, ages.

Pure functions of strings and numbers, with no terminal, chat markup or HTML in
them, so the CLI's tables (``regprune.cli.render``), a bot's messages and any other
front end print a plan the same way.
"""

from __future__ import annotations

import re
from datetime import datetime

from .durations import format_duration
from .timing import parse_time, untrusted

REASON_LIMIT = 80
_ARTIFACT_TAG = re.compile(r"\bsha256-([0-9a-f]{8})[0-9a-f]{56}(\.[a-z]+)?")
_DIGEST = re.compile(r"\bsha256:([0-9a-f]{12})[0-9a-f]{52}\b")
_OTHERWISE = "would otherwise be deleted: "


def human_bytes(size: int | None) -> str:
    """``1234567`` → ``1.2 MB`` (decimal units, as registries and Docker report sizes)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def age(created: str | None, now: datetime) -> str:
    """How old an image is; "-" when its time is missing or not trustworthy (e.g. the epoch)."""
    moment = parse_time(created)
    if moment is None or untrusted(moment, now):
        return "-"
    return format_duration(now - moment)


def short(digest: str) -> str:
    """The first 12 hex digits of a digest, as ``docker images`` shows them."""
    return digest.split(":", 1)[-1][:12]


def short_tag(tag: str) -> str:
    """``sha256-<64 hex>.sig`` → ``sha256-2eb39a12….sig``; other tags unchanged."""
    return _ARTIFACT_TAG.sub(lambda m: f"sha256-{m.group(1)}…{m.group(2) or ''}", tag)


def _elide_details(text: str, longer_than: int = 24) -> str:
    """Replace long parenthesised details with ``(…)``; short ones like ``(created)`` stay."""
    out: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            if depth == 0:
                start = index
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                inner = text[start + 1 : index]
                out.append(f"({inner})" if len(inner) <= longer_than else "(…)")
        elif depth == 0:
            out.append(char)
    if depth:  # unbalanced: keep the rest as it was
        out.append(text[start:])
    return "".join(out)


def short_reason(reason: str, limit: int = REASON_LIMIT) -> str:
    """A reason trimmed for a table cell: short digests and tags, long details elided."""
    text = _DIGEST.sub(lambda m: f"sha256:{m.group(1)}", short_tag(reason))
    text = _elide_details(text)
    if text.startswith(_OTHERWISE):
        names = [part.split(":", 1)[0].strip() for part in text[len(_OTHERWISE) :].split("; ")]
        text = f"would otherwise be deleted ({', '.join(n for n in names if n)})"
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def slack_escape(text: str) -> str:
    """``text`` for Slack's mrkdwn: its three control characters escaped, so user text
    (a policy name, an error line) can never become a link or an ``<!channel>`` ping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
