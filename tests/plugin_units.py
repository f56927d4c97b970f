"""What the unit tests of the built-in selectors and keep rules share: a fixed clock
and context, made-up images, and the one-line error of a bad option."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from regprune.mediatypes import OCI_INDEX, OCI_MANIFEST
from regprune.models import Image, ManifestFacts, SelectionContext

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CONTEXT = SelectionContext(now=NOW, registry="local", repository="ci/app", policy="ci")


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def make_image(
    seed: str,
    tags: Sequence[str] = (),
    *,
    repository: str = "ci/app",
    children: Sequence[str] = (),
    days: float | None = None,
    time: datetime | None = None,
    note: str | None = None,
) -> Image:
    """An image in ``repository``: an index when ``children`` seeds are given; built
    ``days`` before NOW (or at ``time``); neither: no trustworthy time (``note`` says why)."""
    if days is not None:
        time = NOW - timedelta(days=days)
    child_facts = [
        ManifestFacts(digest=digest(c), media_type=OCI_MANIFEST, size=10) for c in children
    ]
    facts = ManifestFacts(
        digest=digest(seed),
        media_type=OCI_INDEX if children else OCI_MANIFEST,
        size=100,
        children=tuple(child.digest for child in child_facts),
    )
    return Image(
        repository=repository,
        digest=facts.digest,
        tags=list(tags),
        facts=facts,
        children=child_facts,
        time=time,
        time_source="created" if time else None,
        time_note=None if time else note,
    )


def error_of(factory: Callable[[dict[str, Any]], object], options: dict[str, Any]) -> str:
    """The message of the ``ValueError`` a bad ``options`` dict raises: one line."""
    with pytest.raises(ValueError) as info:
        factory(options)
    message = str(info.value)
    assert "\n" not in message
    return message
