"""The command line's happy paths against a real registry, run in-process with ``run(argv)``.

Config files and state DBs live in tmp_path; JSON output is checked against the
contract of issue 2 ("Config and CLI contract"), tables for readability.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regprune.cli import output, render, run
from regprune.engine import lock_name
from regprune.state import State
from regprune.testing import days_ago

from .test_state import make_plan

POLICY = """\
[registry.local]
url = "{url}"

[registry.local.gc]
command = {gc_command}
storage_path = "{storage}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
keep_tags = ["^latest$"]
selectors = [
  {{ use = "age", older_than = "14d" }},
  {{ use = "count", keep = 2 }},
]
"""


@pytest.fixture(autouse=True)
def _isolated(isolated_cli: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kit's isolated CLI, at the terminal width click picks by itself."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def terminal_80(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout as an 80-column terminal: the tables' layout for people (a pipe gets
    unfolded rows instead: tests/test_terminal_output.py)."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(output, "is_terminal", lambda stream: stream is sys.stdout)
    monkeypatch.setattr(render.console, "_force_terminal", True)


class Cli:
    """``regprune --config … --state … ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        self.capsys = capsys
        self.state = tmp_path / "state.db"
        self.config: Path | None = None

    def __call__(self, *argv: str, ok: bool = True) -> tuple[int, str, str]:
        base = ["--state", str(self.state)]
        if self.config is not None:
            base += ["--config", str(self.config)]
        self.capsys.readouterr()
        code = run([*base, *argv])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        if ok:
            assert code == 0, f"exit {code}: {err}"
        return code, out, err

    def json(self, *argv: str) -> object:
        _, out, _ = self(*argv, "--json")
        return json.loads(out)


@pytest.fixture
def cli(capsys, tmp_path, registry_server) -> Cli:
    runner = Cli(capsys, tmp_path)
    runner.config = tmp_path / "regprune.toml"
    runner.config.write_text(
        POLICY.format(
            url=registry_server.url,
            gc_command=json.dumps(registry_server.gc_command()),
            storage=registry_server.storage_path,
        )
    )
    return runner


@pytest.fixture
def ci_images(pusher):
    """ci/app: 5 builds 30..26 days old (the first signed), latest 40 days old; ci/multi: an index."""
    builds = [
        pusher.push_image("ci/app", [f"main-{n:07x}"], created=days_ago(30 - n)) for n in range(5)
    ]
    latest = pusher.push_image("ci/app", ["latest"], created=days_ago(40))
    signature = pusher.push_signature("ci/app", builds[0].digest, "sig")
    index = pusher.push_index("ci/multi", ["build-1"], created=days_ago(20))
    return {"builds": builds, "latest": latest, "signature": signature, "index": index}


# -- ls -------------------------------------------------------------------------------


def test_ls_json_lists_images_oldest_first(cli, pusher):
    newer = pusher.push_image("ci/app", ["b"], created=days_ago(2))
    oldest = pusher.push_image("ci/app", ["c", "c-alias"], created=days_ago(9))
    middle = pusher.push_image("ci/app", ["a"], created=days_ago(5))
    other = pusher.push_image("ci/web", ["x"], created=days_ago(1))

    images = cli.json("ls")

    assert [(i["repository"], i["digest"]) for i in images] == [
        ("ci/app", oldest.digest),
        ("ci/app", middle.digest),
        ("ci/app", newer.digest),
        ("ci/web", other.digest),
    ]
    first = images[0]
    assert first["tags"] == ["c", "c-alias"]
    assert first["size"] > 0
    assert first["created"].startswith(days_ago(9).date().isoformat())
    assert first["time_source"] == "created"
    assert cli.json("ls", "ci/web") == [images[-1]]


def test_ls_table(cli, ci_images, terminal_80):
    _, out, _ = cli("ls")

    lines = out.splitlines()
    assert lines[0].split() == ["tags", "digest", "type", "created", "age", "size"]
    assert "ci/app" in lines[2]  # a header row per repository
    latest = next(line for line in lines if "latest" in line)
    assert ci_images["latest"].digest[7:19] in latest
    assert "40d" in latest
    assert any("+1 signature(s)" in line for line in lines)
    index_row = next(line for line in lines if "build-1" in line)
    assert "index" in index_row
    assert max(len(line) for line in lines) <= 80


