"""Untag (policy option ``untag = true``): tags of a selected image kept only because
it shares its digest with a kept tag are removed one by one; the image stays.

3.x removes a tag with its tag DELETE; 2.x only with ``untag_2x = "overwrite"`` (a
throwaway manifest on the tag, deleted by digest).  Each server is started
explicitly (``start_registry``), whatever pass of the suite this runs in, and
skopeo, an independent client, confirms what stays pulls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune.config import RegistrySettings
from regprune.engine import Engine
from regprune.errors import ApplyStopped, RegistryUnreachable, RegpruneError, UsageError
from regprune.lifecycle import ItemStatus, PlanStatus
from regprune.plugin_manager import get_plugin_manager
from regprune.registry import RegistryClient
from regprune.state import State
from regprune.testing import APPROVE_ALL, ImagePusher, assert_all_pull, days_ago, make_settings
from tests.distributions import pusher_for

OLD = 30
# Branch builds older than a week go, main-* builds stay.
POLICY: dict[str, Any] = {
    "keep_tags": ["^main-"],
    "selectors": [{"use": "age", "older_than": "7d"}],
    "untag": True,
}
POLICY_2X = {**POLICY, "untag_2x": "overwrite"}


def engine_for(
    url: str,
    state_dir: Path,
    policy: Mapping[str, Any] = POLICY,
    *,
    client: type[RegistryClient] = RegistryClient,
    registry_options: Mapping[str, Any] | None = None,
) -> Engine:
    """An engine over registry ``test`` at ``url``, its back end built as ``client``."""
    settings = make_settings(url, policy, registry_options=registry_options)
    state_dir.mkdir(parents=True, exist_ok=True)

    def factory(name: str, registry: RegistrySettings) -> RegistryClient:
        return client.from_settings(registry)

    return Engine(
        settings,
        State(state_dir / "state.db"),
        manager=get_plugin_manager(load_entrypoints=False),
        client_factory=factory,
    )


def close(engine: Engine) -> None:
    engine.close()
    engine.state.close()


def seed(url: str) -> dict[str, str]:
    """``shared``: main-abc (kept) with pr-1 and pr-2 (untag); ``alone``: pr-9
    (deleted); ``fresh``: new (not selected).  Returns tag -> digest."""
    with pusher_for(url) as pusher:
        shared = pusher.push_image("app", ["main-abc", "pr-1", "pr-2"], created=days_ago(OLD))
        alone = pusher.push_image("app", ["pr-9"], created=days_ago(OLD))
        fresh = pusher.push_image("app", ["new", "pr-new"], created=days_ago(1))
    return {
        "main-abc": shared.digest,
        "pr-1": shared.digest,
        "pr-2": shared.digest,
        "pr-9": alone.digest,
        "new": fresh.digest,
        "pr-new": fresh.digest,
    }


def untagged(plan: Any) -> set[str]:
    return {f"{item.repository}:{item.tag}" for item in plan.untag}


def registry_tags(url: str) -> dict[str, str | None]:
    with RegistryClient(url) as client:
        return {tag: client.head_manifest("app", tag) for tag in client.tags("app")}


@pytest.mark.parametrize("major", [3, 2])
def test_untag_removes_exactly_the_listed_tags_and_every_kept_tag_still_pulls(
    major: int, start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(major)
    digests = seed(server.url)
    engine = engine_for(server.url, tmp_path / "state", POLICY if major == 3 else POLICY_2X)
    try:
        plan = engine.plan("test")
        assert untagged(plan) == {"app:pr-1", "app:pr-2"}
        assert plan.untag_method == ("tag_delete" if major == 3 else "overwrite")
        assert {tag for item in plan.delete for tag in item.tags} == {"pr-9"}
        assert plan.summary.untags == 2
        # The image stays: its digest is kept, and the keep reason says what goes.
        kept = next(item for item in plan.keep if item.digest == digests["main-abc"])
        assert any("untag: removes tag(s) pr-1, pr-2" in reason for reason in kept.reasons)
        result = engine.apply(plan.id, context=APPROVE_ALL)
        assert [u.status for u in result.untag_outcomes] == [ItemStatus.DELETED] * 2
        audit = [
            e
            for e in engine.state.audit_log.events(plan_id=plan.id)
            if e.event.startswith("untag.")
        ]
    finally:
        close(engine)
    assert sorted((e.event, e.details["tag"]) for e in audit) == [
        ("untag.removed", "pr-1"),
        ("untag.removed", "pr-2"),
    ]
    # Exactly the listed tags (and the deleted image) are gone; the rest point where they did.
    assert registry_tags(server.url) == {tag: digests[tag] for tag in ("main-abc", "new", "pr-new")}
    assert_all_pull(server.url, expect=["app:main-abc", "app:new", "app:pr-new"])


def test_plan_json_lists_untags_apart_with_the_documented_shape(
    start_registry: Any, tmp_path: Path, regprune_cli: Any
) -> None:
    server = start_registry(3)
    digests = seed(server.url)
    (tmp_path / "regprune.toml").write_text(
        f'[registry.main]\nurl = "{server.url}"\n\n[policy.ci]\nregistry = "main"\n'
        'repositories = ["app"]\nkeep_tags = ["^main-"]\nuntag = true\n'
        'selectors = [{ use = "age", older_than = "7d" }]\n'
    )
    result = regprune_cli("plan", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [set(entry) for entry in data["untag"]] == [
        {"repository", "tag", "digest", "reasons"}
    ] * 2
    assert [(e["repository"], e["tag"], e["digest"]) for e in data["untag"]] == [
        ("app", "pr-1", digests["pr-1"]),
        ("app", "pr-2", digests["pr-2"]),
    ]
    assert data["untag_method"] == "tag_delete"
    assert data["summary"]["untags"] == 2
    assert data["registry_version"]["version"] == 3
    # Untags are no deletions: the delete list holds only the image that goes whole.
    assert [item["tags"] for item in data["delete"]] == [["pr-9"]]
    table = regprune_cli("plan")
    assert table.code == 0
    assert "untag (tags removed, images stay" in table.out
    assert "untag 2 tag(s) of kept images" in table.out


def test_untag_on_2x_without_the_opt_in_is_refused_naming_the_version(
    start_registry: Any, tmp_path: Path, regprune_cli: Any
) -> None:
    server = start_registry(2)
    digests = seed(server.url)
    (tmp_path / "regprune.toml").write_text(
        f'[registry.main]\nurl = "{server.url}"\n\n[policy.ci]\nregistry = "main"\n'
        'repositories = ["app"]\nkeep_tags = ["^main-"]\nuntag = true\n'
        'selectors = [{ use = "age", older_than = "7d" }]\n'
    )
    result = regprune_cli("plan")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Distribution 2.x" in lines[0] and 'untag_2x = "overwrite"' in lines[0]
    assert "Traceback" not in result.err
    assert regprune_cli("history", "--json").out.count('"plan.created"') == 0
    assert registry_tags(server.url) == digests  # nothing changed


def test_untag_with_version_2_configured_is_refused_before_any_request(tmp_path: Path) -> None:
    engine = engine_for("http://127.0.0.1:9", tmp_path, registry_options={"version": 2})
    try:
        with pytest.raises(UsageError, match=r"Distribution 2\.x \(configured"):
            engine.validate()
        assert engine.request_count == 0
    finally:
        close(engine)


def test_untag_on_an_unknown_version_says_how_to_set_it() -> None:
    from regprune.config import PolicySettings
    from regprune.registry import RegistryVersion
    from regprune.untag import untag_method

    policy = PolicySettings.model_validate(
        {
            "registry": "main",
            "repositories": ["*"],
            "selectors": [{"use": "count", "keep": 1}],
            "untag": True,
        }
    )
    unknown = RegistryVersion(None, "unknown", "GET /v2/ answered Content-Type text/html")
    with pytest.raises(UsageError) as refused:
        untag_method("ci", policy, unknown)
    assert "[registry.main] version = 3" in refused.value.message
    assert "text/html" in refused.value.message


def test_a_wrong_version_3_on_2x_fails_the_item_and_never_deletes_by_digest(
    start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(2)
    digests = seed(server.url)
    engine = engine_for(server.url, tmp_path / "s", registry_options={"version": 3})
    try:
        plan = engine.plan("test")
        assert plan.untag_method == "tag_delete"
        result = engine.apply(plan.id, context=APPROVE_ALL)
    finally:
        close(engine)
    assert {u.status for u in result.untag_outcomes} == {ItemStatus.FAILED}
    assert all("cannot delete a single tag" in u.reason for u in result.untag_outcomes)
    tags = registry_tags(server.url)
    # The shared image and all its tags are intact: the 400 was not "fixed" by a digest delete.
    assert {t: tags[t] for t in ("main-abc", "pr-1", "pr-2")} == {
        t: digests[t] for t in ("main-abc", "pr-1", "pr-2")
    }


def test_a_tag_moved_after_planning_is_not_removed(start_registry: Any, tmp_path: Path) -> None:
    server = start_registry(3)
    digests = seed(server.url)
    engine = engine_for(server.url, tmp_path / "s")
    try:
        plan = engine.plan("test")
        with pusher_for(server.url) as pusher:
            moved = pusher.push_image("app", ["pr-1"], created=days_ago(OLD))
        result = engine.apply(plan.id, context=APPROVE_ALL)
    finally:
        close(engine)
    outcome = {u.item.tag: u for u in result.untag_outcomes}
    assert outcome["pr-1"].status == ItemStatus.SKIPPED
    assert "tag changed since the plan" in outcome["pr-1"].reason
    assert outcome["pr-2"].status == ItemStatus.DELETED
    tags = registry_tags(server.url)
    assert tags["pr-1"] == moved.digest and tags["main-abc"] == digests["main-abc"]
    assert "pr-2" not in tags


def test_a_keep_rule_that_matches_the_tag_at_apply_keeps_it(
    start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(3)
    seed(server.url)
    engine = engine_for(server.url, tmp_path / "s")
    try:
        plan = engine.plan("test")
    finally:
        close(engine)
    # Between plan and apply, the config learns that pr-2 matters.
    changed = {**POLICY, "keep_tags": ["^main-", "^pr-2$"]}
    engine = engine_for(server.url, tmp_path / "s", changed)
    try:
        result = engine.apply(plan.id, context=APPROVE_ALL)
    finally:
        close(engine)
    outcome = {u.item.tag: u for u in result.untag_outcomes}
    assert outcome["pr-2"].status == ItemStatus.SKIPPED
    assert outcome["pr-2"].reason.startswith("kept at apply time")
    assert outcome["pr-1"].status == ItemStatus.DELETED
    assert "pr-2" in registry_tags(server.url)


def test_untag_never_leaves_an_image_without_a_tag(start_registry: Any, tmp_path: Path) -> None:
    server = start_registry(3)
    digests = seed(server.url)
    engine = engine_for(server.url, tmp_path / "s")
    try:
        plan = engine.plan("test")
        with RegistryClient(server.url) as client:
            client.delete_tag("app", "main-abc")  # the kept tag goes away meanwhile
        result = engine.apply(plan.id, context=APPROVE_ALL)
    finally:
        close(engine)
    assert {u.status for u in result.untag_outcomes} == {ItemStatus.SKIPPED}
    tags = registry_tags(server.url)
    assert tags["pr-1"] == tags["pr-2"] == digests["pr-1"]


class DiesOnSecondTag(RegistryClient):
    """The connection dies at the second tag removal (after the first one went through)."""

    calls: list[str] = []

    def delete_tag(self, repository: str, tag: str) -> str:
        DiesOnSecondTag.calls.append(tag)
        if len(DiesOnSecondTag.calls) == 2:
            raise RegistryUnreachable("registry unreachable (simulated)")
        return super().delete_tag(repository, tag)


def test_an_apply_that_dies_mid_untag_resumes_and_repeats_nothing(
    start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(3)
    seed(server.url)
    DiesOnSecondTag.calls = []
    engine = engine_for(server.url, tmp_path / "s", client=DiesOnSecondTag)
    try:
        plan = engine.plan("test")
        with pytest.raises(ApplyStopped, match=r"unreachable \(simulated\): stopped after"):
            engine.apply(plan.id, context=APPROVE_ALL)
        assert DiesOnSecondTag.calls == ["pr-1", "pr-2"]
        result = engine.apply(plan.id, context=APPROVE_ALL)  # `regprune apply PLAN_ID` again
    finally:
        close(engine)
    # pr-1 was removed once; only pr-2 was tried again; the deletion was not repeated.
    assert DiesOnSecondTag.calls == ["pr-1", "pr-2", "pr-2"]
    assert [u.status for u in result.untag_outcomes] == [ItemStatus.DELETED] * 2
    assert set(registry_tags(server.url)) == {"main-abc", "new", "pr-new"}


class DiesBeforeTheThrowawayDelete(RegistryClient):
    """2.x: the throwaway is on the tag, then the connection dies before its DELETE."""

    died = False

    def delete_manifest(self, repository: str, digest: str) -> str:
        facts = self.get_manifest(repository, digest)
        if not DiesBeforeTheThrowawayDelete.died and facts.data.get("layers") == []:
            DiesBeforeTheThrowawayDelete.died = True
            raise RegistryUnreachable("registry unreachable (simulated)")
        return super().delete_manifest(repository, digest)


def test_a_2x_untag_interrupted_between_put_and_delete_is_finished_on_resume(
    start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(2)
    digests = seed(server.url)
    DiesBeforeTheThrowawayDelete.died = False
    engine = engine_for(server.url, tmp_path / "s", POLICY_2X, client=DiesBeforeTheThrowawayDelete)
    try:
        plan = engine.plan("test")
        with pytest.raises(ApplyStopped, match=r"unreachable \(simulated\): stopped after"):
            engine.apply(plan.id, context=APPROVE_ALL)
        stuck = registry_tags(server.url)["pr-1"]
        assert stuck not in (None, digests["pr-1"])  # the tag names the throwaway now
        result = engine.apply(plan.id, context=APPROVE_ALL)  # `regprune apply PLAN_ID` again
    finally:
        close(engine)
    outcome = {u.item.tag: u for u in result.untag_outcomes}
    assert outcome["pr-1"].status == ItemStatus.DELETED
    assert "finished after an interruption" in outcome["pr-1"].reason
    assert set(registry_tags(server.url)) == {"main-abc", "new", "pr-new"}
    assert_all_pull(server.url, expect=["app:main-abc", "app:new", "app:pr-new"])


class NoTagDelete(RegistryClient):
    """A third-party back end that cannot remove a single tag (no ``delete_tag``)."""

    def __getattribute__(self, name: str) -> Any:
        if name == "delete_tag":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_back_end_without_tag_removal_is_refused_clearly(
    start_registry: Any, tmp_path: Path
) -> None:
    server = start_registry(3)
    digests = seed(server.url)
    engine = engine_for(server.url, tmp_path / "s", client=NoTagDelete)
    try:
        with pytest.raises(UsageError, match=r"cannot remove a single tag \(it has no delete_tag"):
            engine.plan("test")
        assert engine.state.plans.find() == []
    finally:
        close(engine)
    assert registry_tags(server.url) == digests


# --- planning, property-based ------------------------------------------------------------

TAGS = st.lists(
    st.sampled_from(["main-1", "main-2", "pr-1", "pr-2", "pr-3", "v1.0", "latest", "dev"]),
    min_size=1,
    max_size=5,
    unique=True,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.lists(st.tuples(TAGS, st.booleans()), min_size=1, max_size=6),
    keep=st.lists(st.sampled_from(["^main-", "^v", "^latest$", "^pr-1$", "^dev$"]), max_size=3),
    tag_filter=st.sampled_from([None, "^(pr|main)-", "^pr-"]),
)
def test_untag_never_lists_a_kept_tag_and_only_tags_of_kept_images(
    layout: list[tuple[list[str], bool]], keep: list[str], tag_filter: str | None
) -> None:
    """Any layout of tags over digests (each old or new), any keep_tags and tags filter:
    no untag item is a tag a keep rule keeps or outside the filter; every one belongs to
    an image the plan keeps, which keeps a tag of its own; nothing deleted is untagged."""
    from regprune.planner import build_plan, compile_policy
    from regprune.plugin_manager import build_catalog
    from regprune.scan import RepositoryScan
    from tests.plugin_units import NOW, make_image

    seen: set[str] = set()
    images = []
    for index, (tags, old) in enumerate(layout):
        fresh = [tag for tag in tags if tag not in seen]  # a tag names one digest
        seen.update(fresh)
        if fresh:
            image = make_image(f"d{index}", fresh, repository="app")
            built = NOW - timedelta(days=OLD if old else 1)
            image.facts = replace(image.facts, created=built.isoformat())  # the age source
            images.append(image)
    scan = RepositoryScan(
        "app",
        {tag: image.digest for image in images for tag in image.tags},
        {image.digest: image.facts for image in images},
        images,
    )
    body: dict[str, Any] = {
        **POLICY,
        "registry": "main",
        "repositories": ["app"],
        "keep_tags": keep,
    }
    if tag_filter:
        body["tags"] = tag_filter
    from regprune.config import PolicySettings

    catalog = build_catalog(get_plugin_manager(load_entrypoints=False))
    compiled = compile_policy("ci", PolicySettings.model_validate(body), catalog)
    plan = build_plan(
        policy_name="ci",
        registry_name="main",
        registry_url="http://127.0.0.1:5000",
        scans=[scan],
        compiled=compiled,
        keepers_for=lambda repository: [],
        catalog=catalog,
        now=NOW,
        requested_by="test",
    )
    patterns = [re.compile(p) for p in keep]
    inside = re.compile(tag_filter) if tag_filter else None
    kept_digests = {item.digest for item in plan.keep}
    deleted = {item.digest for item in plan.delete}
    by_digest = {image.digest: image for image in images}
    for item in plan.untag:
        assert not any(p.search(item.tag) for p in patterns), item
        assert inside is None or inside.search(item.tag), item
        assert item.digest in kept_digests and item.digest not in deleted
        others = [
            t for t in by_digest[item.digest].tags if t not in untagged_tags(plan, item.digest)
        ]
        assert others, f"{item.tag}: its image would be left without a tag"
        assert any(
            any(p.search(t) for p in patterns) or (inside is not None and not inside.search(t))
            for t in others
        )
    # And the other way round: every tag that should go is listed.
    for image in images:
        old = NOW - datetime.fromisoformat(image.facts.created or "") > timedelta(days=7)
        mine = [t for t in image.tags if inside is None or inside.search(t)]
        kept_tags = [t for t in image.tags if any(p.search(t) for p in patterns) or t not in mine]
        if not mine:
            continue  # not this policy's business
        expected = {t for t in mine if t not in kept_tags} if old and kept_tags else set()
        assert untagged_tags(plan, image.digest) == expected, image.tags
    assert [item.seq for item in plan.untag] == list(
        range(len(plan.delete), len(plan.delete) + len(plan.untag))
    )


def untagged_tags(plan: Any, digest: str) -> set[str]:
    return {item.tag for item in plan.untag if item.digest == digest}


def test_a_stored_plan_binds_its_untag_list(start_registry: Any, tmp_path: Path) -> None:
    """Approval covers the untags: they are in the hashed content, and a stored plan
    whose untag list was edited is refused."""
    server = start_registry(3)
    seed(server.url)
    engine = engine_for(server.url, tmp_path / "s")
    try:
        plan = engine.plan("test")
        assert [u.to_dict() for u in plan.untag] == plan.content()["untag"]
        content = json.loads(
            engine.state.db.execute("SELECT content FROM plans WHERE id = ?", [plan.id]).fetchone()[
                0
            ]
        )
        content["untag"][0]["tag"] = "main-abc"
        engine.state.db.execute(
            "UPDATE plans SET content = ? WHERE id = ?", [json.dumps(content), plan.id]
        )
        with pytest.raises(RegpruneError, match="modified after it was stored"):
            engine.state.plans.get(plan.id)
    finally:
        close(engine)


@pytest.mark.parametrize(
    ("user", "actions"),
    [
        ("cleaner", ["pull", "delete", "catalog"]),
        ("untagger", ["pull", "push", "delete", "catalog"]),
    ],
)
def test_2x_untag_asks_for_push_and_says_so_when_it_is_missing(
    user: str, actions: list[str], start_registry: Any, tmp_path: Path
) -> None:
    """With token auth, the throwaway's PUT needs ``pull,push``: a token without push is a
    one-line MissingScope naming it, and nothing was changed; with push it untags."""
    from regprune.errors import MissingScope
    from regprune.testing.token_issuer import TokenIssuer

    issuer = TokenIssuer({user: ("pw", actions)}).start()
    try:
        server = start_registry(2, token_auth=issuer.registry_auth_config())
        token = issuer.make_token(
            "seeder", [{"type": "repository", "name": "app", "actions": ["pull", "push"]}]
        )
        client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        with ImagePusher(server.url, client=client) as pusher:
            shared = pusher.push_image("app", ["main-abc", "pr-1"], created=days_ago(OLD))
            engine = engine_for(
                server.url,
                tmp_path / "s",
                POLICY_2X,
                registry_options={"username": user, "password": "pw"},
            )
            try:
                plan = engine.plan("test")
                assert untagged(plan) == {"app:pr-1"}
                if "push" not in actions:
                    with pytest.raises(MissingScope, match=r"repository:app:pull,push"):
                        engine.apply(plan.id, context=APPROVE_ALL)
                    assert pusher.resolve("app", "pr-1") == shared.digest
                    # Refused before anything changed: the plan waits for a new approval.
                    assert engine.state.plans.get(plan.id).status == PlanStatus.PENDING
                else:
                    result = engine.apply(plan.id, context=APPROVE_ALL)
                    assert [u.status for u in result.untag_outcomes] == [ItemStatus.DELETED]
                    assert pusher.resolve("app", "pr-1") is None
                assert pusher.resolve("app", "main-abc") == shared.digest
            finally:
                close(engine)
    finally:
        issuer.stop()
