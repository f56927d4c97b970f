"""Small things a new user trips over (issue 12), through the real command line:
``run``'s output, the gc hint, usage lines, and config files with several problems.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regprune.cli import run
from regprune.testing import days_ago

CONFIG = """\
[registry.local]
url = "{url}"

[registry.local.gc]
command = {gc_command}

[policy.ci]
registry = "local"
repositories = ["ci/*"]
selectors = [{{ use = "age", older_than = "14d" }}]
"""


@pytest.fixture(autouse=True)
def _isolated(isolated_cli: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config or state from the environment or the home directory; lines wide enough
    that each message stays on one line (wrapping is another item of issue 12)."""
    monkeypatch.setenv("COLUMNS", "250")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def config(tmp_path, registry_server, pusher) -> list[str]:
    """``--config … --state …`` for one policy over two old images and a new one."""
    for n in range(2):
        pusher.push_image("ci/app", [f"old-{n}"], created=days_ago(30 + n))
    pusher.push_image("ci/app", ["new"], created=days_ago(1))
    path = tmp_path / "regprune.toml"
    path.write_text(
        CONFIG.format(url=registry_server.url, gc_command=json.dumps(registry_server.gc_command()))
    )
    return ["--config", str(path), "--state", str(tmp_path / "state.db")]


# -- run: no "pending" right before the apply ------------------------------------------------


def flat(text: str) -> str:
    """Output with its line wrapping undone (wrapping to a pipe is another item of issue 12)."""
    return " ".join(text.split())


def test_run_says_how_the_plan_ended_not_that_it_is_pending(capsys, config) -> None:
    code, out, _ = cli(capsys, *config, "run", "--yes")

    text = flat(out)
    assert code == 0
    assert "pending" not in text
    summary = re.search(r"Plan (\w+) \(ci on local\): delete 2 image\(s\)[^.]*\.[^.]*\.", text)
    assert summary is not None, text
    assert "Status" not in summary.group(0)
    result = re.search(rf"Plan {summary.group(1)}: done; deleted 2, .*?\)\.", text)
    assert result is not None and result.start() > summary.end(), text
    assert result.group(0).endswith(
        "of manifests and blobs unreferenced (run gc to free the disk)."
    )


def test_run_with_gc_says_gc_runs_next(capsys, config) -> None:
    code, out, _ = cli(capsys, *config, "run", "--yes", "--gc")

    text = flat(out)
    assert code == 0 and "pending" not in text
    result = re.search(r": done; deleted 2, .*?\)\.", text)
    assert result is not None, text
    assert result.group(0).endswith("unreferenced (garbage collection runs next).")


def test_run_with_nothing_to_delete_says_so(capsys, tmp_path, registry_server, pusher) -> None:
    pusher.push_image("ci/app", ["new"], created=days_ago(1))
    argv = ["--state", str(tmp_path / "state.db"), "run", "--yes"]
    code, out, err = cli(
        capsys, *argv, "-r", registry_server.url, "--repo", "ci/*", "--older-than", "30d"
    )

    text = flat(out)
    assert code == 0, err
    assert re.search(
        r"delete 0 image\(s\)[^.]*; about 0 B to free after gc\. Nothing to apply\.", text
    ), text
    assert "pending" not in text and "run gc" not in text


def test_plan_alone_still_shows_the_status(capsys, config) -> None:
    code, out, _ = cli(capsys, *config, "plan")
    assert code == 0 and "Status: pending." in out


# -- the gc hint only after something was deleted --------------------------------------------


