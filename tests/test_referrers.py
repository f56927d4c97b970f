"""Untagged referrers (OCI 1.1 ``subject``, no tag): found through the referrers API,
deleted with their subject, kept with it, re-checked at apply; the tag schema where
the API is not served.

The API is served by ``tests/referrers_proxy.py`` (a real HTTP server answering from
the real registry's storage, as Distribution's main branch does), since neither
2.8.2 nor 3.1.1 serves it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import cast

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regprune.cli.render import plan_tables
from regprune.errors import RegistryError
from regprune.lifecycle import ItemStatus
from regprune.mediatypes import ZERO_DIGEST
from regprune.registry import RegistryBackend, RegistryClient, referrers_of
from regprune.testing import PolicyRunner, days_ago, deleted_digests, kept_reasons
from tests.referrers_proxy import OCI_INDEX, ReferrersProxy

SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
POLICY = {"repositories": ["app"], "selectors": [{"use": "count", "keep": 1}]}


@pytest.fixture
def proxy(registry_server) -> Iterator[ReferrersProxy]:
    with ReferrersProxy(registry_server) as served:
        yield served


@pytest.fixture
def signed(pusher):
    """``app``: an old image (deleted by POLICY) and a new one (kept), each with an
    untagged signature and SBOM; the old signature has an untagged signature too."""
    old = pusher.push_image("app", ["old"], created=days_ago(10))
    new = pusher.push_image("app", ["new"], created=days_ago(1))
    found = {"old": old, "new": new}
    for name, image in (("old", old), ("new", new)):
        found[f"{name}.sig"] = pusher.push_image(
            "app", [], subject=image.digest, artifact_type=SIGNATURE
        )
        found[f"{name}.sbom"] = pusher.push_image(
            "app", [], subject=image.digest, artifact_type=SBOM
        )
    found["old.sig.sig"] = pusher.push_image(
        "app", [], subject=found["old.sig"].digest, artifact_type=SIGNATURE
    )
    return found


def present(pusher, repository: str, digest: str) -> bool:
    return pusher.resolve(repository, digest) is not None


# -- the client ------------------------------------------------------------------------


def test_the_client_lists_referrers_across_pages_and_filters(registry_server, pusher, signed):
    subject = signed["new"].digest
    with ReferrersProxy(registry_server, page_size=1) as paged, RegistryClient(paged.url) as client:
        listed = client.referrers("app", subject)
        assert listed is not None
        assert {d.digest for d in listed} == {
            signed["new.sig"].digest,
            signed["new.sbom"].digest,
        }
        assert {d.artifactType for d in listed} == {SIGNATURE, SBOM}
        assert len(paged.referrer_requests) == 2  # one page each
        only = client.referrers("app", subject, artifact_type=SBOM)
        assert [d.digest for d in only or []] == [signed["new.sbom"].digest]
    # A registry that ignores the filter (no OCI-Filters-Applied): filtered here.
    with (
        ReferrersProxy(registry_server, apply_filter=False) as unfiltered,
        RegistryClient(unfiltered.url) as client,
    ):
        only = client.referrers("app", subject, artifact_type=SIGNATURE)
        assert [d.digest for d in only or []] == [signed["new.sig"].digest]


def test_an_unknown_repository_is_served_and_empty(proxy):
    with RegistryClient(proxy.url) as client:
        assert client.referrers("nothing/here", "sha256:" + "a" * 64) == []
        assert client.referrers_api is True


def test_a_registry_without_the_api_is_asked_once(registry_server, pusher):
    # Distribution 2.8.2 and 3.1.1 answer a plain-text 404 (no route): "not served".
    image = pusher.push_image("app", ["v1"])
    with RegistryClient(registry_server.url, concurrency=8) as client:
        barrier = threading.Barrier(8)

        def ask(_: int) -> object:
            barrier.wait()
            return client.referrers("app", image.digest)

        answers = client.map(ask, range(8))
        assert answers == [None] * 8
        assert client.request_count == 1  # threads racing to ask first still ask once
        assert client.referrers("app", image.digest) is None
        assert client.request_count == 1


def test_a_configured_version_2_never_asks(registry_server, pusher):
    from regprune.testing import make_settings

    settings = make_settings(registry_server.url, registry_options={"version": 2})
    with RegistryClient.from_settings(settings.registry["test"]) as client:
        assert client.referrers("app", "sha256:" + "b" * 64) is None
        assert client.request_count == 0


SCALAR = st.none() | st.booleans() | st.integers() | st.text(max_size=80)
# Two levels of lists and objects: deep enough for a referrers index's shape.
NESTED = SCALAR | st.lists(SCALAR, max_size=4) | st.dictionaries(st.text(max_size=12), SCALAR)
JSON = NESTED | st.lists(NESTED, max_size=3) | st.dictionaries(st.text(max_size=12), NESTED)
DESCRIPTOR = st.fixed_dictionaries(
    {"digest": st.sampled_from(["sha256:" + "c" * 64, "sha256:xyz", 7])},
    optional={"mediaType": st.text(max_size=30), "size": st.integers(), "artifactType": JSON},
)


@settings(max_examples=200, deadline=None)
@given(
    body=JSON
    | st.fixed_dictionaries({"manifests": st.lists(DESCRIPTOR, max_size=3) | JSON})
    | st.binary(max_size=40),
    link=st.none()
    | st.sampled_from(
        ["</v2/app/referrers/x?n=1>; rel=next", "<http://elsewhere/>; rel=next", "garbage"]
    ),
)
def test_any_referrers_answer_is_a_list_or_one_registry_error(body, link):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": OCI_INDEX, **({"Link": link} if link else {})}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, content=content)

    with RegistryClient("http://registry.test", transport=httpx.MockTransport(answer)) as client:
        try:
            listed = client.referrers("app", "sha256:" + "d" * 64)
        except RegistryError as exc:
            assert "\n" not in exc.message
        else:
            assert listed is not None
            assert all(d.digest.startswith("sha256:") for d in listed)


# -- plan and apply ----------------------------------------------------------------------


def test_untagged_referrers_go_with_a_deleted_image_and_stay_with_a_kept_one(
    proxy, pusher, signed, tmp_path, capsys
):
    runner = PolicyRunner(proxy.url, tmp_path)
    plan = runner(POLICY)

    old = signed["old"].digest
    going = {signed[k].digest for k in ("old.sig", "old.sbom", "old.sig.sig")}
    assert deleted_digests(plan) == {old, *going}
    artifacts = [item for item in plan.delete if item.role == "artifact"]
    assert {item.digest for item in artifacts} == going
    assert all(item.parent == old and item.tags == () for item in artifacts)
    reasons = {item.digest: item.reasons for item in artifacts}
    assert reasons[signed["old.sbom"].digest] == (f"SBOM of deleted image {old[:19]}",)
    assert reasons[signed["old.sig"].digest] == (f"signature of deleted image {old[:19]}",)
    # The kept image's referrers were not even asked about: they stay with it.
    assert signed["new"].digest not in proxy.referrer_requests

    # The table shows an untagged referrer as such, under its image.
    plan_tables(plan, datetime.now(UTC), show_keep=False)
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.count("(referrer)") == 3

    result = runner.apply(plan)
    assert len(result.of(ItemStatus.DELETED)) == 4
    for digest in [old, *going]:
        assert not present(pusher, "app", digest)
    for name in ("new", "new.sig", "new.sbom"):
        assert present(pusher, "app", signed[name].digest)


def test_a_referrer_pushed_after_planning_keeps_its_subject(proxy, pusher, signed, tmp_path):
    runner = PolicyRunner(proxy.url, tmp_path)
    plan = runner(POLICY)
    old = signed["old"].digest
    late = pusher.push_image("app", [], subject=old, artifact_type=SBOM, seed="late")

    result = runner.apply(plan)

    assert not result.of(ItemStatus.DELETED)
    skipped = {o.item.digest: o.reason for o in result.of(ItemStatus.SKIPPED)}
    assert late.digest[:19] in skipped[old]
    for digest in (old, late.digest, signed["old.sig"].digest, signed["old.sbom"].digest):
        assert present(pusher, "app", digest)


def test_a_late_referrer_of_an_artifact_keeps_the_image_too(proxy, pusher, signed, tmp_path):
    runner = PolicyRunner(proxy.url, tmp_path)
    plan = runner(POLICY)
    sbom = signed["old.sbom"].digest
    pusher.push_image("app", [], subject=sbom, artifact_type=SIGNATURE, seed="late")

    result = runner.apply(plan)

    assert not result.of(ItemStatus.DELETED)
    assert present(pusher, "app", signed["old"].digest)


def test_a_listed_manifest_that_does_not_name_the_subject_is_not_taken(
    proxy, pusher, signed, tmp_path
):
    # A registry (or proxy) that lists as referrers of the old image an untagged
    # manifest with no subject and one with another subject: each manifest is read,
    # neither names the old image, so both stay out of the plan.
    loose = pusher.push_image("app", [], seed="loose")
    other = signed["new.sig"]
    proxy.extra[signed["old"].digest] = [
        {"mediaType": m.media_type, "digest": m.digest, "size": len(m.manifest)}
        for m in (loose, other)
    ]
    plan = PolicyRunner(proxy.url, tmp_path)(POLICY)
    assert signed["old"].digest in deleted_digests(plan)
    assert loose.digest not in deleted_digests(plan)
    assert other.digest not in deleted_digests(plan)


def test_a_referrer_a_keep_rule_keeps_keeps_its_image(proxy, pusher, signed, tmp_path):
    sbom = signed["old.sbom"].digest
    in_use = tmp_path / "in-use.txt"
    in_use.write_text(f"app@{sbom}\n")
    policy = {**POLICY, "protectors": [{"use": "in_use", "file": str(in_use)}]}
    plan = PolicyRunner(proxy.url, tmp_path)(policy)
    assert deleted_digests(plan) == set()
    assert any(sbom[:19] in reason for reason in kept_reasons(plan, signed["old"].digest))


def test_an_interrupted_apply_resumes_with_the_referrers_and_repeats_nothing(
    registry_server, fault_proxy, pusher, signed, tmp_path
):
    sbom = signed["old.sbom"].digest
    fault_proxy.respond(500, method="DELETE", path=f".*/manifests/{sbom}$", times=None)
    with ReferrersProxy(registry_server, upstream=fault_proxy.url) as proxy:
        runner = PolicyRunner(proxy.url, tmp_path)
        plan = runner(POLICY)
        first = runner.apply(plan)
        assert [o.item.digest for o in first.of(ItemStatus.FAILED)] == [sbom]
        assert not present(pusher, "app", signed["old"].digest)  # the subject went first
        fault_proxy.clear()
        fault_proxy.clear_requests()

        second = runner.apply(plan)

    assert len(second.of(ItemStatus.DELETED)) == len(plan.delete) == 4
    deletes = [r.path for r in fault_proxy.requests if r.method == "DELETE"]
    # Besides the preflight's zero-digest DELETE, only the one left: nothing twice.
    assert [p for p in deletes if ZERO_DIGEST not in p] == [f"/v2/app/manifests/{sbom}"]
    assert not present(pusher, "app", sbom)


def test_a_referrer_of_a_platform_manifest_goes_with_its_index(proxy, pusher, tmp_path):
    index = pusher.push_index("app", ["old"], created=days_ago(10))
    pusher.push_image("app", ["new"], created=days_ago(1))
    platform = index.children[1].digest
    signature = pusher.push_image("app", [], subject=platform, artifact_type=SIGNATURE)

    plan = PolicyRunner(proxy.url, tmp_path)(POLICY)

    items = {item.digest: item for item in plan.delete}
    assert items[signature.digest].role == "artifact"
    assert items[signature.digest].parent == index.digest
    assert {index.digest, platform, signature.digest} <= set(items)


def test_a_referrer_a_keep_rule_keeps_at_apply_time_keeps_its_image(
    proxy, pusher, signed, tmp_path
):
    in_use = tmp_path / "in-use.txt"
    in_use.write_text("")
    policy = {**POLICY, "protectors": [{"use": "in_use", "file": str(in_use)}]}
    runner = PolicyRunner(proxy.url, tmp_path)
    plan = runner(policy)
    sbom = signed["old.sbom"].digest
    assert sbom in deleted_digests(plan)
    in_use.write_text(f"app@{sbom}\n")  # deployed while the plan waited

    result = runner.apply(plan)

    assert not result.of(ItemStatus.DELETED)
    assert present(pusher, "app", signed["old"].digest) and present(pusher, "app", sbom)


# -- without the API: the tag schema -----------------------------------------------------


def referrers_index(pusher, subject: str, referrers: list) -> str:
    """Push the OCI 1.1 referrers tag schema: an index tagged ``sha256-<hex>``."""
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": r.media_type,
                    "digest": r.digest,
                    "size": len(r.manifest),
                    "artifactType": SBOM,
                }
                for r in referrers
            ],
        }
    ).encode()
    return pusher.push_manifest("app", body, OCI_INDEX, [subject.replace(":", "-")])


@pytest.mark.parametrize("deleted", [True, False], ids=["subject deleted", "subject kept"])
def test_the_referrers_tag_schema_goes_and_stays_with_its_subject(
    registry_server, pusher, tmp_path, deleted
):
    old = pusher.push_image("app", ["old"], created=days_ago(10))
    pusher.push_image("app", ["new"], created=days_ago(1))
    subject = old.digest if deleted else pusher.resolve("app", "new")
    assert subject is not None
    sbom = pusher.push_image("app", [], subject=subject, artifact_type=SBOM)
    index = referrers_index(pusher, subject, [sbom])
    runner = PolicyRunner(registry_server.url, tmp_path)

    plan = runner(POLICY)
    planned = deleted_digests(plan)
    if deleted:
        assert planned == {old.digest, index, sbom.digest}
    else:
        assert planned == {old.digest}  # the index is not an image of its own
    runner.apply(plan)
    assert present(pusher, "app", index) is not deleted
    assert present(pusher, "app", sbom.digest) is not deleted


def test_a_back_end_without_referrers_is_treated_as_not_serving_them():
    class Minimal:
        """A third-party back end from before the referrers API: no ``referrers``."""

    backend = cast(RegistryBackend, Minimal())
    assert referrers_of(backend, "app", "sha256:" + "e" * 64) is None
