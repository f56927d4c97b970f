"""Every value from the config, flags, environment and state DB is validated.

Whatever a person types or a file holds, regprune answers with a result or exactly
one ``error:`` line (exit 2 for bad input, nothing changed), never "unexpected X (a
bug in regprune)".  Property-based tests feed wild values through the real loader
and the real command line (``regprune.cli.run``).
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune.config import expand_env, parse_settings
from regprune.errors import ConfigError
from regprune.state import State
from regprune.testing import run_cli

pytestmark = pytest.mark.usefixtures("isolated_cli")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOSED = f"http://127.0.0.1:{closed_port()}"


def one_error_line(code: int, err: str, *expected: str, exit_code: int = 2) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    assert "unexpected" not in lines[0] and "Traceback" not in err, lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert code == exit_code, f"exit {code}: {lines[0]}"
    return lines[0]


def error_lines(code: int, err: str, *, exit_code: int = 2) -> list[str]:
    """One or more ``error:`` lines: a config with several problems has one line each."""
    lines = err.splitlines()
    assert lines, "expected an error on stderr"
    assert all(line.startswith("error: ") for line in lines), err
    assert "unexpected" not in err and "Traceback" not in err, err
    assert code == exit_code, f"exit {code}: {err}"
    return lines


BASE = {
    "registry": {"local": {"url": CLOSED}},
    "policy": {
        "ci": {
            "registry": "local",
            "repositories": ["ci/*"],
            "selectors": [{"use": "age", "older_than": "14d"}],
        }
    },
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with one key (dotted path) set to ``value``."""
    import copy

    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {}) if not part.isdigit() else node[int(part)]
    node[int(last) if last.isdigit() else last] = value
    return data


# -- the examples of the review, through the real CLI ---------------------------------------

CASES = [
    ("registry.local.timeout", math.inf, "registry.local.timeout"),
    ("registry.local.timeout", math.nan, "registry.local.timeout"),
    ("registry.local.timeout", -1, "registry.local.timeout"),
    ("registry.local.timeout", 1e300, "registry.local.timeout"),
    ("policy.ci.selectors.0.older_than", "1000000000w", "too long"),
    ("state.plan_retention", "999999999d", "state.plan_retention"),
    ("state.plan_retention", "9" * 5000 + "d", "state.plan_retention"),
    ("registry.local.url", "http://[::1", "registry.local.url"),
    ("registry.local.url", "http://127.0.0.1:99999", "registry.local.url"),
    ("registry.local.url", "http://127.0.0.1:0", "registry.local.url"),
    ("policy.ci.keep_tags", ["a)"], "'a)': unmatched )"),
    ("policy.ci.keep_tags", ["a" * 4000 + ")"], "unmatched )"),
    ("registry.local.storage", "/" + "a" * 300, "registry.local.storage = '/aaa"),
    ("policy.ci.schedule", "61 * * * *", "policy.ci.schedule"),
    ("policy.ci.schedule", "every day", "policy.ci.schedule"),
    # Quartz puts seconds first, croniter last: six fields would mean two schedules.
    ("policy.ci.schedule", "0 0 6 * * 1", "use five fields"),
    ("policy.ci.selectors.0.older_than", "\uff11\uff14d", "invalid duration"),  # full-width
    ("policy.ci.time_source", ["created", "created"], "'created' is named twice"),
    (
        "policy.ci.protectors",
        [{"use": "in_use", "file": "x", "registry_hosts": ["http://r.example"]}],
        "is not a host[:port]",
    ),
    ("slack", {"api_url": "x"}, "slack.api_url"),
    ("slack", {"approvals_required": "2"}, "slack.approvals_required: expected a whole number"),
    ("listen", {"port": "5002"}, "listen.port: expected a whole number"),
    ("listen", {"token": " secret "}, "listen.token: has spaces at its start or end"),
    (
        "notify.hook",
        {"use": "webhook", "url": "http://h/x", "headers": {"Bad Header": "v"}},
        "not an HTTP field name",
    ),
    (
        "notify.hook",
        {"use": "webhook", "url": "http://h/x", "headers": {"X-A": "caf\u00e9"}},
        "printable ASCII",
    ),
    (
        "notify.mail",
        {
            "use": "email",
            "to": ["a@example.org"],
            "host": "localhost",
            "subject_prefix": "[x]\r\nBcc: b@example.org",
        },
        "one line",
    ),
    ("registry.local.ca_file", "a\x00b", "NUL"),
    ("registry.local.gc.timeout", "0s", "registry.local.gc.timeout"),
    ("slack", {"plan_ttl": "0s"}, "slack.plan_ttl"),
    ("slack", {"approvals_required": 10**30}, "slack.approvals_required"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), CASES, ids=[c[0] + "=" + repr(c[1])[:20] for c in CASES]
)
def test_bad_config_values_are_one_error_line(tmp_path, capsys, path, value, expected):
    config = tmp_path / "regprune.toml"
    data = with_(path, value)
    config.write_text(tomli_w.dumps(data) if not isinstance(value, float) else _float_toml(data))
    state = tmp_path / "state.db"
    code, _, err = run_cli(capsys, "--config", str(config), "--state", str(state), "plan")
    one_error_line(code, err, expected)
    assert not state.exists() or not State(state).plans.find()


