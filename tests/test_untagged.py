"""The ``untagged`` selector: safe cleanup of manifests no tag points to (storage scans).

Against Distribution 2.8.2 and 3.1.1 (``start_registry``).  What matters most: a kept
multi-arch image survives, every platform manifest and blob of it still pulls (checked
with skopeo, before and after the registry's own garbage-collect), and nothing that
goes with something else (an index's platform manifests, a referrer, the subject of a
tagged signature) is chosen by itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from regprune.errors import ConfigError
from regprune.testing import ImagePusher, RegistryServer, apply_plan, assert_all_pull, run_policy
from tests.storage_helpers import age_links, repositories_dir, storage_options

SBOM = "application/spdx+json"
UNTAGGED = {"selectors": [{"use": "untagged", "older_than": "1d"}]}


@pytest.fixture(params=[2, 3], ids=["2.8.2", "3.1.1"])
def major(request) -> int:
    return int(request.param)


@pytest.fixture
def server(major, start_registry) -> RegistryServer:
    return start_registry(major)


def plan_untagged(server, tmp_path, policy=UNTAGGED, **options):
    return run_policy(
        server.url,
        policy,
        state_dir=tmp_path / "state",
        registry_options=storage_options(server),
        **options,
    )


def exists(server: RegistryServer, repository: str, digest: str) -> bool:
    answer = httpx.head(
        f"{server.url}/v2/{repository}/manifests/{digest}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                 "application/vnd.oci.image.manifest.v1+json"},
    )
    return answer.status_code == 200


def test_untagged_cleanup_keeps_a_multi_arch_image_whole(server, tmp_path):
    pusher = ImagePusher(server.url)
    kept = pusher.push_index("app", ["v1"], seed="v1")
    old_latest = pusher.push_index("app", ["latest"], seed="l1")
    pusher.push_index("app", ["latest"], seed="l2")  # l1's index is untagged now
    old_nightly = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_image("app", ["nightly"], seed="n2")
    # An untagged index sharing a platform manifest with the kept v1.
    shared_child = kept.children[0]
    own_child = pusher.push_image("app", [], seed="own", platform="linux/s390x")
    loose_index = pusher.push_index_of("app", [shared_child, own_child])
    age_links(server, 3)

    plan = plan_untagged(server, tmp_path)
    planned = {item.digest: item.role for item in plan.delete}
    assert planned == {
        old_latest.digest: "image",
        **{child.digest: "child" for child in old_latest.children},
        old_nightly.digest: "image",
        loose_index: "image",
        own_child.digest: "child",
    }
    assert shared_child.digest not in planned
    assert all(item.tags == () for item in plan.delete)
    reasons = {item.digest: " ".join(item.reasons) for item in plan.delete}
    assert "untagged: no tag points to it; pushed 3d ago, older than 1d" in reasons[old_nightly.digest]

    result = apply_plan(
        server.url, plan, state_dir=tmp_path / "state", registry_options=storage_options(server)
    )
    assert len(result.of("deleted")) == len(planned)
    assert not any(exists(server, "app", digest) for digest in planned)
    pulled = assert_all_pull(server.url, expect=["app:v1", "app:latest", "app:nightly"])
    assert {p.reference: p.manifests for p in pulled}["app:v1"] == 3
    server.garbage_collect()
    server.restart()  # the blob descriptor cache forgets what GC removed
    pulled = assert_all_pull(server.url, expect=["app:v1", "app:latest", "app:nightly"])
    assert {p.reference: p.manifests for p in pulled}["app:v1"] == 3


def test_young_untagged_manifests_stay(server, tmp_path):
    pusher = ImagePusher(server.url)
    first = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_image("app", ["nightly"], seed="n2")
    plan = plan_untagged(server, tmp_path)
    assert plan.delete == []
    kept = {item.digest: " ".join(item.reasons) for item in plan.keep}
    assert "not older than 1d" in kept[first.digest]


@pytest.mark.parametrize("stamp", [0.0, 1_000_000_000.0, 4_102_444_800.0], ids=["epoch", "2001", "2100"])
def test_an_untrusted_push_time_is_never_selected(server, tmp_path, stamp):
    pusher = ImagePusher(server.url)
    first = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    for root, _, files in os.walk(repositories_dir(server)):
        path = Path(root) / "link"
        if "link" in files and path.read_text().strip() == first.digest:
            os.utime(path, (stamp, stamp))
    plan = plan_untagged(server, tmp_path)
    assert plan.delete == []
    kept = {item.digest: " ".join(item.reasons) for item in plan.keep}
    assert "never selected" in kept[first.digest]


def test_referrers_go_with_their_subject_and_never_alone(server, tmp_path):
    pusher = ImagePusher(server.url)
    tagged = pusher.push_image("app", ["v1"], seed="tagged")
    sbom_of_tagged = pusher.push_image("app", [], subject=tagged.digest, artifact_type=SBOM)
    old = pusher.push_image("app", ["nightly"], seed="n1")
    sbom_of_old = pusher.push_image("app", [], subject=old.digest, artifact_type=SBOM)
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    plan = plan_untagged(server, tmp_path)
    planned = {item.digest: (item.role, item.parent) for item in plan.delete}
    assert planned == {old.digest: ("image", None), sbom_of_old.digest: ("artifact", old.digest)}
    assert sbom_of_tagged.digest not in planned


def test_a_referrer_whose_subject_is_gone_is_untagged_garbage(server, tmp_path):
    pusher = ImagePusher(server.url)
    subject = pusher.push_image("app", [], seed="subject")
    sbom = pusher.push_image("app", [], subject=subject.digest, artifact_type=SBOM)
    pusher.push_image("app", ["v1"], seed="v1")
    assert httpx.delete(f"{server.url}/v2/app/manifests/{subject.digest}").status_code == 202
    age_links(server, 3)
    plan = plan_untagged(server, tmp_path)
    assert [item.digest for item in plan.delete] == [sbom.digest]
    assert "subject" in " ".join(plan.delete[0].reasons)


def test_the_subject_of_a_tagged_signature_stays(server, tmp_path):
    pusher = ImagePusher(server.url)
    old = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_signature("app", old.digest)
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    plan = plan_untagged(server, tmp_path)
    assert plan.delete == []
    kept = {item.digest: " ".join(item.reasons) for item in plan.keep}
    assert "subject of artifact sha256-" in kept[old.digest]


def test_keep_rules_keep_untagged_manifests(server, tmp_path):
    pusher = ImagePusher(server.url)
    old = pusher.push_image("app", ["nightly"], seed="n1")
    older = pusher.push_image("app", ["nightly"], seed="n0")
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    in_use = tmp_path / "in-use.txt"
    host = server.url.split("://", 1)[1]
    in_use.write_text(f"{host}/app@{old.digest}\n")
    policy = {**UNTAGGED, "protectors": [{"use": "in_use", "file": str(in_use)}]}
    plan = plan_untagged(server, tmp_path, policy)
    assert [item.digest for item in plan.delete] == [older.digest]
    kept = {item.digest: " ".join(item.reasons) for item in plan.keep}
    assert kept[old.digest].startswith("in_use: referenced as")


def test_a_tag_pushed_onto_an_untagged_manifest_after_the_plan_saves_it(server, tmp_path):
    pusher = ImagePusher(server.url)
    old = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    plan = plan_untagged(server, tmp_path)
    assert [item.digest for item in plan.delete] == [old.digest]
    pusher.tag("app", old.digest, "rescued")
    result = apply_plan(
        server.url, plan, state_dir=tmp_path / "state", registry_options=storage_options(server)
    )
    assert result.of("deleted") == []
    assert "tags changed since the plan" in " ".join(o.reason or "" for o in result.of("skipped"))
    assert exists(server, "app", old.digest)


def test_an_index_pushed_after_the_plan_keeps_its_platform_manifest(server, tmp_path):
    pusher = ImagePusher(server.url)
    old = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    plan = plan_untagged(server, tmp_path)
    assert [item.digest for item in plan.delete] == [old.digest]
    pusher.push_index_of("app", [old], tags=["multi"])
    result = apply_plan(
        server.url, plan, state_dir=tmp_path / "state", registry_options=storage_options(server)
    )
    assert result.of("deleted") == []
    assert exists(server, "app", old.digest)


def test_untagged_needs_the_storage(server, tmp_path):
    with pytest.raises(ConfigError) as raised:
        run_policy(server.url, UNTAGGED, state_dir=tmp_path)
    assert "policy.test.selectors.0: 'untagged' selects untagged manifests" in str(raised.value)
    assert "[registry.test] storage" in str(raised.value)


@pytest.mark.parametrize("older_than", ["0s", "30m", "soon"])
def test_untagged_refuses_an_age_under_an_hour(server, tmp_path, older_than):
    policy = {"selectors": [{"use": "untagged", "older_than": older_than}]}
    with pytest.raises(ConfigError) as raised:
        plan_untagged(server, tmp_path, policy)
    assert "policy.test.selectors.0" in str(raised.value)


def test_the_plan_json_lists_untagged_items(server, tmp_path):
    pusher = ImagePusher(server.url)
    old = pusher.push_image("app", ["nightly"], seed="n1")
    pusher.push_image("app", ["nightly"], seed="n2")
    age_links(server, 3)
    plan = plan_untagged(server, tmp_path)
    item = json.loads(json.dumps(plan.content()))["delete"][0]
    assert item["digest"] == old.digest and item["tags"] == [] and item["role"] == "image"
