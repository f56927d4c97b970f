"""The example plugin package docs/examples/regprune-semver, installed as a user would.

It is not part of the dev install (``make demo``'s CLI must not show it as if it
were built in): ``example_install`` pip-installs a copy of it into a temporary
directory once per test session, and ``installed`` puts that directory on
``sys.path`` for this module's tests.  They use it through the real command line,
run its own test suite, and check that the tutorial's code is the example's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

from regprune import hookimpl
from regprune.cli import run
from regprune.config import parse_settings
from regprune.engine import Engine
from regprune.errors import ConfigError
from regprune.plugin_manager import BLOCK_ENV, LOAD_ENV, get_plugin_manager
from regprune.state import State
from regprune.testing import apply_plan, deleted_tags, kept_tags, reasons_for, run_policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "regprune-semver"
TUTORIAL = ROOT / "docs" / "plugins" / "writing-plugins.md"
MODULE = Path("regprune_semver") / "__init__.py"


@pytest.fixture(autouse=True)
def _plugins_load_normally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv(LOAD_ENV, raising=False)


@pytest.fixture(scope="session")
def example_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source copy, install target): the example copied out of the checkout (a build
    writes into its source tree) and pip-installed from there, offline, in about a second."""
    base = tmp_path_factory.mktemp("example-plugin")
    source, target = base / "source", base / "target"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    done = subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return source, target


@pytest.fixture(scope="module")
def installed(example_install: tuple[Path, Path]) -> Iterator[Path]:
    """The example, installed and importable for this module's tests (only theirs)."""
    _, target = example_install
    patch = pytest.MonkeyPatch()
    patch.syspath_prepend(str(target))  # entry points are found through sys.path too
    try:
        import regprune_semver

        dist = distribution("regprune-semver")
        where = Path(regprune_semver.__file__).resolve()
        assert where.is_relative_to(target.resolve()), f"regprune_semver imported from {where}"
        assert where.read_text(encoding="utf-8") == (EXAMPLE / MODULE).read_text(encoding="utf-8")
        assert dist.version == regprune_semver.__version__
        yield target
    finally:
        patch.undo()
        sys.modules.pop("regprune_semver", None)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_config(path: Path, url: str, selectors: str) -> Path:
    path.write_text(
        f"""
[registry.main]
url = "{url}"

[policy.releases]
registry = "main"
repositories = ["apps/*"]
selectors = [{selectors}]
""",
        encoding="utf-8",
    )
    return path


# -- installed, through the command line ------------------------------------------------


def test_entry_point_is_in_the_regprune_group(installed):
    (entry_point,) = [ep for ep in entry_points(group="regprune") if ep.name == "semver_releases"]
    assert entry_point.value == "regprune_semver"


def test_plugins_json_lists_the_example(installed, capsys):
    code, out, err = cli(capsys, "plugins", "--json")

    assert code == 0, err
    data = json.loads(out)
    (row,) = [row for row in data["plugins"] if row["name"] == "semver_releases"]
    assert row == {
        "name": "semver_releases",
        "builtin": False,
        "hooks": ["register_commands", "register_selectors"],
        "distribution": "regprune-semver 0.1.0",
    }
    assert "semver_releases" in data["registered"]["selectors"]