def _float_toml(data: dict[str, Any]) -> str:
    # tomli-w writes inf/nan as TOML's inf/nan, which is what the review typed.
    return tomli_w.dumps(data)


def test_gc_storage_path_too_long_is_refused_before_any_command(tmp_path, capsys):
    marker = tmp_path / "ran"
    config = tmp_path / "regprune.toml"
    gc = {"command": ["touch", str(marker)], "storage_path": "/" + "a" * 300}
    config.write_text(tomli_w.dumps(with_("registry.local.gc", gc)))
    code, _, err = run_cli(capsys, "--config", str(config), "--state", str(tmp_path / "s.db"), "gc")
    one_error_line(code, err, "registry.local.gc.storage_path: the name is too long")
    assert not marker.exists()


def test_config_that_is_not_utf8(tmp_path, capsys):
    config = tmp_path / "regprune.toml"
    config.write_bytes(b'[registry.local]\nurl = "http://h\xff\xfe"\n')
    code, _, err = run_cli(capsys, "--config", str(config), "plan")
    one_error_line(code, err, "not UTF-8")


def test_all_problems_are_listed_on_one_line():
    with pytest.raises(ConfigError) as caught:
        parse_settings(with_("registry.local", {"url": "x", "concurrency": 0, "retries": -1}))
    message = caught.value.message
    assert "more problem" not in message
    for key in ("registry.local.url", "registry.local.concurrency", "registry.local.retries"):
        assert key in message
    assert message.count("; ") == 2 and "\n" not in message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["history", "--limit", "99999999999999999999"], "--limit"),
        (["history", "--limit", "0"], "--limit"),
        (["state", "prune", "--older-than", "999999999d"], "--older-than"),
        (["plan", "--registry", CLOSED, "--repo", "x", "--keep", "99999999999999999999"], "--keep"),
        (
            ["plan", "--registry", CLOSED, "--repo", "x", "--older-than", "1000000000w"],
            "--older-than",
        ),
        (["plan", "--registry", "http://[::1", "--repo", "x", "--keep", "1"], "--registry"),
        (
            ["plan", "--registry", CLOSED, "--repo", "x", "--keep", "1", "--keep-tag", "(?=x)"],
            "--keep-tag",
        ),
        (
            ["plan", "--registry", CLOSED, "--repo", "x", "--keep", "1", "--tags", "\udcff"],
            "--tags",
        ),
        (["--state", "a\x00b", "history"], "state DB"),
    ],
)
def test_bad_flag_values_are_one_error_line(tmp_path, capsys, argv, expected):
    if argv[0] != "--state":
        argv = ["--state", str(tmp_path / "state.db"), *argv]
    code, _, err = run_cli(capsys, *argv)
    one_error_line(code, err, expected)


