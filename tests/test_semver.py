"""The strict SemVer 2.0 parser (core/semver.py) and the ``semver`` keep rule
(plugins/semver.py): examples, then properties over random version lists."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import regprune.hookspecs
from regprune.models import Protector
from regprune.plugins import semver as semver_rule
from regprune.semver import Version, parse_tag, parse_version

from .plugin_units import CONTEXT, error_of, make_image

# --- the parser --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "core", "prerelease", "build"),
    [
        ("1.2.3", "1.2.3", (), ()),
        ("v1.2.3", "1.2.3", (), ()),
        ("0.0.0", "0.0.0", (), ()),
        ("1.2.3-rc.1", "1.2.3", ("rc", "1"), ()),
        ("v1.2.0-rc.1", "1.2.0", ("rc", "1"), ()),
        ("1.0.0-alpha-a.b-c-somethinglong", "1.0.0", ("alpha-a", "b-c-somethinglong"), ()),
        ("1.0.0-0A.is.legal", "1.0.0", ("0A", "is", "legal"), ()),
        ("1.0.0+build.1", "1.0.0", (), ("build", "1")),
        ("1.0.0-rc.1+build.001", "1.0.0", ("rc", "1"), ("build", "001")),
        ("99999999999999999999.0.0", "99999999999999999999.0.0", (), ()),
    ],
)
def test_parses_strict_semver_with_an_optional_v(
    tag: str, core: str, prerelease: tuple[str, ...], build: tuple[str, ...]
) -> None:
    version = parse_tag(tag)
    assert version is not None
    assert (version.core, version.prerelease, version.build, version.tag) == (
        core,
        prerelease,
        build,
        tag,
    )


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "1.2",
        "1",
        "v1",
        "1.2.3.4",
        "01.2.3",
        "1.02.3",
        "1.2.03",
        "1.2.3-rc.01",
        "1.2.3-",
        "1.2.3+",
        "1.2.3-rc..1",
        "1.2.3-rc_1",
        "1.2.3+b_1",
        "V1.2.3",
        "vv1.2.3",
        " 1.2.3",
        "1.2.3 ",
        "1.2.3-\u0661",  # a non-ASCII digit is no SemVer digit
        "\u0661.2.3",
        "main-1.2.3",
        "sha256-abc.sig",
        "",
    ],
)
def test_everything_else_is_not_a_version(tag: str) -> None:
    assert parse_tag(tag) is None


def test_precedence_is_the_specs_example_and_ignores_build_metadata() -> None:
    # semver.org, item 11, in order; then build metadata and the v prefix change nothing.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.10.0",
        "2.0.0",
        "10.0.0",
    ]
    versions = [parse_version(text) for text in reversed(ordered)]
    assert [v.tag for v in sorted(versions, key=Version.key)] == ordered  # type: ignore[union-attr]
    same = [parse_tag(tag) for tag in ["1.2.3", "v1.2.3", "1.2.3+a", "v1.2.3+b.7"]]
    assert len({v.key() for v in same if v is not None}) == 1


# --- a reference order, written from the spec's words, for the properties -----------------


def spec_compare(a: Version, b: Version) -> int:
    """SemVer 2.0 item 11, step by step: -1, 0 or 1."""
    for x, y in zip((a.major, a.minor, a.patch), (b.major, b.minor, b.patch), strict=True):
        if int(x) != int(y):
            return -1 if int(x) < int(y) else 1
    if not a.prerelease or not b.prerelease:
        return (not a.prerelease) - (not b.prerelease)  # a release outranks a prerelease
    for x, y in zip(a.prerelease, b.prerelease, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1  # numeric identifiers have lower precedence
        return -1 if x < y else 1
    return (len(a.prerelease) > len(b.prerelease)) - (len(a.prerelease) < len(b.prerelease))


numbers = st.integers(min_value=0, max_value=12).map(str) | st.integers(0, 10**25).map(str)
words = st.text("abcxyzAZ-", min_size=1, max_size=4)
identifiers = numbers | words
prereleases = st.lists(identifiers, max_size=3).map(tuple)
builds = st.lists(st.text("ab01-", min_size=1, max_size=3), max_size=2).map(tuple)


@st.composite
def version_tags(draw: st.DrawFn, small: bool = False) -> str:
    """A SemVer tag, sometimes with ``v``, prerelease and build metadata."""
    number = st.integers(0, 3).map(str) if small else numbers
    core = ".".join(draw(number) for _ in range(3))
    pre = draw(
        st.lists(st.sampled_from(["rc", "1", "2", "beta"]), max_size=2) if small else prereleases
    )
    build = draw(builds)
    text = core + (f"-{'.'.join(pre)}" if pre else "") + (f"+{'.'.join(build)}" if build else "")
    return draw(st.sampled_from(["", "v"])) + text


@settings(max_examples=300, deadline=None)
@given(st.lists(version_tags(), min_size=2, max_size=8))
def test_key_order_is_the_specs_order(tags: list[str]) -> None:
    versions = [parse_tag(tag) for tag in tags]
    assert all(versions), tags
    parsed = [v for v in versions if v is not None]
    by_key = sorted(parsed, key=Version.key)
    by_spec = sorted(parsed, key=functools.cmp_to_key(spec_compare))
    assert [v.key() for v in by_key] == [v.key() for v in by_spec]
    for a in parsed:
        for b in parsed:
            assert (a.key() > b.key()) - (a.key() < b.key()) == spec_compare(a, b)


@settings(max_examples=200, deadline=None)
@given(version_tags())
def test_a_version_prints_back_as_its_tag(tag: str) -> None:
    version = parse_tag(tag)
    assert version is not None
    text = version.core
    text += f"-{'.'.join(version.prerelease)}" if version.prerelease else ""
    text += f"+{'.'.join(version.build)}" if version.build else ""
    assert tag.removeprefix("v") == text


# --- the keep rule -----------------------------------------------------------------------


def protect(tags_per_image: Sequence[Sequence[str]], **options: Any) -> dict[str, str]:
    """The rule's answer for one image per entry, keyed by the image's first tag."""
    images = [make_image(f"img{i}", tags) for i, tags in enumerate(tags_per_image)]
    rule = semver_rule.SemverProtector.from_options(options)
    answer = rule.protect(images, CONTEXT)
    return {image.tags[0]: answer[image.digest] for image in images if image.digest in answer}


def test_module_registers_the_semver_keep_rule() -> None:
    manager = pluggy.PluginManager("regprune")
    manager.add_hookspecs(regprune.hookspecs)
    manager.register(semver_rule)
    registered: dict[str, Any] = {}
    manager.hook.register_protectors(register=registered.__setitem__)
    assert set(registered) == {"semver"}
    assert isinstance(registered["semver"]({"keep": 1}), Protector)


def test_keeps_the_newest_releases_of_each_major() -> None:
    tags = [["v1.0.0"], ["v1.4.1"], ["v1.4.2"], ["1.5.0"], ["v2.0.0"], ["latest"], ["0.9.0"]]
    assert protect(tags, keep=3) == {
        "1.5.0": "semver: tag '1.5.0' is release #1 of 1.x, within keep=3",
        "v1.4.2": "semver: tag 'v1.4.2' is release #2 of 1.x, within keep=3",
        "v1.4.1": "semver: tag 'v1.4.1' is release #3 of 1.x, within keep=3",
        "v2.0.0": "semver: tag 'v2.0.0' is release #1 of 2.x, within keep=3",
        "0.9.0": "semver: tag '0.9.0' is release #1 of 0.x, within keep=3",
    }


def test_per_minor_ranks_each_major_minor_line() -> None:
    tags = [["1.4.0"], ["1.4.1"], ["1.4.2"], ["1.5.0"], ["1.5.1"]]
    assert protect(tags, keep=2, per="minor") == {
        "1.4.2": "semver: tag '1.4.2' is release #1 of 1.4.x, within keep=2",
        "1.4.1": "semver: tag '1.4.1' is release #2 of 1.4.x, within keep=2",
        "1.5.1": "semver: tag '1.5.1' is release #1 of 1.5.x, within keep=2",
        "1.5.0": "semver: tag '1.5.0' is release #2 of 1.5.x, within keep=2",
    }


def test_one_version_counts_once_whatever_its_spelling_or_build() -> None:
    # v1.2.0 and 1.2.0 (two images) and 1.1.0+b1 / 1.1.0+b2 are one version each: with
    # keep=2 both spellings of 1.2.0 and both builds of 1.1.0 stay, and 1.0.0 does not.
    tags = [["v1.2.0"], ["1.2.0"], ["1.1.0+b1"], ["1.1.0+b2"], ["1.0.0"]]
    kept = protect(tags, keep=2)
    assert set(kept) == {"v1.2.0", "1.2.0", "1.1.0+b1", "1.1.0+b2"}
    assert kept["1.2.0"] == "semver: tag '1.2.0' is release #1 of 1.x, within keep=2"
    assert kept["1.1.0+b2"] == "semver: tag '1.1.0+b2' is release #2 of 1.x, within keep=2"


def test_an_image_is_kept_by_its_best_ranked_version() -> None:
    kept = protect([["1.0.0", "v1.3.0", "stable"], ["1.2.0"], ["1.1.0"]], keep=1)
    assert kept == {"1.0.0": "semver: tag 'v1.3.0' is release #1 of 1.x, within keep=1"}


def test_prereleases_kept_only_while_newer_than_every_release_of_their_line() -> None:
    tags = [["1.1.0"], ["1.2.0-rc.1"], ["v1.2.0-rc.2"], ["1.1.0-rc.1"], ["2.0.0-beta"]]
    assert protect(tags, keep=5) == {
        "1.1.0": "semver: tag '1.1.0' is release #1 of 1.x, within keep=5",
        "1.2.0-rc.1": "semver: tag '1.2.0-rc.1' is a prerelease newer than every 1.x release",
        "v1.2.0-rc.2": "semver: tag 'v1.2.0-rc.2' is a prerelease newer than every 1.x release",
        "2.0.0-beta": "semver: tag '2.0.0-beta' is a prerelease of 2.x, which has no release yet",
    }
    # Prereleases never take a place: with keep=1, 1.1.0 is still release #1.
    assert "1.1.0" in protect(tags, keep=1)
    assert protect(tags, keep=5, prereleases="ignore") == {
        "1.1.0": "semver: tag '1.1.0' is release #1 of 1.x, within keep=5"
    }


def test_a_release_outranks_its_own_prereleases() -> None:
    assert set(protect([["1.2.0-rc.1"], ["1.2.0"], ["1.2.0-rc.2+b"]], keep=3)) == {"1.2.0"}


def test_non_semver_tags_and_untagged_images_are_never_judged() -> None:
    images = [make_image("a", ["latest"]), make_image("b"), make_image("c", ["1.2", "v1"])]
    rule = semver_rule.SemverProtector.from_options({"keep": 100})
    assert rule.protect(images, CONTEXT) == {}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "keep: required option missing"),
        ({"keep": 0}, "keep: input should be greater than or equal to 1, got 0"),
        ({"keep": "3"}, 'keep: expected a whole number without quotes (e.g. 8), not "3"'),
        ({"keep": True}, "keep: expected a whole number without quotes (e.g. 8), not true"),
        ({"keep": 1, "per": "patch"}, "per: input should be 'major' or 'minor', got 'patch'"),
        (
            {"keep": 1, "prereleases": "keep"},
            "prereleases: input should be 'keep_newer' or 'ignore', got 'keep'",
        ),
        (
            {"keep": 1, "keep_per_major": 2},
            "unknown option 'keep_per_major' (valid options: keep, per, prereleases)",
        ),
    ],
)
def test_option_errors_are_one_line(options: dict[str, Any], expected: str) -> None:
    message = error_of(semver_rule.SemverProtector.from_options, options)
    assert message == expected


# --- properties: the kept set is exactly the top N per line --------------------------------

junk = st.sampled_from(["latest", "main", "1.2", "v1", "01.0.0", "1.0.0-rc.01", "stable", "x1.0.0"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(version_tags(small=True) | junk, max_size=3), min_size=1, max_size=12),
    st.integers(1, 4),
    st.sampled_from(["major", "minor"]),
    st.sampled_from(["keep_newer", "ignore"]),
)
def test_kept_set_is_exactly_the_top_n_per_line(
    tags_per_image: list[list[str]], keep: int, per: str, prereleases: str
) -> None:
    images = [make_image(f"img{i}", tags) for i, tags in enumerate(tags_per_image)]
    rule = semver_rule.SemverProtector.from_options(
        {"keep": keep, "per": per, "prereleases": prereleases}
    )
    kept = rule.protect(images, CONTEXT)

    # The model, independent of the rule's code: versions by the spec's comparison.
    spec_key = functools.cmp_to_key(spec_compare)
    versions = {
        image.digest: [v for v in map(parse_tag, image.tags) if v is not None] for image in images
    }
    every = [v for found in versions.values() for v in found]

    def line(v: Version) -> tuple[int, ...]:
        return (int(v.major),) if per == "major" else (int(v.major), int(v.minor))

    top: set[tuple[object, ...]] = set()
    newest: dict[tuple[int, ...], Version] = {}
    for each_line in {line(v) for v in every}:
        releases = [v for v in every if line(v) == each_line and not v.is_prerelease]
        distinct: list[Version] = []
        for v in sorted(releases, key=spec_key, reverse=True):
            if not distinct or spec_compare(distinct[-1], v) != 0:
                distinct.append(v)
        top.update(v.key() for v in distinct[:keep])
        if distinct:
            newest[each_line] = distinct[0]

    def wanted(v: Version) -> bool:
        if not v.is_prerelease:
            return v.key() in top
        if prereleases == "ignore":
            return False
        return line(v) not in newest or spec_compare(v, newest[line(v)]) > 0

    expected = {d for d, found in versions.items() if any(wanted(v) for v in found)}
    assert set(kept) == expected
    for digest in kept:
        assert versions[digest], "an image without a SemVer tag was kept"
        assert kept[digest].startswith("semver: tag '")
