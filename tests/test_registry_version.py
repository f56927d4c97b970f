"""The Distribution version of a registry: configured wins, else detected from the
registry's own GET answers (Content-Type of its JSON), else unknown.

Both versions are started explicitly (``tests/distributions.py``), whatever pass of
the suite this runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regprune.registry import RegistryClient, version_of
from regprune.registry._version import version_from_content_type
from regprune.testing import make_engine
from tests.distributions import pusher_for

POLICY = {"selectors": [{"use": "count", "keep": 1}]}


@pytest.mark.parametrize("major", [2, 3])
def test_a_plan_records_the_detected_version_at_no_extra_request(
    major: int, start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(major)
    with pusher_for(server) as pusher:
        pusher.push_image("app", ["a"])
        pusher.push_image("app", ["b"])
    counts = {}
    for configured in (None, major):
        options = {"version": configured} if configured else {}
        engine = make_engine(
            server.url, POLICY, state_dir=tmp_path / f"s{configured}", registry_options=options
        )
        try:
            plan = engine.plan("test")
            client = engine.client("test")
            counts[configured] = dict(client.requests_by_method)
        finally:
            engine.close()
            engine.state.close()
        assert plan.registry_version is not None
        assert plan.registry_version["version"] == major
        assert plan.registry_version["source"] == ("configured" if configured else "detected")
    # Detection read the scan's own answers: the same requests as with the version
    # configured, but for the referrers question a configured 2 never asks (no 2.x
    # serves the API; an unconfigured registry is asked once, see docs/performance.md).
    probe = 1 if major == 2 else 0
    assert counts[None] == {**counts[major], "GET": counts[major]["GET"] + probe}
    assert set(counts[None]) <= {"GET", "HEAD"}


@pytest.mark.parametrize("major", [2, 3])
def test_detection_on_a_fresh_client_sends_one_get(major: int, start_registry: Any) -> None:
    server = start_registry(major)
    with RegistryClient(server.url) as client:
        version = version_of("r", None, client)
        again = version_of("r", None, client)
        assert client.requests_by_method == {"GET": 1}
    assert version.number == major and version.source == "detected"
    assert "GET /v2/" in version.evidence
    assert again == version


@pytest.mark.parametrize(("running", "configured"), [(3, 2), (2, 3)])
def test_the_configured_version_wins(
    running: int, configured: int, start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(running)
    engine = make_engine(
        server.url, POLICY, state_dir=tmp_path, registry_options={"version": configured}
    )
    try:
        version = engine.registry_version("test")
        assert engine.request_count == 0  # configured: nothing asked
    finally:
        engine.close()
        engine.state.close()
    assert (version.number, version.source) == (configured, "configured")
    assert "[registry.test] version" in version.evidence


def test_a_back_end_that_does_not_tell_is_unknown() -> None:
    version = version_of("r", None, object())
    assert (version.number, version.source) == (None, "unknown")
    assert "version_of" not in version.label


def test_an_unreachable_registry_is_unknown_not_an_error() -> None:
    with RegistryClient("http://127.0.0.1:9", retries=0, timeout=2) as client:
        version = version_of("r", None, client)
    assert (version.number, version.source) == (None, "unknown")
    assert "GET /v2/ failed" in version.evidence


@pytest.mark.parametrize(
    ("value", "major"),
    [
        ("application/json; charset=utf-8", 2),
        ("Application/JSON;charset=UTF-8", 2),
        ("application/json", 3),
        (" application/json ", 3),
        ("text/plain; charset=utf-8", None),
        ("application/json; charset=iso-8859-1", None),
        ("", None),
        (None, None),
    ],
)
def test_content_type_to_version(value: str | None, major: int | None) -> None:
    assert version_from_content_type(value) == major


@given(st.text(max_size=60))
def test_any_content_type_gives_2_3_or_none(value: str) -> None:
    assert version_from_content_type(value) in (2, 3, None)