def test_ls_with_a_registry_url_and_no_config(capsys, tmp_path, registry_server, pusher):
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(3))
    images = Cli(capsys, tmp_path).json("ls", "--registry", registry_server.url)
    assert [i["digest"] for i in images] == [image.digest]


def test_registry_url_of_a_configured_registry_uses_its_credentials(
    capsys, tmp_path, registry_factory
):
    from regprune.testing import ImagePusher

    server = registry_factory(htpasswd={"ci": "secret"})
    with ImagePusher(server.url, auth=("ci", "secret")) as pusher:
        image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    cli = Cli(capsys, tmp_path)
    cli.config = tmp_path / "regprune.toml"
    cli.config.write_text(
        f'[registry.local]\nurl = "{server.url}/"\nusername = "ci"\npassword = "secret"\n'
    )

    images = cli.json("ls", "--registry", server.url)
    plan = cli.json("plan", "--registry", server.url, "--repo", "ci/*", "--older-than", "7d")

    assert [i["digest"] for i in images] == [image.digest]
    assert plan["registry"] == "local"
    assert [i["digest"] for i in plan["delete"]] == [image.digest]


# -- plan -----------------------------------------------------------------------------


def test_plan_json_has_the_contract_shape(cli, ci_images):
    plan = cli.json("plan")

    assert {"plan_id", "delete", "keep", "summary"} <= set(plan)
    assert re.fullmatch(r"[0-9a-f]{8,}", plan["plan_id"])
    for item in plan["delete"]:
        assert {"repository", "digest", "tags", "created", "size", "reasons"} <= set(item)
        assert isinstance(item["tags"], list)
        assert isinstance(item["size"], int)
        assert item["reasons"] and all(isinstance(r, str) for r in item["reasons"])
    for item in plan["keep"]:
        assert {"repository", "digest", "tags", "reasons"} <= set(item)
    assert {"images", "tags", "bytes"} <= set(plan["summary"])

    builds, signature = ci_images["builds"], ci_images["signature"]
    # Every manifest apply deletes is its own item: the 3 oldest builds and the signature.
    assert {i["digest"] for i in plan["delete"]} == {
        *(b.digest for b in builds[:3]),
        signature.digest,
    }
    assert plan["summary"]["images"] == 3
    assert plan["summary"]["tags"] == 4
    assert plan["summary"]["bytes"] > 0
    by_digest = {i["digest"]: i for i in plan["delete"]}
    assert by_digest[builds[0].digest]["tags"] == ["main-0000000"]
    assert any(r.startswith("age: ") for r in by_digest[builds[0].digest]["reasons"])
    kept = {i["digest"]: i for i in plan["keep"]}
    assert any("^latest$" in r for r in kept[ci_images["latest"].digest]["reasons"])
    with State(cli.state) as state:
        assert state.plans.get(plan["plan_id"]).status == "pending"


def test_plan_table_is_readable(cli, ci_images, terminal_80):
    _, out, _ = cli("plan")

    signature_tag = ci_images["signature"].tags[0]
    subject_hex = ci_images["builds"][0].digest.split(":")[1]
    assert signature_tag not in out  # too long for a table cell...
    assert f"sha256-{subject_hex[:8]}….sig" in out  # ...so it is shortened
    assert "would otherwise be deleted (age, count)" in out
    assert "Plan " in out and ": delete" in out and ": keep" in out
    assert re.search(r"Apply it with: regprune apply [0-9a-f]{8}", out)
    assert max(len(line) for line in out.splitlines()) <= 80


def test_second_plan_of_an_index_matches_the_first(cli, pusher, registry_server):
    index = pusher.push_index("ci/multi", ["build-1"], created=days_ago(30))
    expected = {index.digest, *(child.digest for child in index.children)}
    quick = ["plan", "--registry", registry_server.url, "--repo", "ci/*", "--older-than", "7d"]

    cold = cli.json(*quick)
    assert {i["digest"] for i in cold["delete"]} == expected
    warm = cli.json(*quick)
    assert {i["digest"] for i in warm["delete"]} == expected


def test_plan_with_nothing_to_delete(cli, pusher):
    pusher.push_image("ci/app", ["fresh"], created=days_ago(1))
    _, out, _ = cli("plan")
    assert "nothing to delete" in out
    assert "Apply it with" not in out


