"""The ``semver`` keep rule against a real registry: planned, applied (and asked again
on the live repository), with ``untag``, and quick mode's ``--keep-semver N`` through
the command line."""

from __future__ import annotations

import httpx
import pytest

from regprune.errors import ConfigError
from regprune.lifecycle import ItemStatus
from regprune.registry import RegistryClient
from regprune.testing import apply_plan, days_ago, deleted_tags, kept_tags, reasons_for, run_policy
from tests.distributions import pusher_for

# The tags of issue 12: the old documented keep_tags pattern let 1.1.0 and v1.2.0-rc.1 go.
RELEASES = ["v1.0.0", "v1.0.1", "1.1.0", "v1.2.0-rc.1", "v2.0.0", "latest", "build-7"]
OLD_PATTERN = r"^v\d+\.\d+\.\d+$"
DOCUMENTED_PATTERN = r"^v?\d+\.\d+\.\d+"


@pytest.fixture
def releases(pusher):
    """apps/web: every tag of RELEASES on its own image, all 90 days old."""
    return {tag: pusher.push_image("apps/web", [tag], created=days_ago(90)) for tag in RELEASES}


def test_keeps_the_newest_releases_per_major_and_newer_prereleases(releases, regprune_plan):
    plan = regprune_plan(
        {
            "selectors": [{"use": "age", "older_than": "30d"}],
            "protectors": [{"use": "semver", "keep": 2}],
        }
    )

    # Non-semver tags are the age selector's: the semver rule neither keeps nor judges them.
    assert deleted_tags(plan) == {"apps/web:v1.0.0", "apps/web:latest", "apps/web:build-7"}
    assert kept_tags(plan) == {
        "apps/web:1.1.0",
        "apps/web:v1.0.1",
        "apps/web:v1.2.0-rc.1",
        "apps/web:v2.0.0",
    }
    assert reasons_for(plan, "apps/web:1.1.0")[0] == (
        "semver: tag '1.1.0' is release #1 of 1.x, within keep=2"
    )
    assert reasons_for(plan, "apps/web:v1.2.0-rc.1")[0] == (
        "semver: tag 'v1.2.0-rc.1' is a prerelease newer than every 1.x release"
    )
    assert reasons_for(plan, "apps/web:v1.0.0") == ["age: built 90d ago (created), older than 30d"]


def test_the_old_keep_tags_pattern_missed_them_and_the_documented_one_does_not(
    releases, regprune_plan
):
    old = regprune_plan(
        {"selectors": [{"use": "age", "older_than": "30d"}], "keep_tags": [OLD_PATTERN]}
    )
    assert {"apps/web:1.1.0", "apps/web:v1.2.0-rc.1"} <= deleted_tags(old)

    documented = regprune_plan(
        {"selectors": [{"use": "age", "older_than": "30d"}], "keep_tags": [DOCUMENTED_PATTERN]}
    )
    assert deleted_tags(documented) == {"apps/web:latest", "apps/web:build-7"}


def test_per_minor_and_ignored_prereleases(pusher, regprune_plan):
    for tag in ["1.4.0", "1.4.1", "1.5.0", "1.5.1", "1.6.0-rc.1"]:
        pusher.push_image("apps/api", [tag], created=days_ago(90))

    plan = regprune_plan(
        {
            "selectors": [{"use": "age", "older_than": "30d"}],
            "protectors": [{"use": "semver", "keep": 1, "per": "minor", "prereleases": "ignore"}],
        }
    )

    assert deleted_tags(plan) == {"apps/api:1.4.0", "apps/api:1.5.0", "apps/api:1.6.0-rc.1"}
    assert reasons_for(plan, "apps/api:1.5.1")[0] == (
        "semver: tag '1.5.1' is release #1 of 1.5.x, within keep=1"
    )


def test_apply_asks_the_rule_again_on_what_the_repository_holds_now(
    releases, regprune_plan, registry_server
):
    plan = regprune_plan(
        {
            "selectors": [{"use": "age", "older_than": "30d"}],
            "protectors": [{"use": "semver", "keep": 2}],
        }
    )
    assert "apps/web:v1.0.0" in deleted_tags(plan)
    # Someone deletes the newest 1.x release: v1.0.0 is now one of the newest two.
    response = httpx.delete(
        f"{registry_server.url}/v2/apps/web/manifests/{releases['1.1.0'].digest}",
        trust_env=False,
    )
    assert response.status_code == 202

    result = regprune_plan.apply(plan)

    assert {tag for outcome in result.of("deleted") for tag in outcome.item.tags} == {
        "latest",
        "build-7",
    }
    (skipped,) = result.of("skipped")
    assert skipped.item.tags == ("v1.0.0",)
    assert "semver: tag 'v1.0.0' is release #2 of 1.x, within keep=2" in skipped.reason


