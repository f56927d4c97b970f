"""The CLI as a person at an 80-column terminal sees it, and as a script reading a pipe gets it.

- The approval question of ``apply`` and ``run`` comes before anything says
  "deleting", whole on an 80-column screen (a real pty, read through a VT100
  emulator), with sizes in kB; ``n`` rejects and deletes nothing, ``y`` deletes.
- Scans draw a progress bar (repositories, tags) on a terminal and nothing when
  stderr is a pipe; the scanner reports every repository and tag to its progress.
- Output to a pipe is never folded or padded: one line per table row, whatever
  ``COLUMNS`` says, no trailing spaces, no ANSI codes; ``--format tsv`` parses.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from regprune import scan
from regprune.cli.output import TrimmedLines
from regprune.cli.tsv import EVENT_COLUMNS, IMAGE_COLUMNS, PLAN_COLUMNS
from regprune.formatting import human_bytes, short
from regprune.testing import ImagePusher, RegistryServer
from regprune.testing.plans import make_engine
from tests.storage_helpers import storage_options
from tests.terminal import Terminal, cli_env, regprune_command

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
REPOSITORY = "platform-team/payments-service-with-a-long-name"
LONG_TAGS = [
    [f"feature-{n}-refactor-the-settlement-reconciliation-batch-job", f"sha-{n:040d}"]
    for n in range(3)
]
# A keep rule whose reason is long: the kept image's row must still be one line.
LONG_KEEP = r"^release-candidate-for-the-quarterly-settlement-window-\d+$"


def run_cli(
    home: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The real CLI with stdout and stderr to pipes."""
    return subprocess.run(
        regprune_command("--state", str(home / "state.db"), *argv),
        capture_output=True,
        text=True,
        cwd=home,
        env=env or cli_env(home),
        timeout=120,
        check=False,
    )


def push_long(pusher: ImagePusher) -> None:
    for tags in LONG_TAGS:
        pusher.push_image(REPOSITORY, tags)
    pusher.push_image(REPOSITORY, ["release-candidate-for-the-quarterly-settlement-window-7"])


def quick(url: str, *extra: str) -> list[str]:
    return ["--registry", url, "--repo", "platform-team/*", "--keep", "0", *extra]


def tags_of(server: RegistryServer, repository: str) -> list[str]:
    answer = httpx.get(f"{server.url}/v2/{repository}/tags/list", timeout=10).json()
    return sorted(answer.get("tags") or [])


def question_of(plan: dict[str, Any]) -> str:
    summary = plan["summary"]
    return (
        f"Plan {plan['plan_id']} ({plan['policy']} on {plan['registry']}) deletes "
        f"{summary['images']} image(s), {summary['manifests']} manifest(s), {summary['tags']} "
        f"tag(s), about {human_bytes(summary['bytes'])}. Apply it? [y/N]:"
    )


def screen_text(terminal: Terminal) -> str:
    """What the screen shows, its lines joined as one text (the question may span several)."""
    return " ".join(line for line in terminal.screen() if line)


# -- the approval question --------------------------------------------------------------