def test_quick_mode_without_a_config_file(capsys, tmp_path, registry_server, pusher):
    builds = [
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30 - n)) for n in range(8)
    ]
    latest = pusher.push_image("ci/app", ["latest"], created=days_ago(40))
    pusher.push_image("other/app", ["old"], created=days_ago(90))
    cli = Cli(capsys, tmp_path)

    plan = cli.json(
        "plan", "--registry", registry_server.url, "--repo", "ci/*",
        "--older-than", "14d", "--keep", "5", "--keep-tag", "^latest$",
    )  # fmt: skip

    assert {i["digest"] for i in plan["delete"]} == {b.digest for b in builds[:3]}
    assert latest.digest in {i["digest"] for i in plan["keep"]}
    assert not list(tmp_path.glob("*.toml"))


# -- apply, show, history ------------------------------------------------------------


def test_apply_yes_json(cli, ci_images, pusher):
    plan = cli.json("plan")
    skipped = ci_images["builds"][2]
    pusher.tag("ci/app", skipped.digest, "release-1")  # pushed after planning: never lost

    result = cli.json("apply", plan["plan_id"], "--yes")

    assert result["plan_id"] == plan["plan_id"]
    assert set(result) >= {"deleted", "skipped", "failed"}
    deleted = {i["digest"] for i in result["deleted"]}
    builds = ci_images["builds"]
    assert deleted == {builds[0].digest, builds[1].digest, ci_images["signature"].digest}
    assert [i["digest"] for i in result["skipped"]] == [skipped.digest]
    assert "tags changed" in result["skipped"][0]["reason"]
    assert result["failed"] == []
    assert sorted(pusher.tags("ci/app")) == [
        "latest", "main-0000002", "main-0000003", "main-0000004", "release-1",
    ]  # fmt: skip

    # Applying again repeats nothing.
    again = cli.json("apply", plan["plan_id"][:6], "--yes")
    assert {i["digest"] for i in again["deleted"]} == deleted


def test_apply_human_output(cli, ci_images):
    plan = cli.json("plan")
    _, out, err = cli("apply", plan["plan_id"], "--yes")
    assert f"Plan {plan['plan_id']}: done; deleted 4, skipped 0, failed 0" in out
    assert err == ""


def test_show_json_and_table(cli, ci_images):
    plan_id = cli.json("plan")["plan_id"]
    cli("apply", plan_id, "--yes")

    shown = cli.json("show", plan_id)

    assert shown["plan_id"] == plan_id
    assert shown["status"] == "done"
    assert {item["status"] for item in shown["delete"]} == {"deleted"}
    assert [(a["decision"], a["method"]) for a in shown["approvals"]] == [("approved", "cli --yes")]
    assert re.match(r"\d{4}-\d\d-\d\dT", shown["approvals"][0]["at"])

    _, out, _ = cli("show", plan_id)
    assert "deleted" in out
    assert "approved by" in out and "via cli --yes" in out
    assert "items: 4 deleted" in out


def test_history_json(cli, ci_images):
    plan_id = cli.json("plan")["plan_id"]
    cli("apply", plan_id, "--yes")

    events = cli.json("history")

    names = [e["event"] for e in events]
    assert names[0] == "apply.finished"  # newest first
    assert names[-1] == "plan.created"
    assert names.count("item.deleted") == 4
    assert "plan.approved" in names
    assert all(e["plan_id"] == plan_id for e in events)
    assert cli.json("history", "--plan", plan_id, "--limit", "1") == events[:1]

    _, out, _ = cli("history")
    assert "plan.created" in out and "item.deleted" in out


# -- state prune (plan retention) ------------------------------------------------------


def plant_plan(state_path: Path, plan_id: str, status: str, *, days_old: float) -> None:
    """A plan stored ``days_old`` days ago and last changed then, with its creation event."""
    created = datetime.now(UTC) - timedelta(days=days_old)
    with State(state_path) as state:
        state.plans.save(make_plan(plan_id, created_at=created, registry="local", policy="ci"))
        state.audit_log.record("plan.created", registry="local", plan_id=plan_id, at=created)
        state.db.conn.execute(
            "UPDATE plans SET status = ?, updated_at = created_at WHERE id = ?",
            (status, plan_id),
        )
        state.db.conn.commit()


