"""The built-in time sources (created, label, first_seen) and resolve_time."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pluggy
import pytest

import regprune.hookspecs
from regprune.mediatypes import DOCKER_MANIFEST_LIST, OCI_MANIFEST
from regprune.models import Image, ManifestFacts, TimeReading
from regprune.plugins import time_sources as ts

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LABEL = "org.opencontainers.image.created"
AVAILABLE = {"created": ts.created_time, "label": ts.label_time, "first_seen": ts.first_seen_time}


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def facts(
    seed: str, created: str | None = None, labels: Mapping[str, str] | None = None
) -> ManifestFacts:
    return ManifestFacts(
        digest=digest(seed),
        media_type=OCI_MANIFEST,
        size=100,
        created=created,
        labels=dict(labels or {}),
    )


def make_image(
    created: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    children: Sequence[ManifestFacts] = (),
    first_seen: datetime | None = None,
) -> Image:
    """An image, or an index (without created of its own) when children are given."""
    if children:
        own = ManifestFacts(
            digest=digest("index"),
            media_type=DOCKER_MANIFEST_LIST,
            size=100,
            created=created,
            labels=dict(labels or {}),
            children=tuple(child.digest for child in children),
        )
    else:
        own = facts("image", created, labels)
    return Image(
        repository="ci/app",
        digest=own.digest,
        tags=["v1"],
        facts=own,
        children=list(children),
        first_seen=first_seen,
    )


def resolve(image: Image, *sources: str) -> tuple[datetime | None, str | None, str | None]:
    return ts.resolve_time(image, list(sources), AVAILABLE, NOW)


def test_module_registers_six_time_sources() -> None:
    manager = pluggy.PluginManager("regprune")
    manager.add_hookspecs(regprune.hookspecs)
    manager.register(ts)
    registered: dict[str, Any] = {}
    manager.hook.register_time_sources(register=registered.__setitem__)
    assert registered == {
        **AVAILABLE,
        "pushed": ts.pushed_time,
        "tagged": ts.tagged_time,
        "pushed_event": ts.pushed_event_time,
    }


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:11:12Z", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),
        ("2024-05-01t10:11:12z", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),
        ("2024-05-01T10:11:12.123456789Z", datetime(2024, 5, 1, 10, 11, 12, 123456, tzinfo=UTC)),
        ("2024-05-01T10:11:12.5Z", datetime(2024, 5, 1, 10, 11, 12, 500000, tzinfo=UTC)),
        ("2024-05-01T12:11:12+02:00", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),
        ("2024-05-01T04:41:12.25-05:30", datetime(2024, 5, 1, 10, 11, 12, 250000, tzinfo=UTC)),
        ("2024-05-01T12:11:12+0200", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),
        ("2024-05-01 10:11:12Z", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),
        ("2024-05-01T10:11:12", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),  # no offset: UTC
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),  # leap second
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        (" 2024-05-01T10:11:12Z\n", datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    parsed = ts.parse_rfc3339(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "yesterday",
        "2024-05-01",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-05-01T25:00:00Z",
        "2024-05-01T10:11:12+24:00",
        "0001-01-01T00:00:00+01:00",
        1714558272,
    ],
)
def test_parse_rfc3339_rejects(text: Any) -> None:
    assert ts.parse_rfc3339(text) is None


# --- the sources -------------------------------------------------------------------------


def test_created_source() -> None:
    assert ts.created_time(make_image("2024-05-01T10:11:12.123456789Z")) == TimeReading(
        datetime(2024, 5, 1, 10, 11, 12, 123456, tzinfo=UTC), "created"
    )
    assert ts.created_time(make_image(None)) == TimeReading(
        None, "no created time in the image config"
    )
    assert ts.created_time(make_image("last tuesday")).time is None
    assert (
        "'last tuesday' is not an RFC 3339 time" in ts.created_time(make_image("last tuesday")).note
    )


def test_created_of_an_index_is_its_newest_platform_image() -> None:
    children = [
        facts("amd64", "2024-05-01T10:00:00Z"),
        facts("arm64", "2024-05-02T10:00:00Z"),
        facts("attestation", None),  # buildx attestation manifests have no created
    ]
    reading = ts.created_time(make_image(children=children))
    assert reading.time == datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert reading.note.startswith("created")
    bare = ts.created_time(make_image(children=[facts("amd64"), facts("arm64")]))
    assert bare == TimeReading(None, "no created time in the image config")


def test_label_source() -> None:
    reading = ts.label_time(make_image(labels={LABEL: "2024-05-01T12:00:00+02:00"}))
    assert reading is not None and reading.time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert ts.label_time(make_image(labels={"other": "x"})) is None
    bad = ts.label_time(make_image(labels={LABEL: "soon"}))
    assert bad is not None and bad.time is None and "'soon' is not an RFC 3339 time" in bad.note
    index = make_image(children=[facts("a", labels={LABEL: "2024-05-03T00:00:00Z"}), facts("b")])
    child_reading = ts.label_time(index)
    assert child_reading is not None and child_reading.time == datetime(2024, 5, 3, tzinfo=UTC)


def test_first_seen_source() -> None:
    seen = datetime(2024, 5, 1, tzinfo=UTC)
    assert ts.first_seen_time(make_image(first_seen=seen)) == TimeReading(
        seen, "first seen by regprune"
    )
    naive = ts.first_seen_time(make_image(first_seen=seen.replace(tzinfo=None)))
    assert naive.time == seen
    assert ts.first_seen_time(make_image()).time is None


# --- resolve_time ------------------------------------------------------------------------


def test_resolve_takes_the_first_source_that_answers() -> None:
    image = make_image("2024-05-01T10:11:12Z", labels={LABEL: "2024-04-01T00:00:00Z"})
    assert resolve(image, "created", "label") == (
        datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC),
        "created",
        None,
    )
    assert resolve(image, "label", "created")[1] == "label"


def test_resolve_distrusts_the_unix_epoch_and_explains() -> None:
    image = make_image("1970-01-01T00:00:00Z")
    assert resolve(image, "created", "label") == (
        None,
        None,
        "created is 1970-01-01T00:00:00Z (the Unix epoch, set by reproducible builds); "
        "label: none; first_seen: not configured",
    )


def test_resolve_falls_back_past_an_untrustworthy_reading() -> None:
    seen = datetime(2024, 5, 20, tzinfo=UTC)
    image = make_image("1970-01-01T00:00:00Z", first_seen=seen)
    moment, source, note = resolve(image, "created", "label", "first_seen")
    assert (moment, source) == (seen, "first_seen")
    assert note == (
        "created is 1970-01-01T00:00:00Z (the Unix epoch, set by reproducible builds); label: none"
    )


@pytest.mark.parametrize(
    ("created", "trusted", "why"),
    [
        ("2012-12-31T23:59:59Z", False, "before 2013"),
        ("2013-01-01T00:00:00Z", True, None),
        ("0001-01-01T00:00:00Z", False, "the zero time"),
        ("1970-01-01T00:00:01Z", False, "before 2013"),
        ((NOW + timedelta(minutes=4)).isoformat(), True, None),
        ((NOW + timedelta(minutes=6)).isoformat(), False, "6m in the future"),
        ((NOW + timedelta(days=400)).isoformat(), False, "400d in the future"),
    ],
)
def test_resolve_trust_window(created: str, trusted: bool, why: str | None) -> None:
    moment, source, note = resolve(make_image(created), "created")
    assert (moment is not None) is trusted
    assert (source == "created") is trusted
    if why is not None:
        assert note is not None and why in note


def test_resolve_returns_utc_for_offset_times() -> None:
    moment, _, _ = resolve(make_image("2024-05-01T12:00:00+02:00"), "created")
    assert moment == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert moment is not None and moment.tzinfo == UTC


def test_resolve_notes_every_reason_when_nothing_is_trustworthy() -> None:
    image = make_image(None, labels={LABEL: "2999-01-01T00:00:00Z"})
    moment, source, note = resolve(image, "created", "label", "first_seen")
    assert (moment, source) == (None, None)
    assert note is not None
    assert note.startswith(
        "created: no created time in the image config; label is 2999-01-01T00:00:00Z ("
    )
    assert note.endswith("first_seen: not recorded yet")


def test_resolve_survives_a_broken_source() -> None:
    def broken(image: Image) -> TimeReading:
        raise RuntimeError("boom")

    available = {**AVAILABLE, "broken": broken}
    _, source, note = ts.resolve_time(
        make_image("2024-05-01T00:00:00Z"), ["broken", "created"], available, NOW
    )
    assert source == "created" and note == "broken: failed (RuntimeError: boom)"


def test_resolve_handles_naive_times_from_third_party_sources() -> None:
    def naive(image: Image) -> TimeReading:
        return TimeReading(datetime(2024, 5, 1), "naive")

    moment, _, _ = ts.resolve_time(make_image(), ["naive"], {"naive": naive}, NOW)
    assert moment == datetime(2024, 5, 1, tzinfo=UTC)


def test_resolve_rejects_unknown_sources() -> None:
    with pytest.raises(
        ValueError,
        match=r"^time_source: unknown time source 'pushed' "
        r"\(available: created, first_seen, label\)$",
    ):
        resolve(make_image(), "created", "pushed")


def test_format_time_pads_the_year() -> None:
    assert ts.format_time(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"
    assert (
        ts.format_time(datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
        == "2024-05-01T10:00:00Z"
    )
