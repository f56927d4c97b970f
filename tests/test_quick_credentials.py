"""Quick-mode credentials, ``docker login`` style, against a real registry with
htpasswd auth: ``--username`` with ``--password-stdin`` (a real pipe, and a real
pseudo-terminal for the prompt), ``$REGPRUNE_PASSWORD``, and the one-line errors
(exit 2) for a missing, empty or wrong password.  No password flag exists."""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from regprune.cli import run
from regprune.testing import ImagePusher, days_ago

USER, PASSWORD = "ci", "s3cret wörds"  # a space and non-ASCII: read as one line, verbatim


@pytest.fixture(autouse=True)
def _isolated(isolated_cli: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials from this machine: an empty Docker config."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


@pytest.fixture
def auth_registry(registry_factory):
    server = registry_factory(htpasswd={USER: PASSWORD})
    with ImagePusher(server.url, auth=(USER, PASSWORD)) as pusher:
        old = pusher.push_image("ci/app", ["old"], created=days_ago(30))
        new = pusher.push_image("ci/app", ["new"])
        yield server, pusher, old, new


@pytest.fixture
def regprune(capsys, tmp_path):
    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(["--state", str(tmp_path / "state.db"), *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return call


def _subprocess_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGPRUNE_")}
    env.update(
        REGPRUNE_LOAD_PLUGINS="",
        DOCKER_CONFIG=str(tmp_path / "docker"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_STATE_HOME=str(tmp_path / "xdg-state"),
        COLUMNS="200",
    )
    return env


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert PASSWORD not in lines[0]
    return lines[0]


def test_password_from_a_real_pipe_plans_and_runs(auth_registry, tmp_path):
    server, pusher, old, new = auth_registry
    base = [sys.executable, "-m", "regprune", "--state", str(tmp_path / "state.db")]
    quick = ["--registry", server.url, "--repo", "ci/app", "--older-than", "7d"]
    login = ["--username", USER, "--password-stdin"]

    def regprune(*argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=_subprocess_env(tmp_path),
            cwd=tmp_path,
            timeout=120,
            check=False,
        )

    anonymous = regprune("plan", *quick, stdin="")
    assert anonymous.returncode == 2
    assert "--username with --password-stdin" in _one_error(anonymous.stderr)

    planned = regprune("plan", *quick, *login, "--json", stdin=f"{PASSWORD}\n")
    assert planned.returncode == 0, planned.stderr
    assert [item["digest"] for item in json.loads(planned.stdout)["delete"]] == [old.digest]

    # A quick-mode plan applied later: its registry is known by URL only.
    applied = regprune(
        "apply", json.loads(planned.stdout)["plan_id"], "--yes", *login, stdin=f"{PASSWORD}\r\n"
    )
    assert applied.returncode == 0, applied.stderr
    assert pusher.resolve("ci/app", "old") is None
    assert pusher.resolve("ci/app", "new") == new.digest

    again = pusher.push_image("ci/app", ["old-2"], created=days_ago(30))
    ran = regprune("run", *quick, *login, "--yes", stdin=PASSWORD)  # no newline at the end
    assert ran.returncode == 0, ran.stderr
    assert pusher.resolve("ci/app", "old-2") is None
    assert again.digest not in ran.stdout + ran.stderr  # the run printed summaries only
    assert PASSWORD not in ran.stdout + ran.stderr


def test_password_from_the_environment(auth_registry, regprune, monkeypatch):
    server, _, old, new = auth_registry
    monkeypatch.setenv("REGPRUNE_PASSWORD", PASSWORD)

    code, out, err = regprune("ls", "--registry", server.url, "--username", USER, "--json")

    assert code == 0, err
    assert sorted(image["digest"] for image in json.loads(out)) == sorted([old.digest, new.digest])

    # The user name may come from the environment too.
    monkeypatch.setenv("REGPRUNE_USERNAME", USER)
    code, out, err = regprune("ls", "--registry", server.url, "ci/app", "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 2


def test_password_errors_are_one_line_exit_2(auth_registry, regprune, monkeypatch):
    server, _, _, _ = auth_registry
    ls = ["ls", "--registry", server.url]

    code, _, err = regprune(*ls, "--password-stdin")
    assert code == 2
    assert _one_error(err) == "error: --password-stdin needs --username USER"

    code, _, err = regprune(*ls, "--username", USER)  # pytest's stdin is no terminal
    assert code == 2
    assert "no password; pipe it with --password-stdin or set REGPRUNE_PASSWORD" in _one_error(err)

    monkeypatch.setattr("sys.stdin", _Lines(""))
    code, _, err = regprune(*ls, "--username", USER, "--password-stdin")
    assert code == 2
    assert "--password-stdin read an empty password" in _one_error(err)

    monkeypatch.setattr("sys.stdin", _Lines("\n"))
    code, _, err = regprune(*ls, "--username", USER, "--password-stdin")
    assert code == 2
    assert "--password-stdin read an empty password" in _one_error(err)

    monkeypatch.setenv("REGPRUNE_PASSWORD", "")
    code, _, err = regprune(*ls, "--username", USER)
    assert code == 2
    assert "$REGPRUNE_PASSWORD is empty" in _one_error(err)

    monkeypatch.setenv("REGPRUNE_PASSWORD", "not-the-password")
    code, _, err = regprune(*ls, "--username", USER)
    assert code == 2
    line = _one_error(err)
    assert f"rejected the credentials for user '{USER}'" in line
    assert "not-the-password" not in line

    code, _, err = regprune("ls", "--password", PASSWORD)
    assert code == 2
    assert "no such option: --password" in _one_error(err)


def test_no_password_flag_with_a_config_policy(auth_registry, regprune, tmp_path, monkeypatch):
    server, _, _, _ = auth_registry
    config = tmp_path / "regprune.toml"
    config.write_text(
        f"""
[registry.local]
url = "{server.url}"

[policy.ci]
registry = "local"
repositories = ["ci/app"]
selectors = [{{ use = "age", older_than = "7d" }}]
"""
    )
    code, _, err = regprune("--config", str(config), "plan", "--username", USER)
    assert code == 2
    assert "go with quick mode's --registry" in _one_error(err)

    # By its config name, quick mode logs in to that registry with the flags' credentials.
    monkeypatch.setenv("REGPRUNE_PASSWORD", PASSWORD)
    code, out, err = regprune(
        "--config",
        str(config),
        "plan",
        "--registry",
        "local",
        "--repo",
        "ci/app",
        "--older-than",
        "7d",
        "--username",
        USER,
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["registry"] == "local"


class _Lines:
    """A standard input that is a pipe (no terminal) holding ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        line, _, self.text = self.text.partition("\n")
        return line + "\n" if _ or line else ""


def test_a_terminal_gets_a_prompt_without_echo(auth_registry, tmp_path):
    """``--password-stdin`` on a terminal prompts (getpass, no echo), in a real pty."""
    server, _, old, new = auth_registry
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "regprune",
            "--state",
            str(tmp_path / "state.db"),
            "ls",
            "--registry",
            server.url,
            "--username",
            USER,
            "--password-stdin",
            "--json",
        ],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=_subprocess_env(tmp_path),
        cwd=tmp_path,
        preexec_fn=controlling_terminal,  # the child gets its own terminal
    )
    os.close(slave)
    try:
        seen = _read_until(master, b"Password for ci at ")
        os.write(master, f"{PASSWORD}\n".encode())
        out, _ = process.communicate(timeout=60)
        seen += _drain(master)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert process.returncode == 0, seen
    assert PASSWORD.encode() not in seen  # not echoed
    assert sorted(image["digest"] for image in json.loads(out)) == sorted([old.digest, new.digest])


def _read_until(fd: int, marker: bytes, timeout: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no prompt: {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 4096)
    return seen


def _drain(fd: int) -> bytes:
    seen = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed its side
            break
        if not chunk:
            break
        seen += chunk
    return seen