def stored_ids(state_path: Path) -> set[str]:
    with State(state_path) as state:
        return {row[0] for row in state.db.execute("SELECT id FROM plans").fetchall()}


def test_state_prune_dry_run_then_prune(cli, ci_images):
    fresh = cli.json("plan")["plan_id"]
    for plan_id, status in [("0ld0done", "done"), ("0ld0appr", "approved"), ("0ld0fail", "failed")]:
        plant_plan(cli.state, plan_id, status, days_old=200)

    dry = cli.json("state", "prune", "--dry-run")
    assert (dry["dry_run"], dry["plans"], dry["plan_ids"], dry["kept"]) == (
        True,
        1,
        ["0ld0done"],
        2,
    )
    assert dry["older_than"] == "90d" and dry["vacuum"] is None
    _, out, _ = cli("state", "prune", "--dry-run")
    assert out.startswith("would remove 1 plan older than 90d (1 done): 2 items, 0 approvals,")
    assert "kept 2 older plans: approved, applying and failed plans (work left)" in out
    assert stored_ids(cli.state) == {fresh, "0ld0done", "0ld0appr", "0ld0fail"}

    _, out, _ = cli("state", "prune")
    assert out.startswith("removed 1 plan older than 90d (1 done): 2 items")
    assert "pass --vacuum to shrink the file now" in out
    assert stored_ids(cli.state) == {fresh, "0ld0appr", "0ld0fail"}

    # The removed plan's id says what happened to it; its events remain.
    code, out, err = cli("show", "0ld0done", ok=False)
    assert code == 2 and out == ""
    assert re.fullmatch(
        r"error: plan 0ld0done was removed from the state DB by plan retention on "
        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC: .*`regprune history --plan 0ld0done`\n",
        err,
    ), err
    assert [e["event"] for e in cli.json("history", "--plan", "0ld0d")] == ["plan.created"]
    assert cli.json("show", "0ld0fail")["status"] == "failed"
    pruned = cli.json("history", "--limit", "1")[0]
    assert pruned["event"] == "state.pruned"
    assert pruned["details"]["plan_ids"] == ["0ld0done"]
    _, out, _ = cli("history", "--limit", "1")
    assert "state.pruned" in out and "removed 1 plan(s)" in out  # the table wraps the rest

    # --older-than overrides the retention, and never reaches unfinished plans.
    result = cli.json("state", "prune", "--older-than", "0s")
    assert (result["older_than"], result["plan_ids"], result["kept"]) == ("0s", [fresh], 2)
    assert stored_ids(cli.state) == {"0ld0appr", "0ld0fail"}


def test_plan_applies_the_retention_after_storing_a_plan(cli, ci_images):
    plant_plan(cli.state, "0ld0done", "done", days_old=91)
    plant_plan(cli.state, "0ld0pend", "pending", days_old=91)
    plant_plan(cli.state, "0ld0appr", "approved", days_old=91)
    plant_plan(cli.state, "y0ung000", "done", days_old=89)

    new = cli.json("plan")["plan_id"]

    assert stored_ids(cli.state) == {new, "0ld0appr", "y0ung000"}
    pruned = next(e for e in cli.json("history") if e["event"] == "state.pruned")
    assert pruned["details"]["trigger"] == f"after plan {new}"
    assert sorted(pruned["details"]["plan_ids"]) == ["0ld0done", "0ld0pend"]

    # A plan that removes nothing leaves no event behind.
    cli.json("plan")
    assert [e["event"] for e in cli.json("history")].count("state.pruned") == 1


def test_plan_retention_from_the_config_and_never(cli, ci_images):
    config = cli.config.read_text()
    cli.config.write_text(config + '\n[state]\nplan_retention = "30d"\n')
    plant_plan(cli.state, "0ld0done", "done", days_old=31)
    cli.json("plan")
    assert "0ld0done" not in stored_ids(cli.state)

    cli.config.write_text(config + '\n[state]\nplan_retention = "never"\n')
    plant_plan(cli.state, "0ld1done", "done", days_old=3000)
    new = cli.json("plan")["plan_id"]
    assert stored_ids(cli.state) >= {"0ld1done", new}
    _, out, _ = cli("state", "prune")
    assert 'plan retention is off ([state] plan_retention = "never")' in out
    assert cli.json("state", "prune")["plans"] == 0
    assert cli.json("state", "prune", "--older-than", "30d")["plan_ids"] == ["0ld1done"]