def test_state_file_that_is_not_sqlite(tmp_path, capsys):
    state = tmp_path / "state.db"
    state.write_bytes(b"this is not a database, just text\n" * 100)
    code, _, err = run_cli(capsys, "--state", str(state), "history")
    one_error_line(code, err, "cannot open the state DB")
    assert state.read_bytes().startswith(b"this is not a database")


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_state_db_locked_by_another_process(tmp_path, capsys):
    state = tmp_path / "state.db"
    State(state).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli(
            capsys, "--state", str(state), "state", "prune", "--older-than", "1d"
        )
    finally:
        holder.communicate("", timeout=30)
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("waiting for the state DB") and "up to 10s" in lines[0]
    assert lines[1].startswith("error: the state DB") and "locked by another process" in lines[1]
    assert "unexpected" not in err
    assert code == 1


# -- property-based: any config document --------------------------------------------------------

WILD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["14d", "0s", "1000000000w", "-1d", "http://[::1", "http://u:p@h", "(?=x)", "*", "", "\x00"]
    ),
    st.lists(st.text(max_size=10), max_size=3),
)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


REGISTRY_KEYS = [
    "url",
    "username",
    "password",
    "docker_config",
    "ca_file",
    "concurrency",
    "timeout",
    "retries",
    "version",
    "gc",
    "bogus",
]
POLICY_KEYS = [
    "registry",
    "repositories",
    "exclude",
    "tags",
    "keep_tags",
    "selectors",
    "protectors",
    "approval",
    "gc",
    "time_source",
    "schedule",
]
SLACK_KEYS = [
    "channel",
    "approvers",
    "approver_groups",
    "team_id",
    "approvals_required",
    "allow_self_approval",
    "plan_ttl",
    "api_url",
]
SELECTORS = st.lists(
    st.fixed_dictionaries(
        {"use": st.sampled_from(["age", "count", "branch", "nope", ""])},
        optional={
            "older_than": WILD,
            "keep": WILD,
            "group_by": WILD,
            "pattern": WILD,
            "branches": WILD,
            "keep_per_branch": WILD,
        },
    ),
    max_size=2,
)


def section(keys: list[str], base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(base, optional={key: WILD for key in keys if key not in base})


DOCUMENTS = st.fixed_dictionaries(
    {
        "registry": st.dictionaries(
            st.sampled_from(["local", "other", "a b", ""]),
            section(REGISTRY_KEYS, {"url": st.one_of(st.just(CLOSED), WILD)}),
            max_size=2,
        ),
        "policy": st.dictionaries(
            st.sampled_from(["ci", "rel"]),
            section(
                POLICY_KEYS,
                {
                    "registry": st.sampled_from(["local", "other"]),
                    "repositories": st.just(["ci/*"]),
                    "selectors": SELECTORS,
                },
            ),
            max_size=2,
        ),
    },
    optional={
        "slack": section(SLACK_KEYS, {}),
        "state": section(["plan_retention"], {}),
        "gc": WILD,
    },
).map(_drop_none)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_any_toml_document_is_settings_or_one_config_error(document):
    text = tomli_w.dumps(document)
    import tomllib

    try:
        parsed = parse_settings(tomllib.loads(text), environ={})
    except ConfigError as exc:
        assert "\n" not in exc.message
        return
    assert parsed.registry.keys() <= document["registry"].keys()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(DOCUMENTS)
def test_any_toml_document_through_regprune_plan(tmp_path, capsys, document):
    config = tmp_path / "fuzz.toml"
    config.write_text(tomli_w.dumps(document))
    code, _, err = run_cli(
        capsys, "--config", str(config), "--state", str(tmp_path / "fuzz.db"), "plan"
    )
    # Nothing listens on the registry's port: a valid document ends in "cannot reach";
    # an invalid one gets one line per problem.
    lines = error_lines(code, err)
    assert len(lines) == 1 or all(line.startswith(f"error: {config}: ") for line in lines), err


FLAG_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "-1",
            "0",
            "1e9",
            "99999999999999999999",
            "14d",
            "1000000000w",
            "http://[::1",
            "(a+)+$",
            "(?<=x)",
            CLOSED,
        ]
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    older_than=FLAG_TEXT,
    keep=FLAG_TEXT,
    keep_tag=FLAG_TEXT,
    tags=FLAG_TEXT,
    registry=st.one_of(st.just(CLOSED), FLAG_TEXT),
    limit=FLAG_TEXT,
)
def test_any_flag_values_through_the_cli(
    tmp_path, capsys, older_than, keep, keep_tag, tags, registry, limit
):
    state = str(tmp_path / "flags.db")
    code, _, err = run_cli(
        capsys, "--state", state, "plan", "--registry", registry, "--repo", "ci/*",
        "--older-than", older_than, "--keep", keep, "--keep-tag", keep_tag, "--tags", tags,
    )  # fmt: skip
    one_error_line(code, err)  # bad flag, or the closed port: never a traceback
    code, _, err = run_cli(capsys, "--state", state, "history", "--limit", limit)
    if code != 0:
        one_error_line(code, err, "--limit")
    code, _, err = run_cli(
        capsys, "--state", state, "state", "prune", "--dry-run", "--older-than", older_than
    )
    if code != 0:
        one_error_line(code, err)


