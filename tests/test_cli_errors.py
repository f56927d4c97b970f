"""Bad input through the real command line: one ``error:`` line, exit code 2, nothing changed.

Each case runs ``regprune.cli.run(argv)`` in-process and checks that stderr is exactly
one line starting with ``error:``, that no traceback escapes, that config errors name
the offending key, that no plan was stored and that the registry still has every tag.
A few cases also run ``python -m regprune`` in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from regprune.state import State
from regprune.testing import ImagePusher, RegistryServer, days_ago, run_cli

CONFIG = """\
[registry.local]
url = "{url}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
keep_tags = ["^latest$"]
selectors = [{{ use = "age", older_than = "14d" }}]
"""


pytestmark = pytest.mark.usefixtures("isolated_cli")


def assert_one_error_line(code: int, err: str, *expected: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert code == 2, f"exit code {code}: {line}"
    return line


def stored_plans(state_path: Path) -> list:
    if not state_path.exists():
        return []
    with State(state_path) as state:
        return state.plans.find()


def assert_unchanged(state_path: Path, pusher: ImagePusher, tags: list[str]) -> None:
    """Refused with nothing changed: no plan stored, every tag of ci/app still there."""
    assert stored_plans(state_path) == []
    assert sorted(pusher.tags("ci/app")) == tags


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def seeded(registry_binary, tmp_path_factory):
    """A registry with old CI images (all deletable by the base config) and their tags.

    Shared by the tests of this module: each one checks that it changed nothing.
    """
    root = tmp_path_factory.mktemp("registry")
    with RegistryServer(root, binary=registry_binary) as server, ImagePusher(server.url) as pusher:
        for n in range(3):
            pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30 + n))
        pusher.push_image("ci/app", ["latest"], created=days_ago(40))
        yield server, pusher, sorted(pusher.tags("ci/app"))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "regprune.toml"
    path.write_text(text)
    return path


# -- the config file: every message names the offending key -------------------------


def _replace(old: str, new: str):
    return lambda text: text.replace(old, new)


CONFIG_CASES = [
    pytest.param(
        _replace('["^latest$"]', '["("]'),
        ["policy.ci.keep_tags", "invalid regular expression '('"],
        id="keep_tags-bad-regex",
    ),
    pytest.param(
        _replace("keep_tags =", 'tags = "(["\nkeep_tags ='),
        ["policy.ci.tags", "invalid regular expression '(['"],
        id="tags-bad-regex",
    ),
    pytest.param(
        _replace('older_than = "14d"', 'older_than = "14x"'),
        ["policy.ci.selectors.0", "invalid duration '14x'"],
        id="bad-duration",
    ),
    pytest.param(
        _replace('use = "age"', 'use = "agee"'),
        ["policy.ci.selectors.0", "unknown selector 'agee'", "age, branch, count"],
        id="unknown-selector",
    ),
    pytest.param(
        _replace('older_than = "14d"', 'older_than = "14d", olde = 1'),
        ["policy.ci.selectors.0", "unknown option 'olde'"],
        id="unknown-selector-option",
    ),
    pytest.param(
        lambda text: "\n".join(line for line in text.splitlines() if "selectors" not in line),
        ["policy.ci.selectors", "required key is missing"],
        id="policy-without-selectors",
    ),
    pytest.param(
        lambda text: text.replace('url = "', 'username = "ci"\n# url = "'),
        ["registry.local.url", "required key is missing"],
        id="registry-without-url",
    ),
    pytest.param(
        _replace("keep_tags =", "keep_tag ="),
        ["policy.ci.keep_tag", "unknown key"],
        id="typo-in-policy-key",
    ),
    pytest.param(
        _replace('url = "{url}"', 'url = "{url}"\npasswd = "secret"'),
        ["registry.local.passwd", "unknown key"],
        id="typo-in-registry-key",
    ),
    pytest.param(
        lambda text: text + '\n[slak]\nchannel = "C1"\n',
        ["slak", "unknown key"],
        id="unknown-top-level-section",
    ),
    pytest.param(
        _replace("[policy.ci]", "[policy.ci"),
        ["not valid TOML", "line 4"],
        id="malformed-toml",
    ),
    pytest.param(
        _replace(
            '[registry.local]\nurl = "{url}"',
            '[registry.local]\nurl = "{url}"\npassword = "${{REGPRUNE_TEST_UNSET}}"',
        ),
        ["registry.local.password", "REGPRUNE_TEST_UNSET is not set"],
        id="env-not-set",
    ),
    pytest.param(
        _replace(
            '[registry.local]\nurl = "{url}"',
            '[registry.local]\nurl = "{url}"\npassword = "${{}}"',
        ),
        ["registry.local.password", "'${}' is not a ${NAME} reference", "write $$"],
        id="broken-env-reference-empty",
    ),
    pytest.param(
        _replace(
            '[registry.local]\nurl = "{url}"',
            '[registry.local]\nurl = "{url}"\npassword = "${{ A }}"',
        ),
        ["registry.local.password", "'${ A }' is not a ${NAME} reference", "write $$"],
        id="broken-env-reference-spaces",
    ),
    pytest.param(
        _replace(
            '[registry.local]\nurl = "{url}"',
            '[registry.local]\nurl = "{url}"\npassword = "${{A-B}}"',
        ),
        ["registry.local.password", "'${A-B}' is not a ${NAME} reference", "write $$"],
        id="broken-env-reference-dash",
    ),
    pytest.param(
        _replace(
            '[registry.local]\nurl = "{url}"',
            '[registry.local]\nurl = "{url}"\npassword = "pw${{A"',
        ),
        ["registry.local.password", "'${A' is not a ${NAME} reference", "write $$"],
        id="broken-env-reference-unterminated",
    ),
    pytest.param(
        _replace('registry = "local"', 'registry = "other"'),
        ["policy.ci.registry", "unknown registry 'other'", "defined: local"],
        id="policy-names-unknown-registry",
    ),
    pytest.param(
        _replace("selectors =", 'approval = "email"\nselectors ='),
        ["policy.ci.approval", "unknown approval 'email'"],
        id="unknown-approval",
    ),
    pytest.param(
        _replace('url = "{url}"', 'url = "registry.example.org"'),
        ["registry.local.url", "invalid registry url"],
        id="registry-url-without-scheme",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), CONFIG_CASES)
@pytest.mark.parametrize("command", [["plan"], ["run", "--yes"]], ids=["plan", "run"])
def test_config_error(seeded, tmp_path, capsys, edit, expected, command):
    server, pusher, tags = seeded
    write_config(tmp_path, edit(CONFIG).format(url=server.url))

    code, out, err = run_cli(capsys, "--state", str(tmp_path / "state.db"), *command)

    assert_one_error_line(code, err, *expected)
    assert out == ""
    assert_unchanged(tmp_path / "state.db", pusher, tags)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_unknown_policy(seeded, tmp_path, capsys, command):
    server, _, _ = seeded
    write_config(tmp_path, CONFIG.format(url=server.url))

    code, _, err = run_cli(
        capsys, "--state", str(tmp_path / "state.db"), command, "--policy", "nope"
    )

    assert_one_error_line(code, err, "unknown policy 'nope'", "defined: ci")
    assert stored_plans(tmp_path / "state.db") == []


@pytest.mark.parametrize("how", ["--config", "env"])
@pytest.mark.parametrize("what", ["directory", "fifo", "device", "too-long"])
def test_config_path_that_is_no_file(tmp_path, capsys, monkeypatch, how, what):
    """A directory, a FIFO or a device is "not a regular file"; a name too long for the
    file system is one line too (it was an OSError, exit 1)."""
    if what == "directory":
        chosen, expected = str(tmp_path), "is not a regular file (a directory)"
    elif what == "fifo":
        chosen, expected = str(tmp_path / "fifo"), "is not a regular file (a FIFO)"
        os.mkfifo(chosen)
    elif what == "device":
        chosen, expected = "/dev/zero", "is not a regular file (a character device)"
    else:
        chosen, expected = str(tmp_path / ("a" * 300)), "the name is too long"
    given_by = "(from --config)" if how == "--config" else "(from $REGPRUNE_CONFIG)"
    argv = ["--config", chosen] if how == "--config" else []
    if how == "env":
        monkeypatch.setenv("REGPRUNE_CONFIG", chosen)

    code, _, err = run_cli(capsys, *argv, "--state", str(tmp_path / "state.db"), "ls")

    line = assert_one_error_line(code, err, given_by, expected)
    assert "does not exist" not in line and "unexpected" not in line and len(line) < 300


@pytest.mark.parametrize(
    ("how", "expected"),
    [("--config", "(from --config)"), ("env", "(from $REGPRUNE_CONFIG)")],
)
def test_config_file_given_but_missing(tmp_path, capsys, monkeypatch, how, expected):
    missing = str(tmp_path / "nope.toml")
    argv = ["--config", missing] if how == "--config" else []
    if how == "env":
        monkeypatch.setenv("REGPRUNE_CONFIG", missing)

    code, _, err = run_cli(capsys, *argv, "--state", str(tmp_path / "state.db"), "ls")

    assert_one_error_line(code, err, "nope.toml", expected, "does not exist")


def test_no_config_file_at_all(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--state", str(tmp_path / "state.db"), "plan")
    assert_one_error_line(code, err, "no config file", "--registry URL --repo GLOB")


# -- quick mode: every message names the flag ----------------------------------------


QUICK = ["--repo", "ci/*", "--older-than", "14d"]
QUICK_CASES = [
    pytest.param(
        [*QUICK, "--keep-tag", "("],
        "--keep-tag: invalid regular expression '('",
        id="keep-tag-regex",
    ),
    pytest.param(
        [*QUICK, "--tags", "(["], "--tags: invalid regular expression '(['", id="tags-regex"
    ),
    pytest.param(
        ["--repo", "ci/*", "--older-than", "2x"],
        "--older-than: invalid duration '2x'",
        id="older-than",
    ),
    pytest.param(
        ["--repo", "ci/*", "--keep", "-1"], "--keep: must be 0 or more", id="keep-negative"
    ),
    pytest.param(
        ["--repo", "ci/*", "--keep", "five"], "invalid value for '--keep'", id="keep-not-int"
    ),
    pytest.param(["--older-than", "14d"], "quick mode needs at least one --repo", id="no-repo"),
    pytest.param(["--repo", "ci/*"], "--older-than DURATION and/or --keep N", id="no-selector"),
    pytest.param(
        [*QUICK, "--approval", "email"], "--approval: unknown approval 'email'", id="approval"
    ),
    pytest.param(
        [*QUICK, "--policy", "ci"], "either --policy or the quick-mode flags", id="policy-and-quick"
    ),
]


@pytest.mark.parametrize(("flags", "expected"), QUICK_CASES)
def test_quick_mode_error(seeded, tmp_path, capsys, flags, expected):
    server, pusher, tags = seeded
    state = tmp_path / "state.db"

    code, out, err = run_cli(
        capsys, "--state", str(state), "plan", "--registry", server.url, *flags
    )

    assert_one_error_line(code, err, expected)
    assert out == ""
    assert_unchanged(state, pusher, tags)


@pytest.mark.parametrize(
    ("registry", "with_config", "expected"),
    [
        (
            "not-a-url-or-name",
            False,
            "is not a URL (http://host:port or https://host) and there is no config",
        ),
        (
            "not-a-url-or-name",
            True,
            "is neither a URL (http://host:port or https://host) nor a configured registry (defined: local)",
        ),
        ("http://", False, "invalid registry url 'http://'"),
    ],
)
@pytest.mark.parametrize("command", ["plan", "ls"])
def test_registry_flag_neither_url_nor_name(
    tmp_path, capsys, registry, with_config, expected, command
):
    if with_config:
        write_config(tmp_path, CONFIG.format(url=f"http://127.0.0.1:{closed_port()}"))
    flags = ["--repo", "ci/*", "--keep", "5"] if command == "plan" else []
    state = tmp_path / "state.db"

    code, _, err = run_cli(capsys, "--state", str(state), command, "--registry", registry, *flags)

    assert_one_error_line(code, err, expected)
    assert stored_plans(state) == []


# -- the registry: unreachable, TLS, credentials -----------------------------------


@pytest.mark.parametrize("command", [["ls"], ["plan", "--repo", "ci/*", "--keep", "1"]])
def test_unreachable_registry(tmp_path, capsys, command):
    url = f"http://127.0.0.1:{closed_port()}"
    state = tmp_path / "state.db"

    code, _, err = run_cli(
        capsys, "--state", str(state), command[0], "--registry", url, *command[1:]
    )

    assert_one_error_line(code, err, f"cannot reach registry {url}", "connection refused")
    assert stored_plans(state) == []


def test_tls_to_a_plain_http_registry(seeded, tmp_path, capsys):
    server, pusher, tags = seeded
    url = server.url.replace("http://", "https://")
    state = tmp_path / "state.db"

    code, _, err = run_cli(
        capsys, "--state", str(state), "plan", "--registry", url, "--repo", "ci/*", "--keep", "0"
    )

    assert_one_error_line(
        code, err, f"cannot reach registry {url}", "TLS handshake failed", "http://"
    )
    assert_unchanged(state, pusher, tags)


@pytest.fixture
def auth_registry(registry_factory):
    server = registry_factory(htpasswd={"ci": "secret"})
    with ImagePusher(server.url, auth=("ci", "secret")) as pusher:
        pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
        yield server, pusher


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ('username = "ci"\npassword = "wrong"', "rejected the credentials for user 'ci'"),
        ("", "requires authentication"),
    ],
    ids=["wrong-password", "no-credentials"],
)
def test_wrong_or_missing_password(auth_registry, tmp_path, capsys, credentials, expected):
    server, pusher = auth_registry
    text = CONFIG.format(url=server.url).replace(
        f'url = "{server.url}"', f'url = "{server.url}"\n{credentials}'
    )
    write_config(tmp_path, text)
    state = tmp_path / "state.db"

    code, _, err = run_cli(capsys, "--state", str(state), "plan")

    assert_one_error_line(code, err, server.url, expected)
    assert stored_plans(state) == []
    assert pusher.tags("ci/app") == ["build-1"]


# -- plans: unknown ids, no approval, deletes disabled -------------------------------


@pytest.mark.parametrize(
    "argv",
    [["apply", "deadbeef", "--yes"], ["show", "deadbeef"], ["history", "--plan", "deadbeef"]],
    ids=["apply", "show", "history"],
)
def test_unknown_plan_id(tmp_path, capsys, argv):
    code, _, err = run_cli(capsys, "--state", str(tmp_path / "state.db"), *argv)
    assert_one_error_line(code, err, "no plan 'deadbeef'", "regprune plans")


def make_plan(capsys, state: Path, url: str) -> str:
    code, out, err = run_cli(
        capsys, "--state", str(state), "plan", "--registry", url, "--repo", "ci/*",
        "--older-than", "14d", "--keep-tag", "^latest$", "--json",
    )  # fmt: skip
    assert code == 0, err
    import json

    plan = json.loads(out)
    assert len(plan["delete"]) == 3
    return plan["plan_id"]


def test_apply_without_terminal_or_yes_refuses(seeded, tmp_path, capsys):
    server, pusher, tags = seeded
    state = tmp_path / "state.db"
    plan_id = make_plan(capsys, state, server.url)

    code, out, err = run_cli(capsys, "--state", str(state), "apply", plan_id)

    assert_one_error_line(code, err, f"plan {plan_id} needs approval", "pass --yes")
    assert out == ""
    assert sorted(pusher.tags("ci/app")) == tags
    with State(state) as db:
        assert db.plans.get(plan_id).status == "pending"
        assert {s for s, _ in db.plans.item_statuses(plan_id).values()} == {"pending"}


def test_deletes_disabled_at_apply(registry_factory, tmp_path, capsys):
    server = registry_factory(delete_enabled=False)
    with ImagePusher(server.url) as pusher:
        for n in range(3):
            pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30))
        tags = sorted(pusher.tags("ci/app"))
        state = tmp_path / "state.db"
        plan_id = make_plan(capsys, state, server.url)

        code, _, err = run_cli(capsys, "--state", str(state), "apply", plan_id, "--yes")

        assert_one_error_line(
            code,
            err,
            "deletes disabled",
            "storage.delete.enabled: true",
            "REGISTRY_STORAGE_DELETE_ENABLED",
        )
        assert sorted(pusher.tags("ci/app")) == tags
        with State(state) as db:
            assert {s for s, _ in db.plans.item_statuses(plan_id).values()} == {"pending"}


def test_run_against_deletes_disabled(registry_factory, tmp_path, capsys):
    server = registry_factory(delete_enabled=False)
    with ImagePusher(server.url) as pusher:
        pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
        code, _, err = run_cli(
            capsys, "--state", str(tmp_path / "state.db"), "run", "--yes",
            "--registry", server.url, "--repo", "ci/*", "--older-than", "1d",
        )  # fmt: skip
        assert_one_error_line(code, err, "deletes disabled")
        assert pusher.tags("ci/app") == ["build-1"]


# -- gc and the state DB --------------------------------------------------------------


def test_gc_needs_a_configured_registry_not_a_url(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "--state", str(tmp_path / "s.db"), "gc", "--registry", "http://x:5000"
    )
    assert_one_error_line(code, err, "name of a configured registry, not a URL")


def test_gc_without_a_gc_command(tmp_path, capsys):
    write_config(tmp_path, CONFIG.format(url=f"http://127.0.0.1:{closed_port()}"))
    code, _, err = run_cli(capsys, "--state", str(tmp_path / "s.db"), "gc")
    assert_one_error_line(
        code, err, "no garbage collector for registry 'local'", "[registry.local.gc]"
    )


def test_state_db_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "--state", str(blocker / "state.db"), "history")
    assert_one_error_line(code, err, "cannot open the state DB", str(blocker), "--state FILE")


# -- click's own usage errors, made one line ----------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["plan", "--bogus"], "no such option: --bogus"),
        (["nosuch"], "no such command 'nosuch' (see `regprune --help`)"),
        (["history", "--limit", "x"], "invalid value for '--limit'"),
        (["history", "--limit", "0"], "invalid value for '--limit'"),
        (["apply"], "missing argument 'PLAN_ID' (see `regprune apply --help`)"),
    ],
)
def test_click_usage_errors_are_one_line(tmp_path, capsys, argv, expected):
    code, out, err = run_cli(capsys, "--state", str(tmp_path / "s.db"), *argv)
    assert_one_error_line(code, err, expected)
    assert out == ""


def test_unexpected_exception_is_one_line_with_exit_1(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("regprune.cli.history_cmd.event_summary", broken)
    with State(tmp_path / "s.db") as state:
        state.audit_log.record("test.event", details={"x": 1})

    code, _, err = run_cli(capsys, "--state", str(tmp_path / "s.db"), "history")

    assert code == 1
    assert err.splitlines() == [
        "error: unexpected KeyError: 'boom' (a bug in regprune or a plugin; "
        "set REGPRUNE_DEBUG=1 to see the traceback and report it)"
    ]


# -- as a user runs it: python -m regprune -------------------------------------------


def run_module(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGPRUNE_")}
    env["REGPRUNE_LOAD_PLUGINS"] = ""
    env.update(XDG_CONFIG_HOME=str(tmp_path / "xdg"), XDG_STATE_HOME=str(tmp_path / "xdg"))
    return subprocess.run(
        [sys.executable, "-m", "regprune", "--state", str(tmp_path / "state.db"), *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )


def test_subprocess_errors_have_no_traceback(seeded, tmp_path):
    server, pusher, tags = seeded
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.format(url=server.url).replace('["^latest$"]', '["("]'))
    cases = [
        (["--config", str(bad), "plan"], "policy.ci.keep_tags"),
        (
            ["plan", "--registry", server.url, "--repo", "ci/*", "--keep-tag", "(", "--keep", "1"],
            "--keep-tag",
        ),
        (["plan", "--bogus"], "no such option"),
        (["ls", "--registry", f"http://127.0.0.1:{closed_port()}"], "connection refused"),
    ]
    for argv, expected in cases:
        result = run_module(tmp_path, *argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert_one_error_line(result.returncode, result.stderr, expected)
    assert_unchanged(tmp_path / "state.db", pusher, tags)


def test_subprocess_apply_without_terminal_deletes_nothing(seeded, tmp_path, capsys):
    server, pusher, tags = seeded
    plan_id = make_plan(capsys, tmp_path / "state.db", server.url)

    result = run_module(tmp_path, "apply", plan_id)

    assert_one_error_line(result.returncode, result.stderr, "no terminal", "--yes")
    assert sorted(pusher.tags("ci/app")) == tags


@pytest.mark.parametrize("what", ["directory", "fifo", "device"])
def test_a_state_db_that_is_no_regular_file_is_refused_before_sqlite_opens_it(
    tmp_path, capsys, what
):
    """SQLite would open a device as a DB and leave its -journal file beside it."""
    if what == "directory":
        chosen, expected = tmp_path / "dir", "a directory"
        chosen.mkdir()
    elif what == "fifo":
        chosen, expected = tmp_path / "fifo", "a FIFO"
        os.mkfifo(chosen)
    else:
        chosen, expected = Path("/dev/zero"), "a character device"

    code, _, err = run_cli(capsys, "--state", str(chosen), "plans")

    assert_one_error_line(code, err, f"cannot open the state DB {chosen}: {expected}")
    assert not Path(f"{chosen}-journal").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in (["dir"], ["fifo"], [])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config", "", "plans"], "--config '': empty"),
        (["--state", "", "plans"], "--state '': empty"),
        (["history", "--plan", ""], "--plan '': empty"),
        (["plans", "--format", ""], "--format '' is not one of"),
        (["gc", "--registry", ""], "--registry '': empty"),
        (["plan", "--registry", " ", "--repo", "a/*", "--keep", "1"], "--registry ' ': empty"),
    ],
)
def test_an_empty_value_is_a_mistake_never_not_given(tmp_path, capsys, monkeypatch, argv, expected):
    """An unset variable in a script (`--config "$CONFIG"`) must not fall back to defaults."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert_one_error_line(code, err, expected)
