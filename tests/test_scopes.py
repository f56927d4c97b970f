"""Typos and empty scopes, through the real CLI against a real registry.

A literal repository the registry does not have is an error (exit 2, one line, the
closest names suggested) for quick mode's ``--repo``, a policy's ``repositories``
and ``regprune ls``; a glob that matches nothing is a warning, and the empty plan
is not stored unless ``--store-empty``.  Storage-backed scans check the same way,
from the files, and a registry whose catalog the credentials may not read still
catches the typo (its tag list answers 404) and says why it suggests nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from regprune.cli import run
from regprune.state import State
from regprune.testing import ImagePusher, days_ago
from regprune.testing.token_issuer import TokenIssuer


@pytest.fixture(autouse=True)
def _isolated(isolated_cli: None) -> None:
    """No config or state from the environment."""


class Cli:
    """``regprune --state … [--config …] ARGS`` in-process: (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        self.capsys = capsys
        self.state = tmp_path / "state.db"
        self.config: Path | None = None

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        base = ["--state", str(self.state)]
        if self.config is not None:
            base += ["--config", str(self.config)]
        self.capsys.readouterr()
        code = run([*base, *argv])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    def stored_plans(self) -> int:
        if not self.state.exists():
            return 0
        with State(self.state) as state:
            return len(state.plans.find(limit=1000))


@pytest.fixture
def cli(capsys, tmp_path) -> Cli:
    return Cli(capsys, tmp_path)


@pytest.fixture
def images(pusher):
    pusher.push_image("app/api", ["v1"], created=days_ago(30))
    pusher.push_image("app/web", ["v1"], created=days_ago(30))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_quick_mode_typo_is_an_error_with_a_suggestion(cli, registry_server, images):
    code, out, err = cli(
        "plan", "--registry", registry_server.url, "--repo", "app/apii", "--older-than", "1d"
    )

    assert code == 2
    line = _one_error_line(err)
    assert "no repository 'app/apii'" in line
    assert "did you mean 'app/api'?" in line
    assert out == ""
    assert cli.stored_plans() == 0


def test_ls_of_a_missing_repository_is_an_error(cli, registry_server, images):
    code, out, err = cli("ls", "--registry", registry_server.url, "app/wbe")

    assert code == 2
    assert out == ""
    line = _one_error_line(err)
    assert "ls: no repository 'app/wbe'" in line
    assert "did you mean 'app/web'?" in line

    # Nothing close: the error says where the names are listed instead.
    code, _, err = cli("ls", "--registry", registry_server.url, "nosuch/repo")
    assert code == 2
    assert "`regprune ls` lists the repositories" in _one_error_line(err)


def test_policy_literal_typo_stops_every_policy_before_any_plan_is_stored(
    cli, registry_server, images, tmp_path
):
    cli.config = tmp_path / "regprune.toml"
    cli.config.write_text(
        f"""
[registry.local]
url = "{registry_server.url}"

[policy.a_good]
registry = "local"
repositories = ["app/web"]
selectors = [{{ use = "age", older_than = "1d" }}]

[policy.b_typo]
registry = "local"
repositories = ["app/*", "app/apii"]
selectors = [{{ use = "age", older_than = "1d" }}]
"""
    )

    code, out, err = cli("plan")

    assert code == 2
    line = _one_error_line(err)
    assert "policy b_typo: no repository 'app/apii'" in line
    assert "did you mean 'app/api'?" in line
    assert cli.stored_plans() == 0  # a_good comes first, and is not stored either

    code, out, _ = cli("plan", "--policy", "a_good", "--json")
    assert code == 0
    assert [item["repository"] for item in json.loads(out)["delete"]] == ["app/web"]


def test_a_glob_matching_nothing_warns_and_stores_nothing_unless_asked(
    cli, registry_server, images
):
    quick = ["--registry", registry_server.url, "--repo", "nope/*", "--older-than", "1d"]

    code, out, err = cli("plan", *quick)

    assert code == 0
    assert "warning: policy quick: 'nope/*' matches no repository" in err
    assert out.count("Not stored: it covers no repository (--store-empty stores it).") == 1
    assert cli.stored_plans() == 0

    code, out, err = cli("plan", *quick, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["stored"] is False
    assert document["warnings"] == [
        f"policy quick: 'nope/*' matches no repository on registry {registry_server.url}"
    ]

    code, out, err = cli("plan", *quick, "--store-empty", "--json")
    assert code == 0
    assert "stored" not in json.loads(out)
    assert cli.stored_plans() == 1

    # `run` reports the same and applies nothing.
    code, out, err = cli("run", *quick, "--yes")
    assert code == 0
    assert "Not stored: it covers no repository (--store-empty stores it)." in out
    assert "matches no repository" in err
    assert cli.stored_plans() == 1


def test_a_glob_next_to_existing_repositories_plans_them(cli, registry_server, images):
    code, out, _ = cli(
        "plan",
        "--registry",
        registry_server.url,
        "--repo",
        "app/api",
        "--repo",
        "old/*",
        "--older-than",
        "1d",
        "--json",
    )

    assert code == 0
    document = json.loads(out)
    assert [item["repository"] for item in document["delete"]] == ["app/api"]
    assert any("'old/*' matches no repository" in w for w in document["warnings"])
    assert cli.stored_plans() == 1  # the scope is not empty: stored as always


def test_storage_backed_scans_check_literals_from_the_files(cli, registry_server, images, tmp_path):
    cli.config = tmp_path / "regprune.toml"
    cli.config.write_text(
        f"""
[registry.local]
url = "{registry_server.url}"
storage = "{registry_server.storage_path}"

[policy.typo]
registry = "local"
repositories = ["app/apii"]
selectors = [{{ use = "age", older_than = "1d" }}]

[policy.empty]
registry = "local"
repositories = ["gone/*"]
selectors = [{{ use = "age", older_than = "1d" }}]

[policy.good]
registry = "local"
repositories = ["app/api"]
selectors = [{{ use = "age", older_than = "1d" }}]
"""
    )

    code, _, err = cli("plan", "--policy", "typo")
    assert code == 2
    assert "did you mean 'app/api'?" in _one_error_line(err)

    code, out, err = cli("plan", "--policy", "empty")
    assert code == 0
    assert "'gone/*' matches no repository" in err
    assert cli.stored_plans() == 0

    code, out, _ = cli("plan", "--policy", "good", "--json")
    assert code == 0
    assert [item["repository"] for item in json.loads(out)["delete"]] == ["app/api"]

    code, _, err = cli("ls", "app/wbe")
    assert code == 2
    assert "did you mean 'app/web'?" in _one_error_line(err)


def test_without_the_catalog_scope_a_typo_is_still_caught(cli, registry_factory, tmp_path):
    """Token auth granting pull but not ``registry:catalog:*``: the literal's tag list
    answers 404, so the typo is caught; the error says the catalog could not be read."""
    issuer = TokenIssuer({"reader": ("reader-pw", ["pull"])}).start()
    try:
        server = registry_factory(token_auth=issuer.registry_auth_config())
        token = issuer.make_token(
            "pusher", [{"type": "repository", "name": "app/api", "actions": ["pull", "push"]}]
        )
        client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        with ImagePusher(server.url, client=client) as pusher:
            pusher.push_image("app/api", ["v1"], created=days_ago(30))
        cli.config = tmp_path / "regprune.toml"
        cli.config.write_text(
            f"""
[registry.local]
url = "{server.url}"
username = "reader"
password = "reader-pw"

[policy.ci]
registry = "local"
repositories = ["app/apii"]
selectors = [{{ use = "age", older_than = "1d" }}]

[policy.ok]
registry = "local"
repositories = ["app/api"]
selectors = [{{ use = "age", older_than = "1d" }}]
"""
        )

        code, _, err = cli("plan", "--policy", "ci")
        assert code == 2
        line = _one_error_line(err)
        assert "policy ci: no repository 'app/apii'" in line
        assert "the catalog could not be read" in line
        assert "registry:catalog:*" in line

        code, out, err = cli("plan", "--policy", "ok", "--json")
        assert code == 0, err
        assert [item["repository"] for item in json.loads(out)["delete"]] == ["app/api"]
    finally:
        issuer.stop()


BAD_NAMES = [
    ("", "empty repository name"),
    ("app//web", "not a repository name"),
    ("app/web/", "not a repository name"),
    ("/app/web", "not a repository name"),
    ("app/web%2f", "not a repository name"),
    ("App/Web", "names are lower-case, e.g. 'app/web'"),
    ("a" * 300, "has 300 characters; a repository name has at most 255"),
    ("app//*", "empty path component"),
    ("*/", "empty path component"),
]


@pytest.mark.parametrize(
    ("name", "expected"), BAD_NAMES, ids=[n[:12] or "empty" for n, _ in BAD_NAMES]
)
def test_names_no_repository_can_have_are_refused_before_any_request(
    cli, registry_server, fault_proxy, images, tmp_path, name, expected
):
    """Quick mode's ``--repo`` and ``--exclude``, ``ls REPOSITORY`` and a policy's
    ``repositories``: exit 2, one line naming the flag or key, and no request (the
    registry would answer 301 or 500)."""
    cli.config = tmp_path / "regprune.toml"
    cli.config.write_text(
        f"""
[registry.local]
url = "{fault_proxy.url}"

[policy.ci]
registry = "local"
repositories = ["app/*", {json.dumps(name)}]
selectors = [{{ use = "age", older_than = "1d" }}]
"""
    )
    runs = [
        (("plan", "--policy", "ci"), "policy.ci.repositories.1: "),
        (("plan", "--registry", fault_proxy.url, "--repo", name, "--keep", "1"), "--repo: "),
        (
            (
                "plan",
                "--registry",
                fault_proxy.url,
                "--repo",
                "app/*",
                "--exclude",
                name,
                "--keep",
                "1",
            ),
            "--exclude: ",
        ),
        (("ls", "--registry", fault_proxy.url, name), "REPOSITORY: "),
    ]
    for argv, where in runs:
        code, out, err = cli(*argv)
        line = _one_error_line(err)
        assert code == 2, line
        assert where in line and expected in line, line
        assert "unexpected" not in line and len(line) < 400, line
        assert out == ""
    assert fault_proxy.requests == []
    assert cli.stored_plans() == 0
