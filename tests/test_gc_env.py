"""The GC commands' environment: minimal by default, so regprune's secrets and the
``REGISTRY_*`` variables Distribution reads as config overrides never reach them.

Every test runs real processes that write the environment they got to a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from regprune.config import RegistrySettings
from regprune.gc_env import BASE_NAMES, gc_environment
from regprune.plugins.gc_command import collect_garbage

# What a parent process holds that must not leak: a password the config expands, a
# Distribution override (it would redirect or reconfigure the GC), a Slack token.
SECRETS = {
    "REGPRUNE_REGISTRY_PASSWORD": "s3cret-password",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/elsewhere",
    "REGISTRY_PASSWORD": "old-style-password",
    "SLACK_BOT_TOKEN": "xoxb-not-for-gc",
    "UNRELATED_VARIABLE": "not passed",
}
KEPT = {"LC_ALL": "C.UTF-8", "TZ": "UTC", "LANG": "C.UTF-8", "HOME": "/home/regprune-test"}


def dump_env(path: Path) -> list[str]:
    """A command that writes its whole environment to ``path`` as JSON."""
    code = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    return [sys.executable, "-c", code, str(path)]


def read_env(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())


@pytest.fixture
def parent_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in {**SECRETS, **KEPT, "KUBECONFIG": "/etc/kube/config"}.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def registry(tmp_path: Path, **gc: object) -> tuple[RegistrySettings, dict[str, Path]]:
    files = {step: tmp_path / f"{step}.json" for step in ("before", "gc", "after")}
    settings = RegistrySettings(
        url="http://127.0.0.1:9",
        gc={
            "before": [dump_env(files["before"])],
            "command": dump_env(files["gc"]),
            "after": [dump_env(files["after"])],
            **gc,
        },
    )
    return settings, files


def test_gc_commands_get_a_minimal_environment(tmp_path, parent_env):
    settings, files = registry(tmp_path, pass_env=["KUBECONFIG"], env={"GC_MODE": "night"})

    result = collect_garbage(registry=settings, name="main", dry_run=False)

    assert result is not None and result.exit_code == 0, result and result.output
    for step, path in files.items():
        seen = read_env(path)
        leaked = [n for n in seen if n.startswith(("REGPRUNE_", "REGISTRY_", "SLACK_"))]
        assert leaked == [], step
        assert "UNRELATED_VARIABLE" not in seen
        assert seen["PATH"] == parent_env["PATH"]
        assert {name: seen[name] for name in KEPT} == KEPT
        assert seen["KUBECONFIG"] == "/etc/kube/config"
        assert seen["GC_MODE"] == "night"
        # Only the minimal set, pass_env and env (Python itself may add a few LC_ names).
        extra = set(seen) - BASE_NAMES - {"KUBECONFIG", "GC_MODE"}
        assert all(name.startswith("LC_") for name in extra), extra


def test_inherit_env_passes_everything_and_env_still_wins(tmp_path, parent_env):
    settings, files = registry(tmp_path, inherit_env=True, env={"TZ": "Europe/Berlin"})

    result = collect_garbage(registry=settings, name="main", dry_run=False)

    assert result is not None and result.exit_code == 0, result.output
    seen = read_env(files["gc"])
    assert seen["REGPRUNE_REGISTRY_PASSWORD"] == SECRETS["REGPRUNE_REGISTRY_PASSWORD"]
    assert seen["UNRELATED_VARIABLE"] == "not passed"
    assert seen["TZ"] == "Europe/Berlin"


def test_a_configured_path_is_where_programs_are_found_and_run(tmp_path, parent_env):
    """``env = { PATH = ... }`` decides both the up-front check and the run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "site-gc"
    out = tmp_path / "site-gc.out"
    program.write_text(f'#!/bin/sh\necho "$PATH" > {out}\n')
    program.chmod(0o755)
    settings = RegistrySettings(
        url="http://127.0.0.1:9", gc={"command": ["site-gc"], "env": {"PATH": str(bin_dir)}}
    )

    result = collect_garbage(registry=settings, name="main", dry_run=False)

    assert result is not None and result.exit_code == 0, result.output
    assert out.read_text().strip() == str(bin_dir)


def test_gc_environment_keeps_locale_and_drops_the_rest():
    settings = RegistrySettings(url="http://127.0.0.1:9", gc={"pass_env": ["DOCKER_HOST"]})
    environ = {
        "PATH": "/bin",
        "LC_TIME": "C",
        "LANGUAGE": "en",
        "DOCKER_HOST": "unix:///run/docker.sock",
        "REGPRUNE_STATE": "/state.db",
        "REGISTRY_HTTP_ADDR": ":5000",
    }
    assert gc_environment(settings.gc, environ) == {
        "PATH": "/bin",
        "LC_TIME": "C",
        "LANGUAGE": "en",
        "DOCKER_HOST": "unix:///run/docker.sock",
    }


def run_cli(
    tmp_path: Path, config: dict[str, object], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "regprune.toml"
    path.write_text(tomli_w.dumps(config))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "regprune",
            "--config",
            str(path),
            "--state",
            str(tmp_path / "s.db"),
            "gc",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_regprune_gc_keeps_the_expanded_password_variable_from_the_gc(tmp_path, parent_env):
    """End to end: the config reads ``${REGPRUNE_REGISTRY_PASSWORD}``; the GC never sees it."""
    seen_file = tmp_path / "gc.json"
    config = {
        "registry": {
            "main": {
                "url": "http://127.0.0.1:9",
                "username": "regprune",
                "password": "${REGPRUNE_REGISTRY_PASSWORD}",
                "gc": {"command": dump_env(seen_file), "after": [["true"]]},
            }
        }
    }

    done = run_cli(tmp_path, config, parent_env)

    assert done.returncode == 0, done.stdout + done.stderr
    seen = read_env(seen_file)
    assert not [n for n in seen if n.startswith(("REGPRUNE_", "REGISTRY_", "SLACK_"))]
    assert SECRETS["REGPRUNE_REGISTRY_PASSWORD"] not in json.dumps(seen)
    assert seen["PATH"] == parent_env["PATH"]


@pytest.mark.parametrize(
    ("gc", "problem"),
    [
        ({"pass_env": ["KUBE-CONFIG"]}, "'KUBE-CONFIG' is not an environment variable name"),
        ({"env": {"1ST": "x"}}, "'1ST' is not an environment variable name"),
        ({"inherit_env": "sometimes"}, "registry.main.gc.inherit_env"),
    ],
)
def test_bad_gc_environment_settings_are_one_line_exit_2(tmp_path, parent_env, gc, problem):
    config = {
        "registry": {"main": {"url": "http://127.0.0.1:9", "gc": {"command": ["true"], **gc}}}
    }

    done = run_cli(tmp_path, config, parent_env)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert problem in lines[0]
    assert lines[0].startswith("error: ")