def answer_in_a_terminal(argv: list[str], answer: bytes) -> tuple[int, str]:
    """Run ``regprune ARGV`` with a pseudo-terminal as stdin and stdout, answer its
    question with ``answer``; (exit code, everything it wrote to the terminal)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "regprune", *argv],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(terminal)
    seen = b""
    asked = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not asked and b"?" in seen:
                os.write(controller, answer)
                asked = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=30)
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    assert asked, seen.decode(errors="replace")
    assert proc.stderr is not None
    return code, seen.decode(errors="replace") + proc.stderr.read().decode(errors="replace")


def test_a_rejected_plan_does_not_suggest_gc(capsys, config) -> None:
    code, out, _ = cli(capsys, *config, "plan", "--json")
    assert code == 0
    plan_id = json.loads(out)["plan_id"]

    code, shown = answer_in_a_terminal([*config, "apply", plan_id], b"n\n")

    assert code == 1, shown
    result = next(line for line in shown.splitlines() if f"Plan {plan_id}: rejected" in line)
    assert "gc" not in result and "unreferenced" not in result
    assert "deleted 0" in result


# -- usage lines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["apply"], "Usage: regprune apply [OPTIONS] PLAN_ID"),
        (["show"], "Usage: regprune show [OPTIONS] PLAN_ID"),
        (["cancel"], "Usage: regprune cancel [OPTIONS] PLAN_ID"),
        (["unlock"], "Usage: regprune unlock [OPTIONS] [REGISTRY]"),
        (["ls"], "Usage: regprune ls [OPTIONS] [REPOSITORY]"),
    ],
)
def test_usage_lines_name_arguments_plainly(capsys, command: list[str], usage: str) -> None:
    code, out, _ = cli(capsys, *command, "--help")
    assert code == 0
    assert out.splitlines()[0].strip() == usage
    assert "{" not in out.splitlines()[0]


def test_every_command_s_usage_line_is_free_of_braces(capsys) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    commands = re.findall(r"^  (\w+)\s{2,}", out.split("Commands:")[-1], re.MULTILINE)
    assert "apply" in commands and "bot" in commands
    for command in commands:
        _, help_text, _ = cli(capsys, command, "--help")
        assert "{" not in help_text.splitlines()[0], help_text.splitlines()[0]


def test_a_missing_argument_names_it_plainly(capsys) -> None:
    code, _, err = cli(capsys, "apply")
    assert code == 2
    assert err == "error: missing argument 'PLAN_ID' (see `regprune apply --help`)\n"


# -- config files with several problems: every one, one line each ----------------------------


def write(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "regprune.toml"
    path.write_text(text)
    return ["--config", str(path), "--state", str(tmp_path / "state.db")]


def error_lines(code: int, err: str, count: int) -> list[str]:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == count, err
    assert all(line.startswith("error: ") for line in lines), err
    assert "more problem" not in err and "unexpected" not in err
    return lines


def test_every_problem_of_the_document_is_its_own_line(capsys, tmp_path) -> None:
    argv = write(
        tmp_path,
        '[registry.local]\nurl = "ftp://x"\nconcurrency = 0\nretries = -1\n\n'
        '[policy.ci]\nregistry = "local"\nrepositories = ["ci/*"]\nkeep = 3\n'
        'selectors = [{ use = "age", older_than = "7d" }]\n',
    )
    code, _, err = cli(capsys, *argv, "plan")
    lines = error_lines(code, err, 4)
    source = argv[1]
    for line, key in zip(
        lines,
        [
            "registry.local.url",
            "registry.local.concurrency",
            "registry.local.retries",
            "policy.ci.keep",
        ],
        strict=True,
    ):
        assert line.startswith(f"error: {source}: {key}: "), line


def test_references_and_registry_types_are_all_listed(capsys, tmp_path) -> None:
    argv = write(
        tmp_path,
        '[registry.local]\nurl = "http://127.0.0.1:1"\nbogus = 1\n\n'
        '[registry.again]\nurl = "http://127.0.0.1:1/"\n\n'
        '[policy.ci]\nregistry = "nope"\nrepositories = ["ci/*"]\n'
        'selectors = [{ use = "age", older_than = "7d" }]\n',
    )
    code, _, err = cli(capsys, *argv, "plan")
    lines = error_lines(code, err, 3)
    assert (
        "registry.again.url: http://127.0.0.1:1 is the same registry as registry.local" in lines[0]
    )
    assert "policy.ci.registry: unknown registry 'nope'" in lines[1]
    assert "registry.local.bogus: unknown key for a registry of type 'distribution'" in lines[2]


def test_every_bad_plugin_of_a_policy_is_listed(capsys, tmp_path) -> None:
    argv = write(
        tmp_path,
        '[registry.local]\nurl = "http://127.0.0.1:1"\n\n'
        '[policy.ci]\nregistry = "local"\nrepositories = ["ci/*"]\napproval = "nope"\n'
        'selectors = [{ use = "age", older_than = "7q" }, { use = "nosuch" }]\n'
        'protectors = [{ use = "alsonot" }]\n',
    )
    code, _, err = cli(capsys, *argv, "plan")
    lines = error_lines(code, err, 4)
    assert "policy.ci.selectors.0: older_than: invalid duration '7q'" in lines[0]
    assert "policy.ci.selectors.1: unknown selector 'nosuch'" in lines[1]
    assert "policy.ci.protectors.0: unknown protector 'alsonot'" in lines[2]
    assert "policy.ci.approval: unknown approval 'nope'" in lines[3]


def test_one_problem_is_still_one_line(capsys, tmp_path) -> None:
    argv = write(tmp_path, '[registry.local]\nurl = "http://127.0.0.1:1"\nretries = -1\n')
    code, _, err = cli(capsys, *argv, "ls")
    (line,) = error_lines(code, err, 1)
    assert line.startswith(f"error: {argv[1]}: registry.local.retries: ")
