"""The safety rules, each against a real Distribution registry.

Every test here fails when the rule it names is broken.
"""

from __future__ import annotations

import pytest

from regprune.errors import (
    ApplyStopped,
    DeletesDisabled,
    LockHeld,
    RegistryUnreachable,
    UsageError,
)
from regprune.models import Approval, ApprovalContext
from regprune.testing import (
    APPROVE_ALL,
    DEFAULT_REGISTRY,
    ImagePusher,
    PushedImage,
    days_ago,
    deleted_digests,
    kept_reasons,
    make_engine,
)

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}


# Rule 1: keep rules win, and so do the other tags of a kept digest.


def test_keep_rule_keeps_image_and_every_tag_sharing_its_digest(registry_server, pusher, tmp_path):
    shared = pusher.push_image("ci/app", ["main-1234567", "latest"], created=days_ago(30))
    old = pusher.push_image("ci/app", ["main-abcdef0"], created=days_ago(30))
    engine = make_engine(
        registry_server.url, {**AGE, "keep_tags": ["^latest$"]}, name="ci", state_dir=tmp_path
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == {old.digest}
    reasons = kept_reasons(plan, shared.digest)
    assert any("latest" in r and "^latest$" in r for r in reasons)
    assert any("main-1234567 shares digest with kept tag 'latest'" in r for r in reasons)

    engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.resolve("ci/app", "latest") == shared.digest
    assert pusher.resolve("ci/app", "main-1234567") == shared.digest
    assert pusher.resolve("ci/app", "main-abcdef0") is None


def test_keep_rule_of_another_policy_wins(registry_server, pusher, tmp_path):
    release = pusher.push_image("ci/app", ["v1.2.3"], created=days_ago(60))
    build = pusher.push_image("ci/app", ["build-1"], created=days_ago(60))
    engine = make_engine(
        registry_server.url,
        other_policies={
            "ci": AGE,
            "releases": {**AGE, "repositories": ["ci/app"], "keep_tags": [r"^v\d+\.\d+\.\d+$"]},
        },
        state_dir=tmp_path,
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == {build.digest}
    assert any("policy releases" in r for r in kept_reasons(plan, release.digest))


def test_tag_outside_the_policy_filter_keeps_the_digest(registry_server, pusher, tmp_path):
    both = pusher.push_image("ci/app", ["pr-1", "nightly"], created=days_ago(30))
    only = pusher.push_image("ci/app", ["pr-2"], created=days_ago(30))
    engine = make_engine(
        registry_server.url, {**AGE, "tags": "^pr-"}, name="ci", state_dir=tmp_path
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == {only.digest}
    assert any("nightly" in r for r in kept_reasons(plan, both.digest))


# Rule 2: index children go with their index, and only when nothing else references them.


def test_deleting_an_index_deletes_its_children(registry_server, pusher, tmp_path):
    index = pusher.push_index("ci/multi", ["build-1"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)

    plan = engine.plan("ci")

    children = {child.digest for child in index.children}
    assert deleted_digests(plan) == {index.digest} | children
    assert {item.role for item in plan.delete if item.digest in children} == {"child"}
    # The index comes before its children, so an interrupted apply never orphans an index.
    order = [item.digest for item in plan.delete]
    assert order.index(index.digest) < min(order.index(c) for c in children)

    result = engine.apply(plan.id, context=APPROVE_ALL)
    assert result.status == "done"
    for digest in [index.digest, *children]:
        assert not pusher.manifest_exists("ci/multi", digest)


def test_child_shared_with_a_kept_index_is_not_deleted(registry_server, pusher, tmp_path):
    old = pusher.push_index("ci/multi", ["build-1"], created=days_ago(30))
    shared_child = old.children[0]
    fresh_child = pusher.push_image("ci/multi", (), created=days_ago(1), platform="linux/arm64")
    # A newer index (kept by count) that reuses the amd64 manifest of the old one.
    pusher.push_index_of("ci/multi", [shared_child, fresh_child], ["build-2"])
    engine = make_engine(
        registry_server.url,
        {**AGE, "selectors": [{"use": "count", "keep": 1}]},
        name="ci",
        state_dir=tmp_path,
    )

    plan = engine.plan("ci")

    deleted = deleted_digests(plan)
    assert old.digest in deleted
    assert shared_child.digest not in deleted
    assert old.children[1].digest in deleted

    engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.manifest_exists("ci/multi", shared_child.digest)
    assert pusher.manifest_exists("ci/multi", fresh_child.digest)
    assert not pusher.manifest_exists("ci/multi", old.children[1].digest)


def old_index_with_a_tagged_child(
    pusher: ImagePusher, index_tag: str, child: int, child_tag: str
) -> tuple[PushedImage, PushedImage]:
    """A 30-day-old two-platform index in ci/multi, and its child number ``child``,
    which carries a tag of its own."""
    index = pusher.push_index("ci/multi", [index_tag], created=days_ago(30))
    tagged = index.children[child]
    pusher.tag("ci/multi", tagged.digest, child_tag)
    return index, tagged


def test_tagged_child_of_a_deleted_index_is_kept_when_not_selected(
    registry_server, pusher, tmp_path
):
    index, amd64 = old_index_with_a_tagged_child(pusher, "build-1", 0, "keep-amd64")
    engine = make_engine(
        registry_server.url, {**AGE, "keep_tags": ["^keep-"]}, name="ci", state_dir=tmp_path
    )

    plan = engine.plan("ci")

    assert index.digest in deleted_digests(plan)
    assert amd64.digest not in deleted_digests(plan)
    engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.resolve("ci/multi", "keep-amd64") == amd64.digest


def test_platform_manifest_of_a_kept_index_is_never_deleted(registry_server, pusher, tmp_path):
    _, arm = old_index_with_a_tagged_child(pusher, "latest", 1, "arm-only")
    engine = make_engine(
        registry_server.url, {**AGE, "keep_tags": ["^latest$"]}, name="ci", state_dir=tmp_path
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == set()
    assert any("platform manifest of index" in r for r in kept_reasons(plan, arm.digest))


# Rule 3: signatures and attestations go and stay with their subject; they never count toward keep.


def test_signatures_follow_their_subject_and_do_not_count(registry_server, pusher, tmp_path):
    older = pusher.push_image("ci/app", ["build-1"], created=days_ago(20))
    newer = pusher.push_image("ci/app", ["build-2"], created=days_ago(10))
    older_sig = pusher.push_signature("ci/app", older.digest, "sig")
    older_att = pusher.push_signature("ci/app", older.digest, "att")
    newer_sig = pusher.push_signature("ci/app", newer.digest, "sig")
    engine = make_engine(
        registry_server.url,
        {"repositories": ["ci/*"], "selectors": [{"use": "count", "keep": 1}]},
        name="ci",
        state_dir=tmp_path,
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == {older.digest, older_sig.digest, older_att.digest}
    assert {item.role for item in plan.delete if item.digest != older.digest} == {"artifact"}
    assert plan.summary.images == 1

    engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.resolve("ci/app", newer_sig.tags[0]) == newer_sig.digest
    assert pusher.resolve("ci/app", older_sig.tags[0]) is None
    assert pusher.resolve("ci/app", "build-2") == newer.digest


def test_referrer_with_subject_is_deleted_with_its_subject(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(20))
    sbom = pusher.push_image(
        "ci/app", ["build-1-sbom"], subject=image.digest, artifact_type="application/spdx+json"
    )
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)

    plan = engine.plan("ci")

    assert deleted_digests(plan) == {image.digest, sbom.digest}


# Rule 4: apply re-resolves; a tag pushed or moved after planning is never lost.


def test_tag_pushed_onto_a_planned_digest_after_planning_is_kept(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    other = pusher.push_image("ci/app", ["build-2"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    assert deleted_digests(plan) == {image.digest, other.digest}

    pusher.tag("ci/app", image.digest, "release-1")
    result = engine.apply(plan.id, context=APPROVE_ALL)

    skipped = {o.item.digest: o.reason for o in result.of("skipped")}
    assert "tags changed" in skipped[image.digest]
    assert pusher.resolve("ci/app", "release-1") == image.digest
    assert pusher.resolve("ci/app", "build-2") is None


def test_tag_moved_to_a_new_image_after_planning(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["build-1", "stable"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    assert deleted_digests(plan) == {image.digest}

    replacement = pusher.push_image("ci/app", ["stable"])
    result = engine.apply(plan.id, context=APPROVE_ALL)

    assert [o.item.digest for o in result.of("skipped")] == [image.digest]
    assert pusher.resolve("ci/app", "stable") == replacement.digest
    assert pusher.resolve("ci/app", "build-1") == image.digest


def test_new_index_referencing_a_planned_image_protects_it(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    pusher.push_index_of("ci/app", [image], ["multi"])
    # The image also lost nothing tag-wise, so only the new reference can save it.
    result = engine.apply(plan.id, context=APPROVE_ALL)

    assert "referenced by manifest" in result.of("skipped")[0].reason
    assert pusher.manifest_exists("ci/app", image.digest)


# Rule 5: no trustworthy time, never selected by age.


@pytest.mark.parametrize(
    ("created", "why"),
    [
        ("1970-01-01T00:00:00Z", "Unix epoch"),
        (None, "no created time"),
        ("2999-01-01T00:00:00Z", "in the future"),
    ],
)
def test_untrustworthy_time_is_never_selected_by_age(
    registry_server, pusher, tmp_path, created, why
):
    image = pusher.push_image("ci/app", ["build-1"], created=created)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)

    plan = engine.plan("ci")

    assert plan.delete == []
    assert any(why in r for r in kept_reasons(plan, image.digest))


def test_label_is_the_fallback_time(registry_server, pusher, tmp_path):
    image = pusher.push_image(
        "ci/app",
        ["build-1"],
        created="1970-01-01T00:00:00Z",
        labels={"org.opencontainers.image.created": days_ago(30).isoformat()},
    )
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)

    assert deleted_digests(engine.plan("ci")) == {image.digest}


# Rule 6: refused clearly when deletes are disabled; nothing changes.


def test_deletes_disabled_refuses_before_deleting_anything(registry_factory, tmp_path):
    from regprune.testing import ImagePusher

    server = registry_factory(delete_enabled=False)
    pusher = ImagePusher(server.url)
    images = [pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30)) for n in range(3)]
    engine = make_engine(server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    assert len(plan.delete) == 3

    with pytest.raises(DeletesDisabled, match=r"storage\.delete\.enabled: true"):
        engine.apply(plan.id, context=APPROVE_ALL)

    assert all(pusher.resolve("ci/app", image.tags[0]) == image.digest for image in images)
    # Refused before anything was deleted: a failure event, and the plan re-approvable.
    assert engine.state.plans.get(plan.id).status == "pending"
    assert engine.state.approvals.of(plan.id) == []
    assert {s for s, _ in engine.state.plans.item_statuses(plan.id).values()} == {"pending"}
    refused = [
        e for e in engine.state.audit_log.events(plan_id=plan.id) if e.event == "apply.refused"
    ]
    assert len(refused) == 1 and "storage.delete.enabled" in refused[0].details["error"]


# Rule 7: resumable, repeats nothing; one apply per registry at a time.


def test_registry_killed_mid_apply_then_resumed(registry_server, pusher, tmp_path):
    images = [pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30)) for n in range(6)]
    engine = make_engine(
        registry_server.url, AGE, name="ci", state_dir=tmp_path, registry_options={"retries": 0}
    )
    plan = engine.plan("ci")
    seen = []

    def kill_after_three(item, status, reason):
        seen.append(item.digest)
        if len(seen) == 3:
            registry_server.kill()

    # Some deletions happened: exit 1 (not 2), saying how far it got and how to finish.
    with pytest.raises(ApplyStopped, match=r"stopped after 3 of 6 deletions") as stopped:
        engine.apply(plan.id, context=APPROVE_ALL, progress=kill_after_three)
    assert stopped.value.exit_code == 1
    assert isinstance(stopped.value.cause, RegistryUnreachable)
    assert f"`regprune apply {plan.id}` finishes the rest" in stopped.value.message
    assert engine.state.plans.get(plan.id).status == "failed"
    statuses = engine.state.plans.item_statuses(plan.id)
    assert sum(1 for s, _ in statuses.values() if s == "deleted") == 3

    registry_server.start()
    result = engine.apply(plan.id, context=APPROVE_ALL)

    assert result.status == "done"
    assert len(result.of("deleted")) == 6
    deleted_events = [
        e
        for e in engine.state.audit_log.events(limit=100, plan_id=plan.id)
        if e.event == "item.deleted"
    ]
    assert sorted(e.details["digest"] for e in deleted_events) == sorted(i.digest for i in images)
    for image in images:
        assert pusher.resolve("ci/app", image.tags[0]) is None

    again = engine.apply(plan.id, context=APPROVE_ALL)
    assert again.status == "done"
    assert (
        len(
            [
                e
                for e in engine.state.audit_log.events(limit=200, plan_id=plan.id)
                if e.event == "item.deleted"
            ]
        )
        == 6
    )


def test_only_one_apply_per_registry(registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    with (
        engine.state.locks.hold(
            engine.lock_name(DEFAULT_REGISTRY), purpose="a test holding the lock"
        ),
        pytest.raises(LockHeld, match="busy"),
    ):
        engine.apply(plan.id, context=APPROVE_ALL)
    assert engine.apply(plan.id, context=APPROVE_ALL).status == "done"


def test_cli_approval_without_terminal_or_yes_refuses(registry_server, pusher, tmp_path):
    from regprune.errors import UsageError

    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")

    with pytest.raises(UsageError, match="--yes"):
        engine.apply(
            plan.id, context=ApprovalContext(assume_yes=False, interactive=False, actor="cron")
        )
    assert pusher.resolve("ci/app", "build-1") == image.digest
    assert engine.state.plans.get(plan.id).status == "pending"


def test_image_listed_by_a_skipped_index_is_not_deleted(registry_server, pusher, tmp_path):
    platform = pusher.push_image("ci/app", ["plat-1"], created=days_ago(30))
    pusher.push_index_of("ci/app", [platform], ["build-1"])
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    index_digest = pusher.resolve("ci/app", "build-1")
    assert deleted_digests(plan) == {platform.digest, index_digest}

    pusher.tag("ci/app", "build-1", "release-1")  # the index is promoted after planning
    result = engine.apply(plan.id, context=APPROVE_ALL)

    assert {o.item.digest for o in result.of("skipped")} == {platform.digest, index_digest}
    assert pusher.manifest_exists("ci/app", platform.digest)
    assert pusher.resolve("ci/app", "release-1") == index_digest


def test_apply_stops_when_the_plan_changed_state_before_it_took_the_lock(
    registry_server, pusher, tmp_path, monkeypatch
):
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    engine.record_decision(plan, Approval("approved", "tester", "test"))
    original = engine.state.locks.hold

    def cancelled_meanwhile(name, **kwargs):
        # Another process cancels the plan between our status check and our lock.
        engine.state.plans.set_status(plan.id, "cancelled", expected=("approved",))
        return original(name, **kwargs)

    monkeypatch.setattr(engine.state.locks, "hold", cancelled_meanwhile)
    with pytest.raises(UsageError, match="became cancelled meanwhile"):
        engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.resolve("ci/app", "build-1") == image.digest
