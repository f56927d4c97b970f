"""The ``unused`` selector and the ``pushed_event`` time source: retention by use.

Unit tests of the verdicts (coverage, last pull, pushes inside the window, index
children), then plans and applies against real Distribution 2.8.2 and 3.1.1 with
usage recorded in the state DB the way ``regprune listen`` records it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regprune.cli.render import image_json
from regprune.engine import images_by_time
from regprune.models import Coverage, Usage
from regprune.plugins import time_sources
from regprune.plugins.unused import UnusedSelector
from regprune.scan import merged_usage
from regprune.state import State, UsageEvent
from regprune.testing import DEFAULT_REGISTRY, ImagePusher, apply_plan, make_engine, run_policy
from regprune.testing.registry_api import RegistryApi

from .plugin_units import CONTEXT, NOW, digest, error_of, make_image

DAY = timedelta(days=1)


def covered(days: float) -> Coverage:
    return Coverage("local", NOW, NOW - timedelta(days=days))


def pulled(image, days_ago: float, agent: str = "containerd/1.7.2", tag: str | None = "v1"):
    return Usage(
        repository=image.repository,
        digest=image.digest,
        first_push=None,
        last_pull=NOW - timedelta(days=days_ago),
        last_pull_tag=tag,
        last_pull_agent=agent,
        pulls=3,
        agents=(agent,),
    )


def verdicts(images, coverage, window="30d"):
    context = replace(CONTEXT, coverage=coverage)
    return UnusedSelector.from_options({"not_pulled_for": window}).select(images, context)


def test_pulled_inside_the_window_stays_and_outside_goes():
    recent, old, never = make_image("r", ["v1"]), make_image("o", ["v2"]), make_image("n", ["v3"])
    recent.usage = pulled(recent, 3)
    old.usage = pulled(old, 45)
    found = verdicts([recent, old, never], covered(60))
    assert found[recent.digest] == (
        False,
        "unused: last pulled 3d ago by containerd/1.7.2 (tag v1), within 30d",
    )
    assert found[old.digest] == (
        True,
        "unused: last pulled 45d ago by containerd/1.7.2 (tag v1), not in 30d",
    )
    assert found[never.digest] == (True, "unused: never pulled in 60d of recorded use")


def test_usage_known_for_less_than_the_window_keeps_everything():
    image = make_image("a", ["v1"])
    found = verdicts([image], covered(12))
    assert found[image.digest] == (False, "unused: usage known only for 12d, not 30d; kept")


def test_no_listener_keeps_everything():
    image = make_image("a", ["v1"])
    for coverage in (None, Coverage("local", NOW, None)):
        selected, reason = verdicts([image], coverage)[image.digest]
        assert not selected
        assert "regprune listen has not heard this registry" in reason


def test_an_image_pushed_inside_the_window_is_not_unused_yet():
    by_event, by_storage = make_image("e", ["v1"]), make_image("s", ["v2"])
    by_event.usage = replace(pulled(by_event, 40), first_push=NOW - timedelta(days=5))
    by_storage.pushed = NOW - timedelta(days=2)
    found = verdicts([by_event, by_storage], covered(90))
    assert found[by_event.digest] == (False, "unused: pushed 5d ago, not yet 30d")
    assert found[by_storage.digest] == (False, "unused: pushed 2d ago, not yet 30d")


def test_a_pull_of_a_platform_manifest_is_use_of_its_index():
    index = make_image("idx", ["multi"], children=["amd64", "arm64"])
    recorded = {
        digest("arm64"): Usage(
            index.repository, digest("arm64"), None, NOW - DAY, None, "containerd/2.0", 1, ()
        ),
        index.digest: Usage(
            index.repository,
            index.digest,
            NOW - 100 * DAY,
            NOW - 50 * DAY,
            "multi",
            "docker/27.1",
            4,
            ("docker/27.1",),
        ),
    }
    usage = merged_usage(index, recorded)
    assert usage is not None
    assert (usage.last_pull, usage.last_pull_agent, usage.pulls) == (NOW - DAY, "containerd/2.0", 5)
    assert usage.first_push == NOW - 100 * DAY
    index.usage = usage
    assert verdicts([index], covered(60))[index.digest][0] is False


def test_the_last_client_is_the_first_word_of_the_user_agent():
    image = make_image("a", ["v1"])
    usage = pulled(image, 1, agent="docker/27.1.1 go/go1.22.5 git-commit/cc13f95 os/linux")
    assert usage.last_client == "docker/27.1.1"
    assert replace(usage, last_pull_agent=None).last_client is None
    image.usage = replace(usage, last_pull_agent=None)
    assert (
        "last pulled 1d ago by an unnamed client" in verdicts([image], covered(60))[image.digest][1]
    )


@pytest.mark.parametrize("window", ["0s", "30m", "soon", ""])
def test_a_bad_window_is_one_line(window):
    message = error_of(UnusedSelector.from_options, {"not_pulled_for": window})
    assert "not_pulled_for" in message and "\n" not in message


def test_pushed_event_time_source():
    image = make_image("a", ["v1"])
    assert time_sources.pushed_event_time(image).time is None
    image.usage = replace(pulled(image, 1), first_push=NOW - 9 * DAY)
    assert time_sources.pushed_event_time(image).time == NOW - 9 * DAY


# -- against real registries -------------------------------------------------------------------


@pytest.fixture(params=[2, 3], ids=["2.8.2", "3.1.1"])
def server(request, start_registry):
    return start_registry(int(request.param))


def record_use(state_dir: Path, now: datetime, *, covered_days: float, events: list[UsageEvent]):
    """What `regprune listen` leaves in the state DB: a session heard since
    ``covered_days`` ago and still live, and the events it recorded."""
    state = State(state_dir / "state.db")
    try:
        session = state.usage.start_session(DEFAULT_REGISTRY, now - timedelta(days=covered_days))
        state.usage.heard(session, now - timedelta(days=covered_days), event=True)
        state.usage.heard(session, now)
        state.usage.record(DEFAULT_REGISTRY, events, now)
    finally:
        state.close()


def event(n: int, action: str, repository: str, image_digest: str, when: datetime, agent: str):
    return UsageEvent(
        id=f"e{n}",
        action=action,  # type: ignore[arg-type]
        repository=repository,
        digest=image_digest,
        timestamp=when,
        tag=None,
        agent=agent,
    )


def list_json(url: str, state_dir: Path) -> dict[str, dict]:
    """What `regprune ls --json` prints, by first tag."""
    engine = make_engine(url, UNUSED, state_dir=state_dir)
    try:
        images = images_by_time(engine.list_images(DEFAULT_REGISTRY, ["*"]))
    finally:
        engine.close()
        engine.state.close()
    return {image.tags[0]: image_json(image) for image in images if image.tags}


UNUSED = {"selectors": [{"use": "unused", "not_pulled_for": "30d"}]}


def test_unused_deletes_exactly_what_was_not_pulled(server, tmp_path):
    now = datetime.now(UTC)
    pusher = ImagePusher(server.url)
    recent = pusher.push_image("app", ["recent"], seed="recent")
    stale = pusher.push_image("app", ["stale"], seed="stale")
    pusher.push_image("app", ["never"], seed="never")
    fresh = pusher.push_image("app", ["fresh"], seed="fresh")
    multi = pusher.push_index("app", ["multi"], seed="m")
    arm = multi.children[1].digest
    record_use(
        tmp_path,
        now,
        covered_days=60,
        events=[
            event(1, "pull", "app", recent.digest, now - 2 * DAY, "containerd/1.7.2"),
            event(2, "pull", "app", stale.digest, now - 45 * DAY, "docker/27.1.1"),
            event(3, "push", "app", fresh.digest, now - 3 * DAY, "docker/27.1.1"),
            # The platform manifest was pulled by digest: the index is in use.
            event(4, "pull", "app", arm, now - 1 * DAY, "containerd/2.0.0"),
        ],
    )
    listed = list_json(server.url, tmp_path)
    assert listed["recent"]["last_pull_agent"] == "containerd/1.7.2"
    assert listed["recent"]["pulls"] == 1
    assert (listed["never"]["last_pull"], listed["never"]["pulls"]) == (None, 0)

    plan = run_policy(server.url, UNUSED, state_dir=tmp_path)
    deleted = {item.tags[0]: " ".join(item.reasons) for item in plan.delete if item.tags}
    assert set(deleted) == {"stale", "never"}
    assert "last pulled 45d ago by docker/27.1.1, not in 30d" in deleted["stale"]
    assert "never pulled in 60d of recorded use" in deleted["never"]
    kept = {tag: " ".join(item.reasons) for item in plan.keep for tag in item.tags}
    assert "last pulled 2d ago by containerd/1.7.2" in kept["recent"]
    assert "pushed 3d ago, not yet 30d" in kept["fresh"]
    assert "last pulled 1d ago by containerd/2.0.0" in kept["multi"]

    result = apply_plan(server.url, plan, state_dir=tmp_path)
    deleted_tags = sorted(o.item.tags[0] for o in result.of("deleted") if o.item.tags)
    assert deleted_tags == ["never", "stale"]
    remaining = RegistryApi(server.url).tags("app")
    assert sorted(remaining) == ["fresh", "multi", "recent"]


def test_unused_keeps_everything_outside_coverage(server, tmp_path):
    now = datetime.now(UTC)
    pusher = ImagePusher(server.url)
    pusher.push_image("app", ["a"], seed="a")
    pusher.push_image("app", ["b"], seed="b")
    record_use(tmp_path, now, covered_days=12, events=[])
    plan = run_policy(server.url, UNUSED, state_dir=tmp_path)
    assert plan.delete == []
    assert all("usage known only for 12d, not 30d" in " ".join(k.reasons) for k in plan.keep)


def test_unused_without_a_listener_keeps_everything(server, tmp_path):
    ImagePusher(server.url).push_image("app", ["a"], seed="a")
    plan = run_policy(server.url, UNUSED, state_dir=tmp_path)
    assert plan.delete == []
    assert "regprune listen has not heard this registry" in " ".join(plan.keep[0].reasons)


def test_an_image_pulled_after_the_plan_is_not_deleted(server, tmp_path):
    now = datetime.now(UTC)
    pusher = ImagePusher(server.url)
    stale = pusher.push_image("app", ["stale"], seed="stale")
    multi = pusher.push_index("app", ["multi"], seed="m")
    record_use(tmp_path, now, covered_days=60, events=[])
    plan = run_policy(server.url, UNUSED, state_dir=tmp_path)
    assert sorted(item.tags[0] for item in plan.delete if item.tags) == ["multi", "stale"]
    # While the plan waits for approval, clients pull the image and one platform manifest.
    later = datetime.now(UTC) + timedelta(seconds=1)
    state = State(tmp_path / "state.db")
    state.usage.record(
        DEFAULT_REGISTRY,
        [
            event(10, "pull", "app", stale.digest, later, "containerd/1.7.2"),
            event(11, "pull", "app", multi.children[0].digest, later, "cri-o/1.30"),
        ],
        later,
    )
    state.close()
    result = apply_plan(server.url, plan, state_dir=tmp_path)
    assert result.of("deleted") == []
    reasons = {o.item.tags[0]: o.reason for o in result.of("skipped") if o.item.tags}
    assert reasons["stale"].startswith("pulled since the plan was made by containerd/1.7.2")
    assert "its manifest" in reasons["multi"] and "cri-o/1.30" in reasons["multi"]
    assert sorted(RegistryApi(server.url).tags("app")) == ["multi", "stale"]