def test_plan_json_deletes_exactly_the_older_releases(installed, pusher, tmp_path, capsys):
    digests = {
        tag: pusher.push_image("apps/web", [tag]).digest
        for tag in ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0", "v2.0.1", "2.1.0-rc.1", "latest"]
    }
    pusher.push_image("apps/web", ["v2.0.0-rc.1"])
    shared = pusher.push_image("apps/api", ["1.0.0", "stable"])
    pusher.push_image("apps/api", ["1.1.0"])
    config = write_config(
        tmp_path / "regprune.toml",
        pusher.url,
        '{ use = "semver_releases", keep_per_major = 1 }',
    )

    code, out, err = cli(
        capsys,
        "--config",
        str(config),
        "--state",
        str(tmp_path / "state.db"),
        "plan",
        "--policy",
        "releases",
        "--json",
    )

    assert code == 0, err
    plan = json.loads(out)
    deleted = {(item["repository"], tag) for item in plan["delete"] for tag in item["tags"]}
    assert deleted == {
        ("apps/web", "v1.0.0"),
        ("apps/web", "v1.1.0"),
        ("apps/web", "v2.0.0"),
        ("apps/web", "v2.0.0-rc.1"),
    }
    by_digest = {item["digest"]: item for item in plan["delete"]}
    assert by_digest[digests["v1.0.0"]]["reasons"] == [
        "semver_releases: v1.0.0 is release #3 of major 1, beyond keep_per_major=1"
    ]
    kept = {item["digest"]: item["reasons"] for item in plan["keep"]}
    assert kept[digests["latest"]] == ["semver_releases: no semver tag (latest); not selected"]
    assert kept[shared.digest] == [
        "semver_releases: 1.0.0 is release #2 of major 1, beyond keep_per_major=1, "
        "but also tagged stable; not selected"
    ]
    assert kept[digests["2.1.0-rc.1"]] == [
        "semver_releases: pre-release 2.1.0-rc.1 is newer than every 2.x release"
    ]


def test_a_bad_option_is_one_line_naming_the_key(installed, registry_server, tmp_path, capsys):
    config = write_config(
        tmp_path / "regprune.toml",
        registry_server.url,
        '{ use = "semver_releases", keep_per_major = 0 }',
    )

    code, _, err = cli(capsys, "--config", str(config), "--state", str(tmp_path / "s.db"), "plan")

    assert code == 2
    assert err == (
        "error: policy.releases.selectors.0: keep_per_major: input should be greater than "
        "or equal to 1, got 0\n"
    )


def test_blocking_the_example_removes_its_selector(installed, monkeypatch, capsys):
    monkeypatch.setenv(BLOCK_ENV, "semver_releases")

    code, out, _ = cli(capsys, "plugins", "--json")

    assert code == 0
    data = json.loads(out)
    assert "semver_releases" not in {row["name"] for row in data["plugins"]}
    assert "semver_releases" not in data["registered"]["selectors"]


def test_the_example_command(installed, capsys):
    code, out, _ = cli(capsys, "semver-sort", "v1.2.3", "1.10.0", "1.3.0-rc.1", "latest")

    assert code == 0
    assert out.splitlines() == [
        "1.10.0\trelease of major 1",
        "1.3.0-rc.1\tpre-release of major 1",
        "v1.2.3\trelease of major 1",
        "latest\tnot a semver release: never selected",
    ]
    code, _, err = cli(capsys, "semver-sort", "--pattern", "^x", "v1")
    assert code == 2
    assert err.startswith("error: pattern: '^x' needs a (?P<version>...) group")


def test_regprune_plan_fixture_with_the_example(installed, pusher, regprune_plan):
    for tag in ["v3.0.0", "v3.0.1", "v3.1.0"]:
        pusher.push_image("apps/web", [tag])

    plan = regprune_plan({"selectors": [{"use": "semver_releases", "keep_per_major": 2}]})

    assert deleted_tags(plan) == {"apps/web:v3.0.0"}
    assert kept_tags(plan) == {"apps/web:v3.0.1", "apps/web:v3.1.0"}
    assert reasons_for(plan, "apps/web:v3.1.0") == [
        "semver_releases: v3.1.0 is release #1 of major 3, within keep_per_major=2"
    ]
    result = regprune_plan.apply(plan)
    assert result.status == "done"
    assert pusher.tags("apps/web") == ["v3.0.1", "v3.1.0"]


def test_regprune_plan_reports_config_errors(installed, regprune_plan):
    with pytest.raises(ConfigError, match=r"unknown option 'keep'"):
        regprune_plan({"selectors": [{"use": "semver_releases", "keep": 1}]})


