"""Tests of the semver selector: its rules alone, then through regprune against a real registry.

The fixtures ``pusher`` and ``regprune_plan`` come from ``regprune.testing``, a pytest
plugin that regprune installs: ``regprune_plan`` starts a throwaway registry on
loopback and plans a policy with the real engine and every installed plugin.
"""

import re

import pytest
from regprune import ConfigError, compile_pattern, parse_options
from regprune.testing import deleted_tags, kept_tags, reasons_for

from regprune_semver import DEFAULT_PATTERN, SemverOptions, parse_version

PATTERN = compile_pattern(DEFAULT_PATTERN)


def test_versions_sort_by_semver_precedence():
    tags = ["1.10.0", "v1.2.3", "1.3.0-rc.1", "1.3.0-rc.2", "1.3.0", "1.3.0-alpha"]
    ranked = sorted((parse_version(tag, PATTERN) for tag in tags), key=lambda v: v.key())
    assert [v.text for v in ranked] == [
        "v1.2.3",
        "1.3.0-alpha",
        "1.3.0-rc.1",
        "1.3.0-rc.2",
        "1.3.0",
        "1.10.0",
    ]


@pytest.mark.parametrize("tag", ["latest", "v1.2", "main-3f2a1c9", "1.02.3", "v1.2.3.4"])
def test_tags_that_are_not_releases(tag):
    assert parse_version(tag, PATTERN) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"keep_per_major": 0},
            "keep_per_major: input should be greater than or equal to 1, got 0",
        ),
        (
            {"keep_per_major": True},
            "keep_per_major: expected a whole number without quotes (e.g. 8), not true",
        ),
        ({"keep": 2}, "unknown option 'keep' (valid options: keep_per_major, pattern)"),
        ({"pattern": "^app-"}, "needs a (?P<version>...) group"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_options(SemverOptions, options)


def test_keeps_the_newest_releases_of_each_major(pusher, regprune_plan):
    for tag in ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0", "v2.0.1", "nightly"]:
        pusher.push_image("app", [tag])

    plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 1}]})

    assert deleted_tags(plan) == {"app:v1.0.0", "app:v1.1.0", "app:v2.0.0"}
    assert kept_tags(plan) == {"app:v1.1.1", "app:v2.0.1", "app:nightly"}
    reason = "semver_releases: v1.0.0 is release #3 of major 1, beyond keep_per_major=1"
    assert reason in reasons_for(plan, "app:v1.0.0")


def test_prereleases_go_once_outranked(pusher, regprune_plan):
    for tag in ["1.0.0", "1.1.0-rc.1", "1.1.0", "1.2.0-rc.1"]:
        pusher.push_image("app", [tag])

    plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 2}]})

    assert deleted_tags(plan) == {"app:1.1.0-rc.1"}
    assert "semver_releases: pre-release 1.2.0-rc.1 is newer than every 1.x release" in reasons_for(
        plan, "app:1.2.0-rc.1"
    )


def test_a_release_that_is_also_latest_is_kept(pusher, regprune_plan):
    pusher.push_image("app", ["v1.0.0", "latest"])
    pusher.push_image("app", ["v1.1.0"])

    plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 1}]})

    assert deleted_tags(plan) == set()
    assert any("also tagged latest" in reason for reason in reasons_for(plan, "app:latest"))


def test_apply_deletes_what_the_plan_lists(pusher, regprune_plan):
    for tag in ["v1.0.0", "v1.1.0"]:
        pusher.push_image("app", [tag])
    plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 1}]})

    result = regprune_plan.apply(plan)

    assert result.status == "done"
    assert pusher.tags("app") == ["v1.1.0"]


def test_a_bad_option_names_the_config_key(registry_server, regprune_plan):
    with pytest.raises(ConfigError, match=r"^policy\.test\.selectors\.0: keep_per_major: "):
        regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": "two"}]})
