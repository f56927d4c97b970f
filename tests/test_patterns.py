"""Regular expressions from the config, flags and plugins run in linear time (RE2).

Tags are chosen by whoever can push; a backtracking engine turns ``^(a+)+$`` and a
41-character tag into minutes.  Every pattern goes through ``regprune.patterns``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune.config import parse_settings
from regprune.errors import ConfigError
from regprune.patterns import MAX_PROGRAM_SIZE, Pattern, PatternError, compile_pattern
from regprune.plugin_manager import build_catalog, get_plugin_manager
from regprune.testing import days_ago

EVIL = "^(a+)+$"
EVIL_TAG = "a" * 41 + "-"  # a valid tag; the backtracking engine needs ~2**41 steps
# A hang guard, not a performance assertion: Python's `re` needs minutes here.
GUARD = 30


def _policy(**extra):
    return {
        "registry": {"r": {"url": "http://127.0.0.1:5000"}},
        "policy": {
            "p": {
                "registry": "r",
                "repositories": ["*"],
                "selectors": [{"use": "age", "older_than": "1d"}],
                **extra,
            }
        },
    }


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape sequence"),
        ("(?=v)v", "invalid perl operator"),
        ("(?<!x)y", "invalid perl operator"),
        ("(?P<a>x)(?P=a)", "invalid perl operator"),
        ("(", "missing )"),
        ("(.?){1000}(.?){1000}", "too complex"),
        ("x" * 5000, "too long"),
    ],
)
def test_unsupported_syntax_is_one_line_naming_the_key(pattern, reason):
    with pytest.raises(ConfigError) as caught:
        parse_settings(_policy(keep_tags=["^latest$", pattern]))
    message = caught.value.message
    assert message.startswith("config: policy.p.keep_tags.1: "), message
    assert reason in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a)", "unmatched )"),
        ("a" * 4000 + ")", "unmatched )"),
        ("(" * 4000, "missing )"),
        ("x[" + "a" * 4000, "missing ]"),
        ("[z-" + "a" * 3000 + "]", "invalid character class range"),
    ],
    ids=["short", "long-unmatched", "long-missing", "long-class", "long-range"],
)
def test_re2_errors_are_short_and_never_say_unexpected(pattern, reason):
    """RE2 says "unexpected )" and repeats the pattern after its reason: regprune says
    "unmatched )", quotes the pattern once, capped, so the line stays short."""
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    message = str(caught.value)
    assert reason in message and "unexpected" not in message, message
    assert len(message) < 250, message
    assert message.count("a" * 50) <= 1, message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="a()[]{}\\?*+|^$-,:1P<=!", max_size=40), st.integers(0, 3000))
def test_any_re2_error_is_one_short_line(pattern, padding):
    try:
        compile_pattern("b" * padding + pattern)
    except PatternError as exc:
        message = str(exc)
        assert "\n" not in message and "unexpected" not in message, message
        assert len(message) < 250, message


def test_tags_filter_and_plugin_options_use_the_same_engine():
    with pytest.raises(ConfigError, match=r"policy\.p\.tags: invalid regular expression"):
        parse_settings(_policy(tags="(?=x)"))
    catalog = build_catalog(get_plugin_manager(load_entrypoints=False))
    for kind, name, options in [
        ("selector", "count", {"keep": 1, "group_by": "(?P<group>a)(?=b)"}),
        ("selector", "branch", {"pattern": "(?P<branch>a)\\1", "branches": ["main"]}),
        ("protector", "tags", {"patterns": ["(?!x)"]}),
    ]:
        with pytest.raises(ConfigError, match="invalid regular expression"):
            catalog.build(kind, name, options, "where")


def test_compiled_patterns_are_re2():
    catalog = build_catalog(get_plugin_manager(load_entrypoints=False))
    keep = catalog.build("protector", "tags", {"patterns": [EVIL]}, "w")
    count = catalog.build("selector", "count", {"keep": 1, "group_by": "^(?P<group>a+)+$"}, "w")
    branch = catalog.build(
        "selector", "branch", {"pattern": "^(?P<branch>(a+)+)$", "branches": ["x"]}, "w"
    )
    assert all(isinstance(p, Pattern) for p in keep.patterns)
    assert isinstance(count.group_by, Pattern)
    assert isinstance(branch.pattern, Pattern)
    started = time.monotonic()
    assert keep.patterns[0].search(EVIL_TAG) is None
    assert count.group_by.search(EVIL_TAG) is None
    assert branch.pattern.search(EVIL_TAG) is None
    assert time.monotonic() - started < GUARD


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.text(max_size=60), texts=st.lists(st.text(max_size=200), max_size=5))
def test_any_pattern_compiles_or_is_a_pattern_error_and_any_text_matches(pattern, texts):
    try:
        compiled = compile_pattern(pattern)
    except PatternError as exc:
        assert "\n" not in str(exc)
        return
    for text in texts:
        match = compiled.search(text)
        assert match is None or isinstance(match.group(0), str)


_ATOMS = st.sampled_from(["a", ".", "\\w", "[a-z]", "(a|aa)", "(a*)", "\\d", "a?", "(?:a+)"])
_QUANT = st.sampled_from(["", "*", "+", "?", "{2,5}", "{0,40}", "+?"])


@st.composite
def nested(draw, depth=3):
    """Nested quantified groups: the shapes that make backtracking engines explode."""
    parts = [draw(_ATOMS) + draw(_QUANT) for _ in range(draw(st.integers(1, 4)))]
    body = "".join(parts)
    for _ in range(draw(st.integers(0, depth))):
        body = f"({body}){draw(_QUANT)}"
    return draw(st.sampled_from(["^", ""])) + body + draw(st.sampled_from(["$", "", "!"]))


@settings(max_examples=300, deadline=None)
@given(pattern=nested(), tag=st.text(alphabet="a-!_.", min_size=0, max_size=128))
def test_pathological_shapes_match_any_tag_fast(pattern, tag):
    try:
        compiled = compile_pattern(pattern)
    except PatternError:
        return
    started = time.monotonic()
    compiled.search(tag)
    compiled.search("a" * 128)
    assert time.monotonic() - started < GUARD


def test_text_that_is_not_utf8_still_matches_or_not():
    # argv and file names may carry lone surrogates (undecodable bytes).
    assert compile_pattern("^x").search("\udcffx") is None
    assert compile_pattern("x$").search("\udcffx") is not None
    with pytest.raises(PatternError, match="not valid UTF-8"):
        compile_pattern("\udcff")


def test_program_size_bound_is_generous_for_real_patterns():
    for pattern in [
        r"^(?P<branch>.+)-(?P<sha>[0-9a-f]{7,40})$",
        r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$",
        r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$",
    ]:
        assert compile_pattern(pattern)  # well inside MAX_PROGRAM_SIZE
    assert MAX_PROGRAM_SIZE >= 10 * 200


# -- through the real command line, against a real registry ------------------------------


@pytest.mark.parametrize("where", ["config", "flags"])
def test_exponential_pattern_plan_finishes(registry_server, pusher, tmp_path, where):
    pusher.push_image("ci/app", [EVIL_TAG], created=days_ago(30))
    pusher.push_image("ci/app", ["aaaa"], created=days_ago(30))
    state = tmp_path / "state.db"
    if where == "config":
        config = tmp_path / "regprune.toml"
        config.write_text(
            f'[registry.local]\nurl = "{registry_server.url}"\n\n[policy.ci]\nregistry = "local"\n'
            f'repositories = ["ci/*"]\nkeep_tags = ["{EVIL}"]\ntags = "{EVIL}|-$"\n'
            'selectors = [{ use = "age", older_than = "14d" }]\n'
        )
        argv = ["--config", str(config), "--state", str(state), "plan", "--json"]
    else:
        argv = [
            "--state",
            str(state),
            "plan",
            "--json",
            "--registry",
            registry_server.url,
            "--repo",
            "ci/*",
            "--older-than",
            "14d",
            "--keep-tag",
            EVIL,
            "--tags",
            f"{EVIL}|-$",
        ]
    done = subprocess.run(
        [sys.executable, "-m", "regprune", *argv],
        capture_output=True,
        text=True,
        timeout=GUARD,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REGPRUNE_LOAD_PLUGINS": ""},
        cwd=Path(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert EVIL_TAG in done.stdout  # planned for deletion: the tag filter and keep rule ran
    assert '"aaaa"' in done.stdout