def test_state_prune_vacuum(capsys, tmp_path):
    cli = Cli(capsys, tmp_path)  # no config file: the default retention, 90d
    for n in range(5):
        plant_plan(cli.state, f"0ld{n}done", "done", days_old=100)

    with State(cli.state) as holder, holder.locks.hold("local", purpose="apply of plan 1a2b3c4d"):
        code, _, err = cli("state", "prune", "--vacuum", ok=False)
        assert code == 1
        assert err.startswith("error: not vacuuming the state DB while registry 'local' is busy")
        assert len(stored_ids(cli.state)) == 5  # refused before anything was removed

    result = cli.json("state", "prune", "--vacuum")
    assert result["plans"] == 5
    assert result["vacuum"]["bytes_after"] <= result["vacuum"]["bytes_before"]
    _, out, _ = cli("state", "prune", "--vacuum")
    assert "no plans older than 90d to remove" in out
    assert re.search(r"^vacuumed the state DB: [\d.]+ \w+ -> [\d.]+ \w+$", out, re.M), out
    events = [e["event"] for e in cli.json("history")]
    assert events[:4] == ["state.vacuumed", "state.pruned", "state.vacuumed", "state.pruned"]


@pytest.mark.parametrize(
    ("argv", "config", "expected"),
    [
        (["--older-than", "soon"], None, "error: --older-than: invalid duration 'soon'"),
        (["--older-than", "-3d"], None, "error: --older-than: invalid duration '-3d'"),
        ([], 'plan_retention = "0d"', "state.plan_retention: must be longer than 0"),
        ([], 'plan_retention = "3 months"', "state.plan_retention: invalid duration"),
        ([], 'plan_retentoin = "30d"', "state.plan_retentoin: unknown key"),
    ],
)
def test_state_prune_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, config, expected):
    cli = Cli(capsys, tmp_path)
    plant_plan(cli.state, "0ld0done", "done", days_old=100)
    if config is not None:
        cli.config = tmp_path / "regprune.toml"
        cli.config.write_text(f"[state]\n{config}\n")

    code, out, err = cli("state", "prune", *argv, ok=False)

    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert expected in err, err
    assert stored_ids(cli.state) == {"0ld0done"}  # nothing changed


# -- run and gc ----------------------------------------------------------------------


def test_run_yes_gc_json(cli, ci_images, registry_server):
    before = registry_server.disk_usage()

    report = cli.json("run", "--yes", "--gc")

    [entry] = report["plans"]
    assert entry["policy"] == "ci"
    assert len(entry["apply"]["deleted"]) == 4
    [gc] = report["gc"]
    assert gc["ok"] and gc["registry"] == "local" and not gc["dry_run"]
    assert gc["bytes_freed"] > 0
    assert registry_server.disk_usage() < before


def test_gc_dry_run(cli, ci_images, registry_server):
    before = registry_server.disk_usage()

    result = cli.json("gc", "--dry-run")
    assert result["dry_run"] and result["ok"]
    assert "--dry-run" in result["command"]

    _, out, _ = cli("gc", "--dry-run")
    assert "local: dry run ok" in out
    assert registry_server.disk_usage() == before
    events = [e["event"] for e in cli.json("history")]
    assert events.count("gc.dry_run") == 2


# -- plugins, unlock, verbose, help ----------------------------------------------------


def test_plugins_json(cli):
    data = cli.json("plugins")

    by_name = {row["name"]: row for row in data["plugins"]}
    assert by_name["regprune.plugins.age"]["builtin"]
    assert "register_selectors" in by_name["regprune.plugins.age"]["hooks"]
    assert "collect_garbage" in by_name["regprune.plugins.gc_command"]["hooks"]
    assert {"age", "count", "branch"} <= set(data["registered"]["selectors"])
    assert {"cli", "auto", "slack"} <= set(data["registered"]["approvers"])

    _, out, _ = cli("plugins")
    assert "regprune.plugins.age" in out and "selectors: " in out


