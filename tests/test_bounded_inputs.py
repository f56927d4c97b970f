"""Files and command output the config names are read with a limit, and only from
regular files: ``/dev/zero``, a FIFO or ``yes`` never make regprune
eat memory or hang.

The hostile cases run regprune in a child process with its address space capped
and a short timeout, so that a regression fails the test (MemoryError, a timeout)
instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regprune import bounded_read
from regprune.config import RegistrySettings
from regprune.errors import ConfigError, UsageError
from regprune.plugins import branch, in_use
from regprune.registry import credentials_for
from regprune.testing import days_ago

CHILD_MEMORY = 1024 * 1024 * 1024  # the child's address space: plenty for regprune itself
CHILD_TIMEOUT = 5.0


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def run_capped(*argv: str, cwd: Path, module: bool = True) -> subprocess.CompletedProcess[str]:
    """``regprune ARGV`` (``python ARGV`` without ``module``) in a child with 1 GiB of
    address space; fails the test on a hang."""
    env = {**os.environ, "NO_COLOR": "1", "HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd)}
    env.pop("REGPRUNE_CONFIG", None)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, *(["-m", "regprune"] if module else []), *argv],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=CHILD_TIMEOUT,
            preexec_fn=_cap_memory,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"regprune {' '.join(argv)} still ran after {CHILD_TIMEOUT:g}s")
    assert time.monotonic() - started < CHILD_TIMEOUT
    return done


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _target(kind: str, fifo: Path) -> str:
    return {"zero": "/dev/zero", "fifo": str(fifo), "dir": str(fifo.parent)}[kind]


KIND = {"zero": "a character device", "fifo": "a FIFO", "dir": "a directory"}

POLICY = """\
[registry.local]
url = "{url}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
selectors = [{selector}]
"""


def _plan_config(tmp_path: Path, url: str, selector: str) -> Path:
    config = tmp_path / "regprune.toml"
    config.write_text(POLICY.format(url=url, selector=selector))
    return config


# --- the policy's list files and commands ----------------------------------------------

PLUGINS = {
    "branches_file": ("branch.BranchSelector", "branches_file", "live_branches"),
    "branches_command": ("branch.BranchSelector", "branches_command", "live_branches"),
    "in_use file": ("in_use.InUseProtector", "file", "references"),
    "in_use command": ("in_use.InUseProtector", "command", "references"),
}


def plugin_error_in_child(plugin: str, value: object, cwd: Path) -> str:
    """The ValueError a built-in selector or keep rule reads ``value`` into, in a
    capped child process."""
    factory, option, method = PLUGINS[plugin]
    code = (
        "from regprune.plugins import branch, in_use\n"
        f"plugin = {factory}.from_options({{{option!r}: {value!r}}})\n"
        "try:\n"
        f"    plugin.{method}()\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    done = run_capped("-c", code, cwd=cwd, module=False)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("kind", ["zero", "fifo", "dir"])
@pytest.mark.parametrize("plugin", ["branches_file", "in_use file"])
def test_list_file_that_is_no_regular_file_is_refused_at_once(
    tmp_path: Path, fifo: Path, plugin: str, kind: str
) -> None:
    path = _target(kind, fifo)
    option = PLUGINS[plugin][1]
    assert plugin_error_in_child(plugin, path, tmp_path) == (
        f"{option}: {path} is not a regular file ({KIND[kind]}); point it at a file"
    )


@pytest.mark.parametrize("plugin", ["branches_command", "in_use command"])
def test_command_that_prints_for_ever_is_stopped(tmp_path: Path, plugin: str) -> None:
    option = PLUGINS[plugin][1]
    assert plugin_error_in_child(plugin, ["yes"], tmp_path) == (
        f"{option}: `yes` printed more than 16 MiB; stopped it"
    )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (
            '{ use = "branch", branches_file = "/dev/zero" }',
            "error: policy ci: branch: branches_file: /dev/zero is not a regular file "
            "(a character device); point it at a file\n",
        ),
        (
            '{ use = "branch", branches_command = ["yes"] }',
            "error: policy ci: branch: branches_command: `yes` printed more than 16 MiB; "
            "stopped it\n",
        ),
    ],
)
def test_plan_says_so_in_one_line_and_exits_2(
    tmp_path, registry_server, pusher, selector, expected
) -> None:
    pusher.push_image("ci/app", ["main-abc1234"], created=days_ago(3))
    config = _plan_config(tmp_path, registry_server.url, selector)
    done = run_capped(
        "--config", str(config), "--state", str(tmp_path / "s.db"), "plan", cwd=tmp_path
    )
    assert (done.returncode, done.stderr) == (2, expected)


def test_list_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "branches.txt"
    with listing.open("wb") as handle:
        handle.write(b"main\n")
        handle.truncate(bounded_read.LIST_LIMIT + 1)  # sparse: costs no disk
    for plugin, call in (
        (branch.BranchSelector.from_options({"branches_file": str(listing)}), "live_branches"),
        (in_use.InUseProtector.from_options({"file": str(listing)}), "references"),
    ):
        with pytest.raises(ValueError, match=r"is 16777217 bytes, over the 16 MiB limit"):
            getattr(plugin, call)()


def test_list_file_at_the_limit_and_command_output_under_it_are_read(tmp_path: Path) -> None:
    listing = tmp_path / "in-use.txt"
    listing.write_text("ci/app:v1\n" + " " * (bounded_read.LIST_LIMIT - 10 - 1) + "\n")
    assert listing.stat().st_size == bounded_read.LIST_LIMIT
    assert [
        r.text for r in in_use.InUseProtector.from_options({"file": str(listing)}).references()
    ] == ["ci/app:v1"]
    # 4 MB of output, and a lot on stderr that is not kept: still a success.
    script = "yes main | head -n 800000; yes noise | head -c 1000000 >&2"
    selector = branch.BranchSelector.from_options({"branches_command": ["sh", "-c", script]})
    assert selector.live_branches() == {"main"}


def test_command_output_just_over_the_limit_is_a_failure() -> None:
    size = bounded_read.COMMAND_OUTPUT_LIMIT + 1
    selector = branch.BranchSelector.from_options(
        {"branches_command": ["sh", "-c", f"yes main | head -c {size}"]}
    )
    with pytest.raises(
        ValueError, match=r"^branches_command: `sh -c .*` printed more than 16 MiB; stopped it$"
    ):
        selector.live_branches()


# --- docker_config and ca_file ---------------------------------------------------------

REGISTRY = """\
[registry.local]
url = "{url}"
{key} = "{path}"
"""


@pytest.mark.parametrize(
    ("key", "kind", "expected"),
    [
        (
            "docker_config",
            "zero",
            "docker config /dev/zero is not a regular file (a character device)",
        ),
        ("docker_config", "fifo", "docker config {path} is not a regular file (a FIFO)"),
        (
            "ca_file",
            "fifo",
            "ca_file {path} is not a regular file (a FIFO); point it at a PEM CA bundle",
        ),
        ("ca_file", "zero", "ca_file /dev/zero is not a regular file (a character device)"),
    ],
)
def test_registry_files_that_are_no_regular_files_are_refused(
    tmp_path, fifo, registry_server, key, kind, expected
) -> None:
    path = _target(kind, fifo)
    config = tmp_path / "regprune.toml"
    config.write_text(REGISTRY.format(url=registry_server.url, key=key, path=path))
    done = run_capped(
        "--config", str(config), "--state", str(tmp_path / "s.db"), "ls", cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert expected.format(path=path) in done.stderr
    assert "Traceback" not in done.stderr


def test_docker_config_over_the_limit_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {}, "pad": " " * bounded_read.DOCKER_CONFIG_LIMIT}))
    settings = RegistrySettings(url="http://127.0.0.1:5000", docker_config=str(config))
    with pytest.raises(ConfigError, match=r"over the 1 MiB limit; point docker_config"):
        credentials_for(settings)


def test_credential_helper_answer_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "docker-credential-flood"
    helper.write_text("#!/bin/sh\nhead -c 2000000 /dev/zero\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "flood"}))
    settings = RegistrySettings(url="http://127.0.0.1:5000", docker_config=str(config))
    with pytest.raises(UsageError, match=r"docker-credential-flood printed more than 1 MiB"):
        credentials_for(settings)