@pytest.mark.parametrize("answer", ["n", "y"])
def test_apply_asks_the_whole_question_before_deleting(
    answer: str, registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    push_long(pusher)
    planned = run_cli(tmp_path, "plan", *quick(registry_server.url, "--json"))
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["summary"]["images"] == 4

    terminal = Terminal(["--state", str(tmp_path / "state.db"), "apply", plan["plan_id"]], tmp_path)
    try:
        before = terminal.expect("[y/N]:")
        question = question_of(plan)
        assert len(question) > 80  # the case that was cut off ("… Apply i")
        assert "deleting" not in before and "bytes" not in before
        assert " kB" in before
        # Folded by regprune at word boundaries: no line reaches the terminal's edge.
        assert all(len(line) < 80 for line in ANSI.sub("", before).splitlines())
        assert question in screen_text(terminal)
        terminal.send(answer + "\n")
        code = terminal.wait()
    finally:
        terminal.kill()

    if answer == "n":
        assert code == 1
        assert "deleting" not in terminal.text()
        assert f"Plan {plan['plan_id']}: rejected" in screen_text(terminal)
        assert len(tags_of(registry_server, REPOSITORY)) == 7
    else:
        assert code == 0, terminal.text()
        assert "deleted 4" in screen_text(terminal)
        assert tags_of(registry_server, REPOSITORY) == []


def test_run_asks_before_its_deleting_bar(
    registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    push_long(pusher)
    terminal = Terminal(
        ["--state", str(tmp_path / "state.db"), "run", *quick(registry_server.url)], tmp_path
    )
    try:
        before = terminal.expect("[y/N]:")
        assert "deleting" not in before
        assert "repositories" in ANSI.sub("", before)  # the scan's bar came and went
        assert "about " in before and " kB. Apply it?" in ANSI.sub("", before).replace("\r\n", " ")
        terminal.send("y\n")
        assert terminal.wait() == 0, terminal.text()
    finally:
        terminal.kill()
    assert "deleted 4" in screen_text(terminal)
    assert tags_of(registry_server, REPOSITORY) == []


# -- scan progress ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "plan"])
def test_scan_progress_on_a_terminal_only(
    command: str, registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    push_long(pusher)
    argv = (
        ["ls", "--registry", registry_server.url]
        if command == "ls"
        else ["plan", *quick(registry_server.url)]
    )
    terminal = Terminal(["--state", str(tmp_path / "state.db"), *argv], tmp_path, rows=100)
    try:
        assert terminal.wait() == 0, terminal.text()
    finally:
        terminal.kill()
    drawn = ANSI.sub("", terminal.text())
    assert re.search(r"repositories\s+━+ 1/1", drawn), drawn
    assert re.search(r"tags\s+━+ 7/7", drawn), drawn
    # Transient: once the scan is over the output takes its place on the screen.
    shown = terminal.screen()
    assert not any(re.match(r"(repositories|tags) +━", line) for line in shown), shown
    assert any(line.split()[:2] == ["tags", "digest"] for line in shown if line), shown

    piped = run_cli(tmp_path, *argv)
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert "repositories" not in piped.stdout and "\x1b" not in piped.stdout


class Recorder:
    """A ScanProgress that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def started(self, repositories: int) -> None:
        self.calls.append(("started", repositories))

    def listed(self, repository: str, tags: int) -> None:
        self.calls.append(("listed", (repository, tags)))

    def resolved(self, tags: int) -> None:
        self.calls.append(("resolved", tags))

    def reading(self, manifests: int) -> None:
        self.calls.append(("reading", manifests))

    def read(self, manifests: int) -> None:
        self.calls.append(("read", manifests))

    def finished(self) -> None:
        self.calls.append(("finished", None))

    def total(self, name: str) -> int:
        return sum(value for call, value in self.calls if call == name)


@pytest.mark.parametrize("source", ["api", "storage"])
def test_scanner_reports_every_repository_and_tag(
    source: str,
    registry_server: RegistryServer,
    pusher: ImagePusher,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for index in range(5):
        pusher.push_image(f"ci/app-{index % 2}", [f"b-{index}", f"c-{index}"])
    pusher.push_index("ci/multi", ["v1"], platforms=["linux/amd64", "linux/arm64"])
    monkeypatch.setattr(scan, "PROGRESS_SLICE", 3)  # several slices of the batched reads
    options = storage_options(registry_server) if source == "storage" else None
    unwatched = make_engine(registry_server.url, state_dir=tmp_path / "a", registry_options=options)
    watched = make_engine(registry_server.url, state_dir=tmp_path / "b", registry_options=options)
    try:
        recorder = Recorder()
        watched.scan_progress = recorder
        scans = watched.list_images("test", ["*"])
        expected = unwatched.list_images("test", ["*"])
        again = Recorder()
        watched.scan_progress = again
        watched.list_images("test", ["*"])
    finally:
        for engine in (watched, unwatched):
            engine.close()
            engine.state.close()

    # Watching changes nothing of what the scan finds.
    assert [(s.repository, s.tags, [i.digest for i in s.images]) for s in scans] == [
        (s.repository, s.tags, [i.digest for i in s.images]) for s in expected
    ]
    assert recorder.calls[0] == ("started", 3) and recorder.calls[-1] == ("finished", None)
    assert sorted(value for call, value in recorder.calls if call == "listed") == [
        ("ci/app-0", 6),
        ("ci/app-1", 4),
        ("ci/multi", 1),
    ]
    assert recorder.total("resolved") == 11
    # Cold: every new digest's manifest or config is read, and each read is reported.
    assert recorder.total("reading") == recorder.total("read") > 0
    # Warm (the digest cache knows them all): tags only, nothing new to read.
    assert again.total("resolved") == 11 and again.total("read") == 0


# -- output to a pipe -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "plan"])
def test_pipe_output_is_one_line_per_row(
    command: str, registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    push_long(pusher)
    argv = (
        ["ls", "--registry", registry_server.url]
        if command == "ls"
        else ["plan", *quick(registry_server.url, "--keep-tag", LONG_KEEP)]
    )
    # COLUMNS=80 is what folded it before: a pipe has no width.
    result = run_cli(tmp_path, *argv, env=cli_env(tmp_path, {"COLUMNS": "80"}))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout
    assert all(line == line.rstrip() for line in lines)
    images = json.loads(run_cli(tmp_path, "ls", "--registry", registry_server.url, "--json").stdout)
    assert len(images) == 4
    for image in images:
        rows = [line for line in lines if short(image["digest"]) in line]
        assert len(rows) == 1, rows  # each image's row is one line ...
        row = rows[0]
        assert ", ".join(image["tags"]) in row  # ... with every tag whole on it
        if command == "ls" or "release-candidate" not in row:  # kept rows show no size
            assert human_bytes(image["size"]) in row
    if command == "plan":
        kept = next(line for line in lines if "release-candidate" in line)
        # The long reason, whole, on the kept image's one line.
        assert f"keep_tags: tag '{kept.split()[0]}' matches {LONG_KEEP}; " in kept
        assert max(len(line) for line in lines) > 160  # far past the 80 columns it had


def test_format_tsv_parses(
    registry_server: RegistryServer, pusher: ImagePusher, tmp_path: Path
) -> None:
    push_long(pusher)
    listed = run_cli(tmp_path, "ls", "--registry", registry_server.url, "--format", "tsv")
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.reader(io.StringIO(listed.stdout), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert tuple(rows[0]) == IMAGE_COLUMNS
    images = json.loads(run_cli(tmp_path, "ls", "--registry", registry_server.url, "--json").stdout)
    assert [dict(zip(IMAGE_COLUMNS, row, strict=True)) for row in rows[1:]] == [
        {
            "repository": image["repository"],
            "digest": image["digest"],
            "tags": ",".join(image["tags"]),
            "type": "image",
            "created": image["created"],
            "size": str(image["size"]),
            "last_pull": "",
        }
        for image in images
    ]

    planned = run_cli(
        tmp_path, "plan", *quick(registry_server.url, "--keep-tag", LONG_KEEP, "--format", "tsv")
    )
    assert planned.returncode == 0, planned.stderr
    assert "\x1b" not in planned.stdout
    rows = list(csv.reader(io.StringIO(planned.stdout), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert tuple(rows[0]) == PLAN_COLUMNS
    items = [dict(zip(PLAN_COLUMNS, row, strict=True)) for row in rows[1:]]
    plan = json.loads(run_cli(tmp_path, "show", items[0]["plan_id"], "--json").stdout)
    assert [(i["action"], i["digest"], i["tags"], i["reasons"]) for i in items] == [
        *(
            ("delete", d["digest"], ",".join(d["tags"]), "; ".join(d["reasons"]))
            for d in plan["delete"]
        ),
        *(
            ("keep", k["digest"], ",".join(k["tags"]), "; ".join(k["reasons"]))
            for k in plan["keep"]
        ),
    ]
    assert [int(i["size"]) for i in items if i["action"] == "delete"] == [
        d["size"] for d in plan["delete"]
    ]
    assert len(plan["delete"]) == 3 and len(plan["keep"]) == 1

    history = run_cli(tmp_path, "history", "--format", "tsv")
    rows = list(csv.reader(io.StringIO(history.stdout), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert tuple(rows[0]) == EVENT_COLUMNS
    assert [row[2] for row in rows[1:]] == ["plan.created"]
    assert rows[1][3] == plan["plan_id"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ls", "--format", "csv"], "error: --format 'csv' is not one of table, tsv, json\n"),
        (
            ["history", "--json", "--format", "tsv"],
            "error: --json and --format tsv disagree: pass one of them\n",
        ),
    ],
)
def test_bad_format_is_one_line_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli(tmp_path, *argv)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_json_and_format_json_agree(tmp_path: Path) -> None:
    both = run_cli(tmp_path, "history", "--json", "--format", "json")
    one = run_cli(tmp_path, "history", "--format", "JSON")
    assert both.returncode == one.returncode == 0
    assert json.loads(both.stdout) == json.loads(one.stdout) == []


def test_trimmed_lines_hold_spaces_across_writes(capsys: pytest.CaptureFixture[str]) -> None:
    out = TrimmedLines()
    for piece in ["a  ", "  b   ", "\n", "c ", " \nd", "   "]:
        out.write(piece)
    out.flush()
    assert capsys.readouterr().out == "a    b\nc\nd"
