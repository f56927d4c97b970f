"""Plans from the registry's storage are the plans the API gives (``[registry.NAME] storage``).

Every test runs against Distribution 2.8.2 and 3.1.1 (``start_registry``); a missing
binary fails.  The storage is only read: a test checks nothing in it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from regprune.errors import ConfigError
from regprune.testing import ImagePusher, RegistryServer, apply_plan, days_ago, run_policy
from tests.storage_helpers import age_links, repositories_dir, storage_options

NOW = datetime.now(UTC)
SBOM = "application/spdx+json"


@pytest.fixture(params=[2, 3], ids=["2.8.2", "3.1.1"])
def major(request) -> int:
    return int(request.param)


@pytest.fixture
def server(major, start_registry) -> RegistryServer:
    return start_registry(major)


def push_every_kind(server: RegistryServer) -> dict[str, Any]:
    """One of each manifest kind the suite pushes, in shapes a CI registry holds."""
    pusher = ImagePusher(server.url)
    pushed: dict[str, Any] = {}
    for index in range(4):
        pusher.push_image(
            "app/oci", [f"main-{index}"], created=days_ago(40 - index * 10), seed=f"oci{index}"
        )
    pusher.push_image("app/oci", ["v1.0.0", "latest"], created=days_ago(50), seed="release")
    pusher.push_image("app/oci", ["epoch"], created="1970-01-01T00:00:00Z", seed="epoch")
    pusher.push_image(
        "app/oci",
        ["labelled"],
        created=None,
        labels={"org.opencontainers.image.created": days_ago(60).isoformat()},
        seed="labelled",
    )
    for index in range(3):
        pusher.push_image(
            "app/docker", [f"b{index}"], media_type="docker", created=days_ago(30 - index * 10)
        )
    pusher.push_index("app/multi", ["v1"], created=days_ago(45), seed="m1")
    pusher.push_index("app/multi", ["v2"], created=days_ago(35), media_type="docker", seed="m2")
    pusher.push_index("app/multi", ["latest"], created=days_ago(25), seed="m3")
    pusher.push_index("app/multi", ["latest"], created=days_ago(5), seed="m4")  # m3 now untagged
    signed = pusher.push_image("app/signed", ["s1"], created=days_ago(40), seed="signed")
    pusher.push_signature("app/signed", signed.digest)
    pusher.push_image(
        "app/signed", ["s1-sbom"], subject=signed.digest, artifact_type=SBOM, seed="sbom"
    )
    pusher.push_image("app/signed", ["s2"], created=days_ago(2), seed="signed2")
    pusher.push_signature("app/signed", "sha256:" + "ab" * 32)  # its subject is not there
    pusher.push_image("team/deep/nested", ["n1"], created=days_ago(20))
    pushed["signed"] = signed.digest
    return pushed


POLICIES: list[dict[str, Any]] = [
    {"selectors": [{"use": "count", "keep": 1}]},
    {"selectors": [{"use": "age", "older_than": "14d"}], "keep_tags": ["^v"]},
    {
        "selectors": [{"use": "age", "older_than": "1d"}],
        "time_source": ["created", "label", "first_seen"],
        "tags": "^main-|^b",
    },
    {"selectors": [{"use": "count", "keep": 2}], "repositories": ["app/*"], "exclude": ["app/docker"]},
]


def comparable(plan) -> list[str]:
    """What decides and explains a plan, without what differs by source on purpose:
    the id, the byte estimate (exact from storage) and how the version was learnt.
    One line per item, so a difference shows as a short diff."""
    content = plan.content()
    content["summary"].pop("bytes")
    content["summary"].pop("bytes_exact", None)
    content.pop("registry_version", None)
    lines = [json.dumps({key: value}, sort_keys=True) for key, value in content.items()
             if key not in ("delete", "keep")]
    for key in ("delete", "keep"):
        lines += [f"{key} {json.dumps(item, sort_keys=True)}" for item in content[key]]
    return lines


def tree_digest(root: Path) -> str:
    """A hash of every file's path, bytes and mtime under ``root``: any write shows."""
    digest = hashlib.sha256()
    for directory, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = Path(directory) / name
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("policy", POLICIES, ids=["count", "age-keep", "tags-filter", "globs"])
def test_a_plan_from_storage_is_the_plan_from_the_api(server, tmp_path, policy):
    push_every_kind(server)
    before = tree_digest(Path(server.storage_path))
    from_api = run_policy(server.url, policy, state_dir=tmp_path / "api", now=NOW)
    from_storage = run_policy(
        server.url,
        policy,
        state_dir=tmp_path / "storage",
        now=NOW,
        registry_options=storage_options(server),
    )
    assert from_api.delete, "the policy should delete something, or the comparison says little"
    assert comparable(from_storage) == comparable(from_api)
    # Warm (every digest cached) gives the same plan again.
    warm = run_policy(
        server.url,
        policy,
        state_dir=tmp_path / "storage",
        now=NOW,
        registry_options=storage_options(server),
    )
    assert comparable(warm) == comparable(from_api)
    assert tree_digest(Path(server.storage_path)) == before, "the scan wrote to the storage"