# -- repository names: Distribution's grammar, before any request ----------------------

DISTRIBUTION_NAME = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
NAME_TEXT = st.one_of(
    st.text(alphabet="ab0._-/A%*", max_size=12),
    st.text(max_size=6),
    st.integers(250, 260).map(lambda n: "a" * n),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(NAME_TEXT)
def test_any_repository_name_is_valid_or_refused_naming_the_flag(tmp_path, capsys, name):
    """A literal is Distribution's grammar (at most 255 characters) or ``--repo:``, exit
    2; a valid one goes on to the (closed) registry."""
    if any(char in name for char in "*?["):  # a glob: only empty path components are refused
        valid = (
            bool(name) and "//" not in name and not name.startswith("/") and not name.endswith("/")
        )
    else:
        valid = len(name) <= 255 and DISTRIBUTION_NAME.fullmatch(name) is not None
    code, _, err = run_cli(
        capsys, "--state", str(tmp_path / "names.db"),
        "plan", "--registry", CLOSED, "--repo", name, "--keep", "1",
    )  # fmt: skip
    line = one_error_line(code, err)
    if valid:
        assert "cannot reach" in line, line
    else:
        assert line.startswith("error: --repo: "), line
        assert len(line) < 300, line


# -- ${NAME} references: a broken one is an error, never used as written ----------------

VALID_REFERENCE_OR_ESCAPE = re.compile(r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*\}")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="${}A_1 -é", max_size=12))
def test_any_dollar_brace_is_a_reference_or_an_error_naming_the_key(value):
    """Left to right, ``$$`` is ``$`` and ``${NAME}`` the variable; any other ``${`` is
    a ConfigError on one line naming the key, and never reaches the settings."""
    environ = {"A": "<a>", "A_1": "<a1>", "_": "<u>"}
    broken = "${" in VALID_REFERENCE_OR_ESCAPE.sub("", value)
    document = {"registry": {"main": {"url": CLOSED, "password": value}}}
    try:
        expanded = expand_env(document, environ)
    except ConfigError as exc:
        assert broken or "is not set" in exc.message, exc.message
        assert exc.message.startswith("registry.main.password: "), exc.message
        assert "\n" not in exc.message and "unexpected" not in exc.message
        if broken:
            assert "is not a ${NAME} reference" in exc.message and "$$" in exc.message
        return
    assert not broken, expanded
