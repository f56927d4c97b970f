"""``regprune plans``: stored plans, newest first, with status, age and counts, through
the real CLI against a real registry (plans made, applied and skipped for real)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from regprune.cli import run
from regprune.cli.tsv import PLAN_LIST_COLUMNS
from regprune.testing import days_ago


@pytest.fixture(autouse=True)
def _isolated(isolated_cli: None) -> None:
    """No config or state from the environment."""


@pytest.fixture
def regprune(capsys, tmp_path):
    state = tmp_path / "state.db"

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(["--state", str(state), *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return call


def _plan_id(out: str) -> str:
    return json.loads(out)["plan_id"]


def test_plans_lists_status_age_and_outcomes_newest_first(regprune, registry_server, pusher):
    quick = ["--registry", registry_server.url, "--repo", "ci/*", "--older-than", "7d"]
    first = pusher.push_image("ci/app", ["old-1"], created=days_ago(30))
    pusher.push_image("ci/app", ["old-2"], created=days_ago(30))
    pusher.push_image("ci/app", ["new"])
    code, out, err = regprune("plan", *quick, "--json")
    assert code == 0, err
    applied = _plan_id(out)
    pusher.tag("ci/app", first.digest, "hotfix")  # after planning: apply skips it
    code, _, err = regprune("apply", applied, "--yes")
    assert code == 0, err
    code, out, err = regprune("plan", *quick, "--json")
    assert code == 0, err
    pending = _plan_id(out)

    code, out, err = regprune("plans", "--json")

    assert code == 0, err
    rows = json.loads(out)
    assert [row["plan_id"] for row in rows] == [pending, applied]
    newest, oldest = rows
    assert newest["status"] == "pending"
    assert newest["policy"] == "quick"
    assert newest["registry"] == registry_server.url
    assert newest["summary"]["images"] == 1  # old-1, now also tagged hotfix
    assert newest["items"]["pending"] == 1
    assert oldest["status"] == "done"
    assert oldest["summary"]["images"] == 2
    assert oldest["items"]["deleted"] == 1
    assert oldest["items"]["skipped"] == 1
    assert oldest["summary"]["bytes"] > 0
    assert oldest["created_at"] < newest["created_at"]

    code, out, _ = regprune("plans")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "plan",
        "policy",
        "registry",
        "status",
        "age",
        "delete",
        "del/skip/fail",
        "untag",
        "bytes",
    ]
    # To a pipe a row is one line, never folded or padded (docs/cli.md#output).
    assert all(line == line.rstrip() for line in lines)
    rows_text = [line for line in lines if line.startswith((pending, applied))]
    assert [line.split()[0] for line in rows_text] == [pending, applied]
    done = rows_text[1].split()
    assert done[1] == "quick"
    assert done[3:8] == ["done", done[4], "2", "1/1/0", "-"]  # delete, outcomes, untag
    assert done[8].startswith("~")  # an estimate: no storage configured

    # For scripts: one tab-separated row per plan, the JSON's numbers.
    code, out, err = regprune("plans", "--format", "tsv")
    assert code == 0, err
    parsed = list(csv.DictReader(io.StringIO(out), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert list(parsed[0]) == list(PLAN_LIST_COLUMNS)
    assert [row["plan_id"] for row in parsed] == [pending, applied]
    tsv_done = parsed[1]
    assert (tsv_done["status"], tsv_done["images"], tsv_done["bytes_exact"]) == (
        "done",
        "2",
        "false",
    )
    assert (tsv_done["deleted"], tsv_done["skipped"], tsv_done["failed"]) == ("1", "1", "0")
    assert tsv_done["bytes"] == str(oldest["summary"]["bytes"])
    assert tsv_done["created_at"] == oldest["created_at"]
    assert parsed[0]["pending"] == "1"


def test_plans_filters_by_status_policy_and_limit(regprune, registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["old"], created=days_ago(30))
    quick = ["--registry", registry_server.url, "--repo", "ci/app", "--older-than", "7d"]
    ids = []
    for _ in range(3):
        code, out, err = regprune("plan", *quick, "--json")
        assert code == 0, err
        ids.append(_plan_id(out))
    code, _, err = regprune("cancel", ids[0])
    assert code == 0, err

    def listed(*flags: str) -> list[str]:
        code, out, err = regprune("plans", "--json", *flags)
        assert code == 0, err
        return [row["plan_id"] for row in json.loads(out)]

    assert listed() == ids[::-1]
    assert listed("--status", "cancelled") == [ids[0]]
    assert listed("--status", "pending") == [ids[2], ids[1]]
    assert listed("--status", "pending", "--status", "cancelled") == ids[::-1]
    assert listed("--limit", "1") == [ids[2]]
    assert listed("--policy", "quick", "-n", "2") == [ids[2], ids[1]]
    assert listed("--policy", "nightly") == []
    assert listed("--registry", registry_server.url, "--status", "done") == []

    code, out, err = regprune("plans", "--status", "finished")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --status 'finished': not a plan status")

    code, out, _ = regprune("plans", "--policy", "nightly")
    assert (code, out) == (0, "no plans\n")
    assert Path(tmp_path / "state.db").exists()