def test_a_bad_option_names_the_config_key(registry_server, regprune_plan):
    with pytest.raises(ConfigError, match=r"^policy\.test\.protectors\.0: per: input should be"):
        regprune_plan(
            {
                "selectors": [{"use": "age", "older_than": "30d"}],
                "protectors": [{"use": "semver", "keep": 2, "per": "patch"}],
            }
        )


# -- quick mode ---------------------------------------------------------------------------


def test_quick_mode_keep_semver(releases, registry_server, regprune_cli, tmp_path):
    result = regprune_cli(
        "--state", str(tmp_path / "state.db"), "plan", "--registry", registry_server.url,
        "--repo", "apps/*", "--older-than", "30d", "--keep-semver", "1", "--json",
    )  # fmt: skip

    assert result.code == 0, result.err
    plan = result.json()
    deleted = {tag for item in plan["delete"] for tag in item["tags"]}
    assert deleted == {"v1.0.0", "v1.0.1", "latest", "build-7"}
    kept = {tag: item["reasons"][0] for item in plan["keep"] for tag in item["tags"]}
    assert kept == {
        "1.1.0": "semver: tag '1.1.0' is release #1 of 1.x, within keep=1",
        "v1.2.0-rc.1": "semver: tag 'v1.2.0-rc.1' is a prerelease newer than every 1.x release",
        "v2.0.0": "semver: tag 'v2.0.0' is release #1 of 2.x, within keep=1",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--older-than", "30d", "--keep-semver", "0"],
            "error: --keep-semver: must be 1 or more, not 0\n",
        ),
        (
            ["--keep-semver", "3"],
            "error: quick mode needs --older-than DURATION and/or --keep N "
            "(--keep-semver only keeps; these say what to delete)\n",
        ),
    ],
)
def test_quick_mode_keep_semver_errors(flags, message, regprune_cli, tmp_path):
    # A closed port: a bad flag is reported before any connection.
    result = regprune_cli(
        "--state", str(tmp_path / "state.db"), "plan", "--registry", "http://127.0.0.1:9",
        "--repo", "apps/*", *flags,
    )  # fmt: skip

    assert (result.code, result.err) == (2, message)


# -- untag: each tag is ranked among the repository's versions, not alone -------------------


@pytest.mark.parametrize("major", [3, 2])
def test_untag_removes_a_release_tag_beyond_keep_from_an_image_kept_by_another_tag(
    major, start_registry, tmp_path
):
    server = start_registry(major)
    with pusher_for(server.url) as pusher:
        shared = pusher.push_image("app", ["v1.0.0", "stable"], created=days_ago(30))
        for tag in ["v1.1.0", "v1.2.0"]:
            pusher.push_image("app", [tag], created=days_ago(30))
    policy = {
        "keep_tags": ["^stable$"],
        "selectors": [{"use": "age", "older_than": "7d"}],
        "protectors": [{"use": "semver", "keep": 2}],
        "untag": True,
        **({"untag_2x": "overwrite"} if major == 2 else {}),
    }

    plan = run_policy(server.url, policy, state_dir=tmp_path, load_entrypoints=False)

    # v1.0.0 is release #3 of 1.x: no keep rule keeps the tag, so only it goes.
    assert [(item.repository, item.tag) for item in plan.untag] == [("app", "v1.0.0")]
    assert plan.delete == []
    result = apply_plan(server.url, plan.id, state_dir=tmp_path, load_entrypoints=False)
    assert [(o.item.tag, o.status) for o in result.untag_outcomes] == [
        ("v1.0.0", ItemStatus.DELETED)
    ]
    with RegistryClient(server.url) as client:
        assert sorted(client.tags("app")) == ["stable", "v1.1.0", "v1.2.0"]
        assert client.head_manifest("app", "stable") == shared.digest