def test_a_storage_plan_applies_through_the_api(server, tmp_path):
    push_every_kind(server)
    policy = {"selectors": [{"use": "count", "keep": 1}], "repositories": ["app/docker"]}
    options = storage_options(server)
    plan = run_policy(server.url, policy, state_dir=tmp_path, registry_options=options)
    assert {tag for item in plan.delete for tag in item.tags} == {"b0", "b1"}
    result = apply_plan(server.url, plan, state_dir=tmp_path, registry_options=options)
    assert len(result.of("deleted")) == 2
    tags = httpx.get(f"{server.url}/v2/app/docker/tags/list").json()
    assert tags["tags"] == ["b2"]


def test_untagged_referrers_are_found_on_every_version(server, tmp_path):
    """The storage lists referrers the API of 2.x (and 3.1) cannot: they go with their
    subject, where the API plan would leave them behind without one."""
    pusher = ImagePusher(server.url)
    image = pusher.push_image("app/r", ["old"], created=days_ago(30), seed="old")
    sbom = pusher.push_image("app/r", [], subject=image.digest, artifact_type=SBOM)
    pusher.push_image("app/r", ["new"], created=days_ago(1), seed="new")
    policy = {"selectors": [{"use": "count", "keep": 1}]}
    plan = run_policy(
        server.url, policy, state_dir=tmp_path, registry_options=storage_options(server)
    )
    roles = {item.digest: (item.role, item.parent) for item in plan.delete}
    assert roles == {image.digest: ("image", None), sbom.digest: ("artifact", image.digest)}


def test_push_and_tag_times_come_from_the_links(server, tmp_path):
    pusher = ImagePusher(server.url)
    # Built long ago by the config, pushed yesterday: `pushed` says yesterday.
    old_build = pusher.push_image("app/t", ["rebuilt"], created=days_ago(400), seed="a")
    epoch = pusher.push_image("app/t", ["epoch"], created="1970-01-01T00:00:00Z", seed="b")
    age_links(server, 1, [old_build.digest])
    age_links(server, 30, [epoch.digest])
    policy = {"selectors": [{"use": "age", "older_than": "7d"}], "time_source": ["pushed"]}
    plan = run_policy(
        server.url, policy, state_dir=tmp_path, registry_options=storage_options(server)
    )
    assert [item.tags for item in plan.delete] == [("epoch",)]
    assert "pushed" in " ".join(plan.delete[0].reasons)
    kept = {item.tags: item.reasons for item in plan.keep}
    assert "1d" in " ".join(kept[("rebuilt",)])


def test_a_link_time_in_the_future_or_at_the_epoch_is_not_trusted(server, tmp_path):
    pusher = ImagePusher(server.url)
    future = pusher.push_image("app/t", ["future"], seed="f")
    zero = pusher.push_image("app/t", ["zero"], seed="z")
    for root, _, files in os.walk(repositories_dir(server)):
        if "link" in files:
            path = Path(root) / "link"
            text = path.read_text().strip()
            if text == future.digest:
                os.utime(path, (NOW.timestamp() + 86400 * 30,) * 2)
            elif text == zero.digest:
                os.utime(path, (0, 0))
    policy = {"selectors": [{"use": "age", "older_than": "1d"}], "time_source": ["pushed"]}
    plan = run_policy(
        server.url, policy, state_dir=tmp_path, registry_options=storage_options(server)
    )
    assert plan.delete == []
    assert len(plan.keep) == 2


def test_storage_of_another_registry_is_a_warning(server, start_registry, major, tmp_path):
    other = start_registry(major)
    ImagePusher(server.url).push_image("app/x", ["v1"], seed="here")
    ImagePusher(other.url).push_image("app/x", ["v1"], seed="there")
    plan = run_policy(
        server.url,
        {"selectors": [{"use": "count", "keep": 5}]},
        state_dir=tmp_path,
        registry_options=storage_options(other),
    )
    assert len(plan.warnings) == 1
    warning = plan.warnings[0]
    assert "registry.test.storage and the registry's API disagree: app/x:v1" in warning
    assert "stale mount" in warning


def test_storage_that_agrees_gives_no_warning(server, tmp_path):
    push_every_kind(server)
    plan = run_policy(
        server.url,
        {"selectors": [{"use": "count", "keep": 1}]},
        state_dir=tmp_path,
        registry_options=storage_options(server),
    )
    assert not [w for w in plan.warnings if "disagree" in w]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "missing", "no such directory"),
        (lambda root: root / "empty", "not a Distribution storage root"),
        (lambda root: root / "storage" / "docker" / "registry" / "v2", "the v2 directory itself"),
    ],
    ids=["missing", "not-a-root", "v2-dir"],
)
def test_a_wrong_storage_path_is_one_clear_error(server, tmp_path, make, expected):
    ImagePusher(server.url).push_image("app/x", ["v1"])
    storage = tmp_path / "storage"
    shutil.copytree(server.storage_path, storage)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as raised:
        run_policy(
            server.url,
            {"selectors": [{"use": "count", "keep": 1}]},
            state_dir=tmp_path / "state",
            registry_options={"storage": str(make(tmp_path))},
        )
    message = str(raised.value)
    assert message.startswith("registry.test.storage = ")
    assert expected in message
    assert "\n" not in message