def test_unlock_removes_a_lock_left_behind(cli, ci_images, registry_server):
    plan_id = cli.json("plan")["plan_id"]
    name = lock_name(registry_server.url)  # locks are named by registry identity
    assert name == f"http://loopback:{registry_server.port}"
    holder = State(cli.state)
    try:
        with holder.locks.hold(name, purpose="an apply on another machine"):
            code, _, err = cli("apply", plan_id, "--yes", ok=False)
            assert code == 1
            assert err.startswith(f"error: registry '{name}' is busy")
            assert f"`regprune unlock {name}`" in err
            assert len(err.splitlines()) == 1

            _, out, _ = cli("unlock")
            assert f"{name}: an apply on another machine" in out

            # The registry's config name works as well as the lock name shown.
            _, out, _ = cli("unlock", "local")
            assert out.strip() == f"removed the lock of registry 'local ({name})'"
            _, out, _ = cli("unlock", "local")
            assert out.strip() == f"registry 'local ({name})' was not locked"

        for spelling in (name, registry_server.url.replace("127.0.0.1", "LOCALHOST") + "/"):
            with holder.locks.hold(name, purpose="an apply on another machine"):
                _, out, _ = cli("unlock", spelling)
                assert out.strip().startswith("removed the lock of registry")
        cli("apply", plan_id, "--yes")
    finally:
        holder.close()
    _, out, _ = cli("unlock")
    assert out.strip() == "no locks"


def test_verbose_reports_request_counts(cli, ci_images):
    _, _, err = cli("--verbose", "plan", "--json")
    match = re.search(r"^local: (\d+) HTTP requests \(GET (\d+)\)$", err, re.M)
    assert match, err
    assert int(match.group(1)) == int(match.group(2)) > 0


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["ls"],
        ["plan"],
        ["show"],
        ["apply"],
        ["run"],
        ["gc"],
        ["history"],
        ["plugins"],
        ["unlock"],
        ["state", "prune"],
    ],
)
def test_help(capsys, tmp_path, command):
    code, out, err = Cli(capsys, tmp_path)(*command, "--help")
    assert code == 0 and err == ""
    assert out.startswith("Usage: regprune")
    # Every option has a help text and a readable placeholder, not a Python type.
    assert "<str>" not in out.split("Options:")[1]
    assert "list[str]" not in out
    options = out.split("Options:")[1].split("Commands:")[0]
    for line in options.splitlines():
        if line.lstrip().startswith("-"):
            assert re.search(r"\s{2,}\S", line.strip()), f"option without help: {line}"


def test_top_level_help_lists_every_command_with_a_summary(capsys, tmp_path):
    _, out, _ = Cli(capsys, tmp_path)("--help")
    commands = out.split("Commands:")[1]
    for name in (
        "ls", "plan", "show", "apply", "run", "gc", "history", "plugins", "unlock", "state",
    ):  # fmt: skip
        line = next(line for line in commands.splitlines() if line.split()[:1] == [name])
        assert not line.rstrip().endswith("..."), line  # summaries are whole sentences
    assert "Exit codes: 0 success, 1 failure, 2 bad usage or config." in out


def test_no_arguments_shows_help(capsys):
    code = run([])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Usage: regprune" in out + err
    assert "Commands:" in out + err


def test_version(capsys, tmp_path):
    from regprune import __version__

    _, out, _ = Cli(capsys, tmp_path)("--version")
    assert out.strip() == f"regprune {__version__}"


def test_cancel_moves_a_failed_plan_out_of_reach_of_apply(tmp_path, registry_server, pusher):
    from regprune.cli import run as run_cli

    pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    state = str(tmp_path / "cancel.db")
    base = ["--state", state]
    quick = ["plan", "--registry", registry_server.url, "--repo", "ci/*", "--older-than", "7d"]
    assert run_cli([*base, *quick]) == 0
    from regprune.state import State

    with State(state) as db:
        plan = db.plans.find(limit=1)[0]
        assert db.plans.set_status(plan.id, "failed", expected=("pending",))

    assert run_cli([*base, "cancel", plan.id]) == 0
    assert run_cli([*base, "apply", plan.id, "--yes"]) == 2
    assert pusher.resolve("ci/app", "build-1") is not None
    assert run_cli([*base, "cancel", plan.id]) == 2  # already cancelled
