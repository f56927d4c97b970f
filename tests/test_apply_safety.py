"""Apply under attack: pushes while it deletes, keep rules that change, plans moved to
another registry, refusals and partial applies.  Each against a real registry, and
each fails when the rule it names is broken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from regprune.cli import run
from regprune.errors import ApplyStopped, Interrupted, UsageError
from regprune.testing import (
    APPROVE_ALL,
    ImagePusher,
    days_ago,
    deleted_digests,
    kept_reasons,
    make_engine,
)

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}


def old_images(pusher: ImagePusher, count: int, repository: str = "ci/app"):
    return [
        pusher.push_image(repository, [f"build-{n}"], created=days_ago(30)) for n in range(count)
    ]


def guarded_by_in_use(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """An empty in_use listing (nothing deployed yet) and AGE with that keep rule."""
    in_use = tmp_path / "in-use.txt"
    in_use.write_text("")
    return in_use, {**AGE, "protectors": [{"use": "in_use", "file": str(in_use)}]}


def after_first_deletion(action):
    """A progress callback that runs ``action`` once, right after the first deletion."""
    done = []

    def progress(item, status, reason):
        if status == "deleted" and not done:
            done.append(item)
            action()

    return progress


# -- item 2: pushes during apply -------------------------------------------------------


def test_a_tag_pushed_onto_a_planned_image_during_apply_is_never_lost(
    registry_server, pusher, tmp_path
):
    images = old_images(pusher, 3)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    assert deleted_digests(plan) == {image.digest for image in images}
    last = images[-1]

    result = engine.apply(
        plan.id,
        context=APPROVE_ALL,
        progress=after_first_deletion(lambda: pusher.tag("ci/app", last.digest, "release-1")),
    )

    assert pusher.resolve("ci/app", "release-1") == last.digest
    skipped = {o.item.digest: o.reason for o in result.of("skipped")}
    assert "tags changed since the plan" in skipped[last.digest]
    assert "release-1" in skipped[last.digest]
    assert len(result.of("deleted")) == 2


def test_an_index_pushed_during_apply_keeps_the_manifests_it_lists(
    registry_server, pusher, tmp_path
):
    images = old_images(pusher, 3)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    listed = images[-1]

    def push_index() -> None:
        pusher.push_index_of("ci/app", [listed], ["multi"])

    result = engine.apply(plan.id, context=APPROVE_ALL, progress=after_first_deletion(push_index))

    # The new index still resolves to a manifest that exists ("manifest unknown" otherwise).
    assert pusher.manifest_exists("ci/app", listed.digest)
    skipped = {o.item.digest: o.reason for o in result.of("skipped")}
    assert "referenced by manifest" in skipped[listed.digest]


def test_a_signature_pushed_during_apply_keeps_its_subject(registry_server, pusher, tmp_path):
    images = old_images(pusher, 3)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    signed = images[-1]

    result = engine.apply(
        plan.id,
        context=APPROVE_ALL,
        progress=after_first_deletion(lambda: pusher.push_signature("ci/app", signed.digest)),
    )

    assert pusher.resolve("ci/app", "build-2") == signed.digest
    skipped = {o.item.digest: o.reason for o in result.of("skipped")}
    assert "referenced by manifest" in skipped[signed.digest]


def test_an_existing_tag_moved_onto_a_planned_image_is_caught_by_the_full_recheck(
    registry_server, pusher, tmp_path, monkeypatch
):
    import regprune.apply as apply_module

    images = old_images(pusher, 3)
    pusher.push_image("ci/app", ["latest"], created=days_ago(1))
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    target = images[-1]
    # Every re-check re-resolves every tag (as one does once the snapshot is old).
    monkeypatch.setattr(apply_module, "FULL_RECHECK_AFTER", 0.0)

    result = engine.apply(
        plan.id,
        context=APPROVE_ALL,
        progress=after_first_deletion(lambda: pusher.tag("ci/app", target.digest, "latest")),
    )

    assert pusher.resolve("ci/app", "latest") == target.digest
    assert target.digest in {o.item.digest for o in result.of("skipped")}


# -- item 3: a plan is bound to its registry ---------------------------------------------


def test_a_plan_is_never_applied_to_another_registry(registry_factory, tmp_path):
    staging, prod = registry_factory(), registry_factory()
    with ImagePusher(staging.url) as on_staging, ImagePusher(prod.url) as on_prod:
        # The same CI images on both (same seed: the same digests).
        for n in range(3):
            for pusher in (on_staging, on_prod):
                pusher.push_image(
                    "ci/app", [f"build-{n}"], created="2020-01-01T00:00:00Z", seed=f"s{n}"
                )
        staging_engine = make_engine(staging.url, AGE, name="ci", state_dir=tmp_path)
        plan = staging_engine.plan("ci")
        assert len(plan.delete) == 3
        staging_engine.close()

        # The same state DB, with a config whose registry "test" now points at prod.
        prod_engine = make_engine(prod.url, AGE, name="ci", state_dir=tmp_path)
        with pytest.raises(UsageError, match="was made for registry 'test' at") as refused:
            prod_engine.apply(plan.id, context=APPROVE_ALL)
        assert "nothing was deleted" in refused.value.message
        for n in range(3):
            assert on_prod.resolve("ci/app", f"build-{n}") is not None
            assert on_staging.resolve("ci/app", f"build-{n}") is not None


def test_a_plan_applies_through_another_spelling_of_its_registry(registry_server, pusher, tmp_path):
    old_images(pusher, 2)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    engine.close()
    other_spelling = registry_server.url.replace("127.0.0.1", "localhost") + "/"

    result = make_engine(other_spelling, AGE, name="ci", state_dir=tmp_path).apply(
        plan.id, context=APPROVE_ALL
    )

    assert result.status == "done" and len(result.of("deleted")) == 2


# -- item 4: keep wins for artifacts too ------------------------------------------------


def test_a_kept_referrer_keeps_its_subject(registry_server, pusher, tmp_path):
    subject = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    referrer = pusher.push_image(
        "ci/app",
        ["v9.9.9"],
        created=days_ago(30),
        subject=subject.digest,
        artifact_type="application/vnd.example.sbom+json",
    )
    other = pusher.push_image("ci/app", ["build-2"], created=days_ago(30))
    engine = make_engine(
        registry_server.url, {**AGE, "keep_tags": [r"^v\d"]}, name="ci", state_dir=tmp_path
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == {other.digest}
    assert any("its artifact" in r and "v9.9.9" in r for r in kept_reasons(plan, subject.digest))
    engine.apply(plan.id, context=APPROVE_ALL)
    assert pusher.resolve("ci/app", "v9.9.9") == referrer.digest
    assert pusher.resolve("ci/app", "build-1") == subject.digest


def test_a_kept_cosign_signature_keeps_its_subject(registry_server, pusher, tmp_path):
    subject = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    signature = pusher.push_signature("ci/app", subject.digest)
    listed = tmp_path / "in-use.txt"
    listed.write_text(f"ci/app@{signature.digest}\n")
    engine = make_engine(
        registry_server.url,
        {**AGE, "protectors": [{"use": "in_use", "file": str(listed)}]},
        name="ci",
        state_dir=tmp_path,
    )

    plan = engine.plan("ci")

    assert deleted_digests(plan) == set()
    assert any("its artifact" in r for r in kept_reasons(plan, subject.digest))


# -- item 6: keep rules at apply time ------------------------------------------------------


def test_an_image_deployed_while_the_plan_waited_is_kept_at_apply(
    registry_server, pusher, tmp_path
):
    images = old_images(pusher, 3)
    in_use, policy = guarded_by_in_use(tmp_path)
    engine = make_engine(registry_server.url, policy, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    assert len(plan.delete) == 3
    deployed = images[1]
    in_use.write_text(f"ci/app:{deployed.tags[0]}\n")  # deployed during the approval window

    result = engine.apply(plan.id, context=APPROVE_ALL)

    assert pusher.resolve("ci/app", deployed.tags[0]) == deployed.digest
    skipped = {o.item.digest: o.reason for o in result.of("skipped")}
    assert skipped[deployed.digest].startswith("kept at apply time:")
    assert "in_use" in skipped[deployed.digest]
    assert len(result.of("deleted")) == 2


def test_a_keep_rule_added_to_the_config_after_planning_wins(registry_server, pusher, tmp_path):
    images = old_images(pusher, 2)
    plan = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path).plan("ci")
    guarded = {**AGE, "keep_tags": ["^build-0$"]}

    result = make_engine(registry_server.url, guarded, name="ci", state_dir=tmp_path).apply(
        plan.id, context=APPROVE_ALL
    )

    assert pusher.resolve("ci/app", "build-0") == images[0].digest
    assert images[0].digest in {o.item.digest for o in result.of("skipped")}


def test_keep_rules_stored_with_the_plan_run_at_apply_when_the_policy_is_gone(
    registry_server, pusher, tmp_path
):
    images = old_images(pusher, 2)
    in_use, policy = guarded_by_in_use(tmp_path)
    plan = make_engine(registry_server.url, policy, name="ci", state_dir=tmp_path).plan("ci")
    assert plan.keep_rules == {
        "keep_tags": [],
        "protectors": [{"use": "in_use", "file": str(in_use)}],
    }
    in_use.write_text(f"ci/app@{images[0].digest}\n")
    # The policy was renamed (and lost its keep rule) before the plan was applied.
    renamed = make_engine(
        registry_server.url, {**AGE, "repositories": ["x/*"]}, name="other", state_dir=tmp_path
    )

    result = renamed.apply(plan.id, context=APPROVE_ALL)

    assert pusher.resolve("ci/app", "build-0") == images[0].digest
    skipped = {o.item.digest: o.reason for o in result.of("skipped")}
    assert "policy ci (as planned): in_use" in skipped[images[0].digest]
    assert pusher.resolve("ci/app", "build-1") is None


def test_quick_mode_plans_store_their_keep_rules(registry_server, pusher, tmp_path):
    from regprune.state import State

    old_images(pusher, 1)
    state = tmp_path / "state.db"
    argv = ["--state", str(state), "plan", "--registry", registry_server.url, "--repo", "ci/*"]
    assert run([*argv, "--older-than", "7d", "--keep-tag", "^keep-"]) == 0

    with State(state) as db:
        assert db.plans.find(limit=1)[0].keep_rules == {"keep_tags": ["^keep-"], "protectors": []}


def test_a_keep_rule_failing_at_apply_deletes_nothing(registry_server, pusher, tmp_path):
    images = old_images(pusher, 2)
    in_use, policy = guarded_by_in_use(tmp_path)
    engine = make_engine(registry_server.url, policy, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")
    in_use.unlink()  # the source of truth is gone: fail closed

    with pytest.raises(UsageError, match="in_use"):
        engine.apply(plan.id, context=APPROVE_ALL)

    assert all(pusher.resolve("ci/app", i.tags[0]) == i.digest for i in images)
    assert engine.state.plans.get(plan.id).status == "pending"
    newest = engine.state.audit_log.events(plan_id=plan.id)[0]
    assert newest.event == "apply.refused"


# -- items 13 and 14: refusals, partial applies, Ctrl-C -------------------------------------


def write_config(path: Path, url: str, **registry) -> Path:
    lines = [f'[registry.local]\nurl = "{url}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in registry.items()]
    lines += [
        '[policy.ci]\nregistry = "local"\nrepositories = ["ci/*"]',
        'selectors = [{ use = "age", older_than = "7d" }]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_refused_by_the_registry_exits_2_and_leaves_the_plan_reapprovable(
    registry_factory, tmp_path, capsys
):
    server = registry_factory(delete_enabled=False)
    with ImagePusher(server.url) as pusher:
        old_images(pusher, 2)
    config = write_config(tmp_path / "regprune.toml", server.url)
    base = ["--config", str(config), "--state", str(tmp_path / "state.db")]

    assert run([*base, "run", "--yes"]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "storage.delete.enabled" in err[0]
    from regprune.state import State

    with State(tmp_path / "state.db") as state:
        plan = state.plans.find(limit=1)[0]
        assert plan.status == "pending"
        assert "apply.refused" in {e.event for e in state.audit_log.events(plan_id=plan.id)}


def test_a_partial_apply_exits_1_and_says_how_to_finish(registry_server, pusher, tmp_path, capsys):
    old_images(pusher, 6)
    config = write_config(tmp_path / "regprune.toml", registry_server.url, retries=0)
    base = ["--config", str(config), "--state", str(tmp_path / "state.db")]
    assert run([*base, "plan", "--json"]) == 0
    plan_id = json.loads(capsys.readouterr().out)["plan_id"]
    engine = make_engine(
        registry_server.url, AGE, name="ci", state_dir=tmp_path, registry_options={"retries": 0}
    )
    seen = []

    def kill_after_five(item, status, reason):
        seen.append(item)
        if len(seen) == 5:
            registry_server.kill()

    with pytest.raises(ApplyStopped) as stopped:
        engine.apply(plan_id, context=APPROVE_ALL, progress=kill_after_five)
    assert stopped.value.exit_code == 1
    assert "stopped after 5 of 6 deletions" in stopped.value.message
    assert f"`regprune apply {plan_id}` finishes the rest" in stopped.value.message


def test_ctrl_c_during_apply_says_what_was_done_and_how_to_resume(
    registry_server, pusher, tmp_path
):
    images = old_images(pusher, 4)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    plan = engine.plan("ci")

    def interrupt_after_two(item, status, reason, seen=[]):  # noqa: B006
        seen.append(item)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as interrupted:
        engine.apply(plan.id, context=APPROVE_ALL, progress=interrupt_after_two)

    assert interrupted.value.exit_code == 130
    assert "stopped after 2 of 4 deletions" in interrupted.value.message
    assert f"regprune apply {plan.id}" in interrupted.value.message
    assert engine.state.plans.get(plan.id).status == "failed"
    finished = engine.apply(plan.id, context=APPROVE_ALL)
    assert finished.status == "done"
    assert all(pusher.resolve("ci/app", i.tags[0]) is None for i in images)
    deleted = [
        e for e in engine.state.audit_log.events(plan_id=plan.id) if e.event == "item.deleted"
    ]
    assert len(deleted) == 4  # nothing repeated


def test_pushes_while_slowed_deletes_are_in_flight_are_caught(registry_server, pusher, tmp_path):
    from regprune.testing import FaultProxy

    images = old_images(pusher, 5)
    with FaultProxy(registry_server.url) as proxy:
        engine = make_engine(proxy.url, AGE, name="ci", state_dir=tmp_path)
        plan = engine.plan("ci")
        assert len(plan.delete) == 5
        proxy.delay(0.3, method="DELETE", path=r"/manifests/sha256:[1-9a-f]")  # not the preflight
        pushed = []

        def push_during_the_first_delete(method: str, path: str) -> None:
            if pushed:
                return
            pushed.append(path)
            pusher.tag("ci/app", images[3].digest, "hotfix")
            pusher.push_index_of("ci/app", [images[4]], ["multi"])

        proxy.on_request(push_during_the_first_delete, method="DELETE", path=r"sha256:[1-9a-f]")
        result = engine.apply(plan.id, context=APPROVE_ALL)

    assert pushed, "no DELETE went through the proxy"
    skipped = {o.item.digest for o in result.of("skipped")}
    assert {images[3].digest, images[4].digest} <= skipped
    assert pusher.resolve("ci/app", "hotfix") == images[3].digest
    assert pusher.manifest_exists("ci/app", images[4].digest)
    assert len(result.of("deleted")) == 3


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_to_a_real_apply_prints_one_line_and_the_plan_resumes(
    registry_server, pusher, tmp_path, signum
):
    import signal
    import subprocess
    import sys
    import threading

    from regprune.testing import FaultProxy

    old_images(pusher, 4)
    with FaultProxy(registry_server.url) as proxy:
        config = write_config(tmp_path / "regprune.toml", proxy.url)
        base = ["--config", str(config), "--state", str(tmp_path / "state.db")]
        engine = make_engine(proxy.url, AGE, name="ci", state_dir=tmp_path)
        plan = engine.plan("ci")
        engine.close()
        deleting = threading.Event()
        proxy.delay(0.5, method="DELETE", path=r"sha256:[1-9a-f]")
        proxy.on_request(
            lambda method, path: deleting.set(), method="DELETE", path=r"sha256:[1-9a-f]"
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "regprune", *base, "apply", plan.id, "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert deleting.wait(30), "apply never sent a DELETE"
        child.send_signal(getattr(signal, signum))
        _out, err = child.communicate(timeout=30)

        assert child.returncode == 130
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: interrupted")
        assert "deletions of plan" in lines[0] and f"regprune apply {plan.id}" in lines[0]
        proxy.clear()
        assert run([*base, "apply", plan.id, "--yes"]) == 0  # the lock was released
    assert all(pusher.resolve("ci/app", f"build-{n}") is None for n in range(4))


@pytest.mark.parametrize("damage", ["{bad json", '{"digest": 5}', "[]", '"text"'])
def test_a_damaged_digest_cache_row_is_a_cache_miss(registry_server, pusher, tmp_path, damage):
    import sqlite3

    images = old_images(pusher, 2)
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    first = engine.plan("ci")
    engine.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE digests SET facts = ?", (damage,))

    again = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path).plan("ci")

    assert deleted_digests(again) == deleted_digests(first) == {i.digest for i in images}