def test_run_policy_takes_now_other_policies_and_extra_plugins(registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["build-1"], created="2024-01-01T00:00:00Z")
    pusher.push_image("ci/app", ["v1.0.0"], created="2024-01-01T00:00:00Z")
    pusher.push_image("ci/app", ["build-2"], created="2024-03-01T00:00:00Z")
    seen = []

    class Spy:
        @hookimpl
        def plan_created(self, plan):
            seen.append(plan.id)

    plan = run_policy(
        registry_server.url,
        {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "30d"}]},
        state_dir=tmp_path,
        now=datetime(2024, 3, 2, tzinfo=UTC),
        other_policies={
            "releases": {"keep_tags": ["^v"], "selectors": [{"use": "count", "keep": 9}]}
        },
        extra_plugins=[Spy()],
        load_entrypoints=False,
    )

    assert deleted_tags(plan) == {"ci/app:build-1"}
    assert any(r.startswith("policy releases: ") for r in reasons_for(plan, "ci/app:v1.0.0"))
    assert seen == [plan.id]
    result = apply_plan(registry_server.url, plan.id, state_dir=tmp_path)
    assert [outcome.item.tags for outcome in result.of("deleted")] == [("build-1",)]


# -- the example's own test suite -----------------------------------------------------


def test_the_example_package_tests_pass(installed, example_install):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "COV_"))  # ours, from this (xdist) run
    }
    env["PYTHONPATH"] = str(installed)  # the example's distribution: its entry point
    source, _ = example_install
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout)
    assert "skipped" not in done.stdout


# -- the tutorial's code is the example's code ------------------------------------------

MARKER = re.compile(r"^<!-- (example: (?P<path>\S+)|sketch) -->$")
OPEN_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


def tutorial_blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, marker) for each fenced block; marker is a path, "sketch" or None."""
    lines = TUTORIAL.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    marker: str | None = None
    while index < len(lines):
        line = lines[index]
        found = MARKER.match(line)
        if found:
            marker = found.group("path") or "sketch"
        elif OPEN_FENCE.match(line):
            lang = OPEN_FENCE.match(line).group("lang")  # type: ignore[union-attr]
            end = lines.index("```", index + 1)
            blocks.append((lang, "\n".join(lines[index + 1 : end]) + "\n", marker))
            marker = None
            index = end
        elif line.strip():
            marker = None  # a marker only counts right before its block
        index += 1
    return blocks


def test_every_python_block_is_marked():
    unmarked = [code for lang, code, marker in tutorial_blocks() if lang == "python" and not marker]
    assert not unmarked, (
        "python blocks in writing-plugins.md must be preceded by <!-- example: PATH --> "
        "(code of docs/examples/regprune-semver) or <!-- sketch -->:\n" + unmarked[0]
    )


def test_sketches_compile():
    for _lang, code, marker in tutorial_blocks():
        if marker == "sketch":
            compile(code, "writing-plugins.md (sketch)", "exec")


def test_tutorial_code_is_the_example_code_in_order_and_complete():
    shown: dict[str, list[str]] = {}
    for _lang, code, marker in tutorial_blocks():
        if marker and marker != "sketch":
            shown.setdefault(marker, []).append(code)
    assert set(shown) == {
        "pyproject.toml",
        "regprune_semver/__init__.py",
        "tests/test_regprune_semver.py",
    }
    for path, blocks in shown.items():
        source = (EXAMPLE / path).read_text(encoding="utf-8")
        position = 0
        uncovered = []
        for block in blocks:
            found = source.find(block, position)
            assert found >= 0, (
                f"writing-plugins.md shows code that is not in {path} (in this order):\n{block}"
            )
            uncovered.append(source[position:found])
            position = found + len(block)
        uncovered.append(source[position:])
        left_out = [part for part in uncovered if part.strip()]
        assert not left_out, f"writing-plugins.md leaves out part of {path}:\n{left_out[0]}"


def test_tutorial_configs_are_valid_with_the_example_installed(installed, tmp_path):
    configs = [code for lang, code, _ in tutorial_blocks() if lang == "toml"]
    checked = 0
    for code in configs:
        data = tomllib.loads(code)
        if "policy" not in data:
            continue
        data.setdefault("registry", {}).setdefault("main", {"url": "http://127.0.0.1:5000"})
        settings = parse_settings(data, source="writing-plugins.md")
        with State(tmp_path / f"state-{checked}.db") as state:
            engine = Engine(settings, state, manager=get_plugin_manager())
            engine.validate()
        checked += 1
    assert checked >= 2
