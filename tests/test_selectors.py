"""The built-in selectors: age, count and branch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest

import regprune.hookspecs
from regprune import options as options_module  # where run_command reads its timeout
from regprune.models import Image, Selector
from regprune.plugin_manager import DEFAULT_PLUGINS, build_catalog, get_plugin_manager
from regprune.plugins import age, branch, count, in_use, keep_tags, time_sources, untagged, unused

from .plugin_units import CONTEXT, NOW, error_of, make_image

SHA = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a"


def selected(verdicts: Any, *images: Image) -> list[bool]:
    return [verdicts[image.digest][0] for image in images]


# --- registration -------------------------------------------------------------------


def _manager(*modules: ModuleType) -> pluggy.PluginManager:
    manager = pluggy.PluginManager("regprune")
    manager.add_hookspecs(regprune.hookspecs)
    for module in modules:
        manager.register(module)
    manager.check_pending()
    return manager


def test_modules_register_through_build_catalog() -> None:
    catalog = build_catalog(
        _manager(age, count, branch, untagged, unused, keep_tags, in_use, time_sources)
    )
    assert set(catalog.selectors) == {"age", "count", "branch", "untagged", "unused"}
    assert set(catalog.protectors) == {"tags", "in_use"}
    assert set(catalog.time_sources) == {
        "created",
        "label",
        "first_seen",
        "pushed",
        "tagged",
        "pushed_event",
    }
    assert catalog.selectors["age"]({"older_than": "1d"}).select([], CONTEXT) == {}


def test_real_plugin_manager_loads_these_built_ins() -> None:
    mine = {
        f"regprune.plugins.{m}"
        for m in ("age", "count", "branch", "untagged", "unused", "keep_tags", "in_use")
    }
    assert mine | {"regprune.plugins.time_sources"} <= set(DEFAULT_PLUGINS)
    catalog = build_catalog(get_plugin_manager(load_entrypoints=False))
    assert {"age", "count", "branch", "untagged", "unused"} <= set(catalog.selectors)
    assert {"tags", "in_use"} <= set(catalog.protectors)
    assert {"created", "label", "first_seen"} <= set(catalog.time_sources)


def test_factories_build_selectors_that_follow_the_protocol() -> None:
    assert isinstance(age.AgeSelector.from_options({"older_than": "1d"}), Selector)
    assert isinstance(count.CountSelector.from_options({"keep": 1}), Selector)
    assert isinstance(branch.BranchSelector.from_options({"branches": ["main"]}), Selector)


# --- age -------------------------------------------------------------------------------


def test_age_selects_images_older_than_the_duration() -> None:
    old, young = make_image("old", ["a"], days=21), make_image("young", ["b"], days=3)
    verdicts = age.AgeSelector.from_options({"older_than": "14d"}).select([old, young], CONTEXT)
    assert verdicts[old.digest] == (True, "age: built 21d ago (created), older than 14d")
    assert verdicts[young.digest] == (False, "age: built 3d ago (created), not older than 14d")


def test_age_boundary_is_strictly_older() -> None:
    exact = make_image("exact", days=14)
    just_over = make_image("over", time=NOW - timedelta(days=14, seconds=1))
    verdicts = age.AgeSelector.from_options({"older_than": "2w"}).select(
        [exact, just_over], CONTEXT
    )
    assert selected(verdicts, exact, just_over) == [False, True]


def test_age_never_selects_an_image_without_trustworthy_time() -> None:
    untimed = make_image("epoch", ["v1"], note="created is 1970-01-01T00:00:00Z (the Unix epoch)")
    verdicts = age.AgeSelector.from_options({"older_than": "0s"}).select([untimed], CONTEXT)
    chosen, reason = verdicts[untimed.digest]
    assert chosen is False
    assert reason == (
        "age: no trustworthy build time (created is 1970-01-01T00:00:00Z (the Unix epoch)); "
        "never selected by age"
    )


def test_age_untimed_without_note_and_with_a_pre_phrased_note() -> None:
    bare = make_image("bare")
    phrased = make_image("phrased", note="no trustworthy build time (created: missing)")
    verdicts = age.AgeSelector.from_options({"older_than": "1d"}).select([bare, phrased], CONTEXT)
    assert verdicts[bare.digest] == (False, "age: no trustworthy build time; never selected by age")
    assert verdicts[phrased.digest][1].count("no trustworthy build time") == 1


def test_age_tolerates_naive_times_and_slight_future() -> None:
    naive = make_image("naive", time=(NOW - timedelta(days=30)).replace(tzinfo=None))
    future = make_image("future", time=NOW + timedelta(minutes=2))
    verdicts = age.AgeSelector.from_options({"older_than": "14d"}).select([naive, future], CONTEXT)
    assert selected(verdicts, naive, future) == [True, False]
    assert "built 0s ago" in verdicts[future.digest][1]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "older_than: required option missing"),
        ({"older_than": "14x"}, "older_than: invalid duration '14x'"),
        ({"older_than": 14}, 'older_than: expected a string in quotes (e.g. "2h"), not 14'),
        ({"older_than": "1d", "keep": 3}, "unknown option 'keep' (valid options: older_than)"),
    ],
)
def test_age_option_errors(options: dict[str, Any], expected: str) -> None:
    assert error_of(age.AgeSelector.from_options, options).startswith(expected)


# --- count -----------------------------------------------------------------------------


def test_count_keeps_the_newest_and_selects_the_rest() -> None:
    images = [make_image(f"i{n}", [f"t{n}"], days=n) for n in range(1, 6)]
    verdicts = count.CountSelector.from_options({"keep": 2}).select(images, CONTEXT)
    assert selected(verdicts, *images) == [False, False, True, True, True]
    assert verdicts[images[0].digest][1] == "count: #1 newest of 5 in repository, within keep=2"
    assert verdicts[images[4].digest][1] == "count: #5 newest of 5 in repository, beyond keep=2"


def test_count_orders_by_time_not_by_tag_or_input_order() -> None:
    # Tag names sort the other way round on purpose.
    newer, older = make_image("newer", ["v1"], days=1), make_image("older", ["v9"], days=9)
    verdicts = count.CountSelector.from_options({"keep": 1}).select([older, newer], CONTEXT)
    assert selected(verdicts, newer, older) == [False, True]


def test_count_keep_zero_selects_every_timed_image() -> None:
    images = [make_image("a", days=1), make_image("b", days=2)]
    verdicts = count.CountSelector.from_options({"keep": 0}).select(images, CONTEXT)
    assert selected(verdicts, *images) == [True, True]


def test_count_never_selects_untimed_images_and_ranks_them_newest() -> None:
    untimed = [make_image(f"u{n}", note="created: none") for n in range(3)]
    timed = make_image("timed", days=1)
    verdicts = count.CountSelector.from_options({"keep": 1}).select([timed, *untimed], CONTEXT)
    # Untimed images take the keep slots, so even the newest timed one is selected ...
    assert verdicts[timed.digest] == (True, "count: #4 newest of 4 in repository, beyond keep=1")
    # ... and none of them is, even beyond keep.
    assert selected(verdicts, *untimed) == [False, False, False]
    reasons = [verdicts[image.digest][1] for image in untimed]
    assert any("within keep=1" in r and "counted as newest" in r for r in reasons)
    assert sum("never selected by count" in r for r in reasons) == 2


def test_count_breaks_ties_by_digest() -> None:
    same = NOW - timedelta(days=3)
    images = [make_image(seed, time=same) for seed in ("x", "y", "z")]
    first = sorted(images, key=lambda image: image.digest)[0]
    for order in (images, images[::-1]):
        verdicts = count.CountSelector.from_options({"keep": 1}).select(order, CONTEXT)
        assert [d for d, (chosen, _) in verdicts.items() if not chosen] == [first.digest]


def test_count_counts_only_the_images_it_is_given() -> None:
    images = [make_image(f"i{n}", days=n) for n in range(1, 5)]
    selector = count.CountSelector.from_options({"keep": 2})
    verdicts = selector.select(images[2:], CONTEXT)  # the two oldest only
    assert selected(verdicts, *images[2:]) == [False, False]
    assert set(verdicts) == {image.digest for image in images[2:]}


def test_count_group_by_named_group_and_no_group() -> None:
    a1 = make_image("a1", ["feature-a-1111111"], days=1)
    a2 = make_image("a2", ["feature-a-2222222"], days=2)
    b1 = make_image("b1", ["feature-b-3333333", "zzz"], days=3)
    b2 = make_image("b2", ["feature-b-4444444"], days=4)
    loose1 = make_image("l1", ["latest"], days=5)
    loose2 = make_image("l2", [], days=6)
    selector = count.CountSelector.from_options(
        {"keep": 1, "group_by": r"^(?P<group>.+)-[0-9a-f]{7}$"}
    )
    verdicts = selector.select([a1, a2, b1, b2, loose1, loose2], CONTEXT)
    assert selected(verdicts, a1, a2, b1, b2, loose1, loose2) == [
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    assert verdicts[a2.digest][1] == "count: #2 newest of 2 in group 'feature-a', beyond keep=1"
    assert verdicts[loose2.digest][1] == "count: #2 newest of 2 in (no group), beyond keep=1"


def test_count_group_by_uses_first_sorted_matching_tag() -> None:
    # Tags sorted: "a-1" (group "a") comes before "b-1" (group "b").
    two = make_image("two", ["b-1", "a-1"], days=1)
    solo_b = make_image("solo", ["b-2"], days=2)
    selector = count.CountSelector.from_options({"keep": 1, "group_by": r"^(\w)-\d$"})
    verdicts = selector.select([two, solo_b], CONTEXT)
    assert "in group 'a'" in verdicts[two.digest][1]
    assert verdicts[solo_b.digest] == (False, "count: #1 newest of 1 in group 'b', within keep=1")


def test_count_group_by_accepts_a_branch_group() -> None:
    images = [make_image(f"m{n}", [f"main-{n}"], days=n) for n in range(1, 4)]
    selector = count.CountSelector.from_options({"keep": 2, "group_by": r"^(?P<branch>[a-z]+)-"})
    verdicts = selector.select(images, CONTEXT)
    assert selected(verdicts, *images) == [False, False, True]
    assert "in group 'main'" in verdicts[images[2].digest][1]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "keep: required option missing"),
        ({"keep": -1}, "keep: input should be greater than or equal to 0"),
        ({"keep": "5"}, 'keep: expected a whole number without quotes (e.g. 8), not "5"'),
        ({"keep": True}, "keep: expected a whole number without quotes (e.g. 8), not true"),
        ({"keep": 1, "group_by": "("}, "group_by: invalid regular expression '('"),
        ({"keep": 1, "group_by": "^main"}, "group_by: regular expression '^main' has no group"),
        ({"keep": 1, "gruop_by": "x"}, "unknown option 'gruop_by' (valid options: keep, group_by)"),
    ],
)
def test_count_option_errors(options: dict[str, Any], expected: str) -> None:
    assert error_of(count.CountSelector.from_options, options).startswith(expected)


# --- branch ----------------------------------------------------------------------------


def tag(name: str, n: int = 1) -> str:
    return f"{name}-{str(n) * 7}"


def test_branch_selects_images_of_deleted_branches() -> None:
    live = make_image("live", [tag("main")], days=1)
    gone = make_image("gone", [tag("feature-x")], days=1)
    plain = make_image("plain", ["latest"], days=1)
    selector = branch.BranchSelector.from_options({"branches": ["main"]})
    verdicts = selector.select([live, gone, plain], CONTEXT)
    assert verdicts[live.digest] == (False, "branch: branch 'main' is live")
    assert verdicts[gone.digest] == (True, "branch: branch 'feature-x' no longer exists")
    chosen, reason = verdicts[plain.digest]
    assert chosen is False and reason.startswith("branch: no tag matches")


def test_branch_image_with_any_live_branch_tag_is_not_selected() -> None:
    mixed = make_image("mixed", [tag("old"), tag("main", 2)], days=1)
    both_gone = make_image("gone", [tag("old"), tag("older", 2)], days=1)
    selector = branch.BranchSelector.from_options({"branches": ["main"]})
    verdicts = selector.select([mixed, both_gone], CONTEXT)
    assert selected(verdicts, mixed, both_gone) == [False, True]
    assert verdicts[both_gone.digest][1] == "branch: branches 'old', 'older' no longer exist"


def test_branch_selects_untimed_images_of_deleted_branches() -> None:
    # Branch deletion is about the branch, not the image's age.
    untimed = make_image("untimed", [tag("gone")])
    verdicts = branch.BranchSelector.from_options({"branches": ["main"]}).select([untimed], CONTEXT)
    assert selected(verdicts, untimed) == [True]


def test_branch_normalizes_names_like_ci_does() -> None:
    image = make_image("fx", ["feature-x-abc1234"], days=1)
    upper = make_image("up", ["Release-1.2-abc1234"], days=1)
    selector = branch.BranchSelector.from_options({"branches": ["feature/x", "release/1.2"]})
    verdicts = selector.select([image, upper], CONTEXT)
    assert selected(verdicts, image, upper) == [False, False]
    assert verdicts[image.digest][1] == "branch: branch 'feature-x' is live"


def test_branch_without_normalize_compares_exactly() -> None:
    image = make_image("fx", ["feature-x-abc1234"], days=1)
    selector = branch.BranchSelector.from_options({"branches": ["feature/x"], "normalize": False})
    assert selected(selector.select([image], CONTEXT), image) == [True]
    exact = branch.BranchSelector.from_options({"branches": ["feature-x"], "normalize": False})
    assert selected(exact.select([image], CONTEXT), image) == [False]


def test_branch_custom_pattern() -> None:
    image = make_image("pr", ["pr-42.build-7"], days=1)
    other = make_image("pr2", ["pr-43.build-1"], days=1)
    selector = branch.BranchSelector.from_options(
        {"branches": ["pr-43"], "pattern": r"^(?P<branch>pr-\d+)\.build-\d+$"}
    )
    verdicts = selector.select([image, other], CONTEXT)
    assert selected(verdicts, image, other) == [True, False]


def test_branch_keep_per_branch_ranks_like_count() -> None:
    mains = [make_image(f"m{n}", [tag("main", n)], days=n) for n in range(1, 5)]
    untimed = make_image("mu", [tag("main", 9)], note="created: none")
    dev = make_image("d1", [tag("dev")], days=10)
    selector = branch.BranchSelector.from_options(
        {"branches": ["main", "dev"], "keep_per_branch": 2}
    )
    verdicts = selector.select([*mains, untimed, dev], CONTEXT)
    # untimed ranks newest and takes a slot: main keeps untimed + m1, selects m2..m4.
    assert selected(verdicts, untimed, *mains, dev) == [False, False, True, True, True, False]
    assert verdicts[mains[3].digest][1] == (
        "branch: branch 'main' is live, #5 newest of 5, beyond keep_per_branch=2"
    )
    assert (
        verdicts[dev.digest][1]
        == "branch: branch 'dev' is live, #1 newest of 1, within keep_per_branch=2"
    )


def test_branch_keep_per_branch_never_selects_untimed_images() -> None:
    untimed = [make_image(f"u{n}", [tag("main", n)]) for n in range(1, 4)]
    selector = branch.BranchSelector.from_options({"branches": ["main"], "keep_per_branch": 1})
    verdicts = selector.select(untimed, CONTEXT)
    assert selected(verdicts, *untimed) == [False, False, False]
    assert sum("never selected by keep_per_branch" in v[1] for v in verdicts.values()) == 2


def test_branch_keep_per_branch_keeps_an_image_within_any_of_its_branches() -> None:
    shared = make_image("shared", [tag("a", 1), tag("b", 1)], days=5)
    newer_a = make_image("a2", [tag("a", 2)], days=1)
    selector = branch.BranchSelector.from_options({"branches": ["a", "b"], "keep_per_branch": 1})
    verdicts = selector.select([shared, newer_a], CONTEXT)
    assert verdicts[shared.digest] == (
        False,
        "branch: branch 'b' is live, #1 newest of 1, within keep_per_branch=1",
    )


def test_branch_keep_per_branch_counts_normalized_duplicates_once() -> None:
    one = make_image("one", ["feature-x-1111111", "Feature-X-2222222"], days=1)
    two = make_image("two", ["feature-x-3333333"], days=2)
    selector = branch.BranchSelector.from_options({"branches": ["feature/x"], "keep_per_branch": 1})
    verdicts = selector.select([one, two], CONTEXT)
    assert verdicts[two.digest] == (
        True,
        "branch: branch 'feature-x' is live, #2 newest of 2, beyond keep_per_branch=1",
    )


def test_branches_file_with_comments(tmp_path: Path) -> None:
    listing = tmp_path / "branches.txt"
    listing.write_text(
        "# live branches, one per line\n"
        "main\n"
        "\n"
        "   feature/x   # the big one\n"
        f"{SHA}\trefs/heads/release/1.2\n"
        "refs/heads/hotfix\n"
        "issue#12\n"
    )
    selector = branch.BranchSelector.from_options({"branches_file": str(listing)})
    assert selector.live_branches() == {"main", "feature-x", "release-1.2", "hotfix", "issue-12"}


def test_branches_file_missing_or_only_comments(tmp_path: Path) -> None:
    missing = branch.BranchSelector.from_options({"branches_file": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match=r"^branches_file: cannot read .*nope.*No such file"):
        missing.select([make_image("a", [tag("main")], days=1)], CONTEXT)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing live\n\n")
    selector = branch.BranchSelector.from_options({"branches_file": str(empty)})
    with pytest.raises(ValueError, match=r"^branches_file: the list of live branches is empty"):
        selector.select([], CONTEXT)


def test_branches_file_rejects_unreadable_lines(tmp_path: Path) -> None:
    listing = tmp_path / "branches.txt"
    listing.write_text("main\nthis is not a branch\n")
    selector = branch.BranchSelector.from_options({"branches_file": str(listing)})
    with pytest.raises(
        ValueError, match=r"^branches_file: cannot read line 2 'this is not a branch'"
    ):
        selector.live_branches()


def ls_remote_command(*heads: str, count_file: Path | None = None) -> list[str]:
    """A command printing what ``git ls-remote`` prints, HEAD and a tag included."""
    lines = [
        f"{SHA}\tHEAD",
        *(f"{SHA}\trefs/heads/{head}" for head in heads),
        f"{SHA}\trefs/tags/v1.0",
    ]
    script = "printf '%s\\n' " + " ".join(f"'{line}'" for line in lines)
    if count_file is not None:
        script = f"echo run >> '{count_file}'; {script}"
    return ["sh", "-c", script]


def test_branches_command_reads_ls_remote_output_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    selector = branch.BranchSelector.from_options(
        {"branches_command": ls_remote_command("main", "feature/x", count_file=runs)}
    )
    live = make_image("live", ["feature-x-abc1234"], days=1)
    tagged = make_image("tag", [tag("v1.0")], days=1)  # a git tag is not a branch
    for _ in range(3):
        verdicts = selector.select([live, tagged], CONTEXT)
    assert selected(verdicts, live, tagged) == [False, True]
    assert selector.live_branches() == {"main", "feature-x"}
    assert runs.read_text().count("run") == 1


def test_branches_command_accepts_bare_names() -> None:
    selector = branch.BranchSelector.from_options(
        {"branches_command": ["sh", "-c", "printf 'main\\nfeature/y\\n'"]}
    )
    assert selector.live_branches() == {"main", "feature-y"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["sh", "-c", "echo 'fatal: repository not found' >&2; exit 128"],
            r"^branches_command: `sh -c .*` exited with status 128: fatal: repository not found$",
        ),
        (
            ["/nonexistent/git", "ls-remote"],
            r"^branches_command: command not found: '/nonexistent/git'$",
        ),
        (
            ["true"],
            r"^branches_command: `true` listed no branches; the list of live branches is empty",
        ),
        (ls_remote_command(), r"^branches_command: .* listed no branches"),
    ],
)
def test_branches_command_failures_refuse_to_select(argv: list[str], expected: str) -> None:
    selector = branch.BranchSelector.from_options({"branches_command": argv})
    image = make_image("a", [tag("gone")], days=100)
    for _ in range(2):  # the failure is remembered, not turned into "nothing is live"
        with pytest.raises(ValueError, match=expected):
            selector.select([image], CONTEXT)


def test_branches_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options_module, "COMMAND_TIMEOUT", 0.2)
    selector = branch.BranchSelector.from_options({"branches_command": ["sleep", "5"]})
    with pytest.raises(ValueError, match=r"^branches_command: `sleep 5` timed out after 0.2s$"):
        selector.select([], CONTEXT)


def test_branches_command_default_timeout_is_a_minute() -> None:
    assert options_module.COMMAND_TIMEOUT == 60


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "branches: say where the live branches come from with one of branches, branches_file"),
        ({"branches": []}, "branches: the list of live branches is empty"),
        ({"branches": ["  "]}, "branches: the list of live branches is empty"),
        (
            {"branches": ["main"], "branches_file": "x"},
            "branches, branches_file: give only one of branches, branches_file or branches_command",
        ),
        ({"branches_command": "git ls-remote"}, "branches_command: input should be a valid list"),
        ({"branches_command": []}, "branches_command: must not be empty"),
        ({"branches": "main"}, "branches: input should be a valid list"),
        ({"branches": ["main"], "pattern": "("}, "pattern: invalid regular expression '('"),
        (
            {"branches": ["main"], "pattern": r"^(.+)-\w+$"},
            "pattern: regular expression '^(.+)-\\w+$' has no group named 'branch'",
        ),
        (
            {"branches": ["main"], "keep_per_branch": 0},
            "keep_per_branch: input should be greater than or equal to 1",
        ),
        (
            {"branches": ["main"], "keep_per_branch": "2"},
            'keep_per_branch: expected a whole number without quotes (e.g. 8), not "2"',
        ),
        (
            {"branches": ["main"], "normalize": "yes"},
            'normalize: expected true or false without quotes, not "yes"',
        ),
        (
            {"branches": ["main"], "branch": "x"},
            "unknown option 'branch' (valid options: pattern, branches, branches_file, "
            "branches_command, keep_per_branch, normalize)",
        ),
    ],
)
def test_branch_option_errors(options: dict[str, Any], expected: str) -> None:
    assert error_of(branch.BranchSelector.from_options, options).startswith(expected)


def test_branch_default_pattern_requires_a_sha_suffix() -> None:
    selector = branch.BranchSelector.from_options({"branches": ["main"]})
    assert selector.branches_of(make_image("x", ["main-abc1234", "main-xyz", "v1.0", "main"])) == [
        "main"
    ]
    long_sha = make_image("y", [f"feature-x-{SHA}"])
    assert selector.branches_of(long_sha) == ["feature-x"]
