"""The recipes in deploy/: every ``regprune`` command line in them parses against the
real CLI (a renamed command or flag fails here), the YAML parses, the CronJob is safe
to leave unattended, the systemd units pass ``systemd-analyze verify``, and the
Kubernetes recipe's own config and command prune a real registry.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import typer
import typer.main
import yaml

from regprune.cli import ClickUsageError, make_app
from regprune.config import parse_settings
from regprune.plugin_manager import get_plugin_manager
from regprune.testing import days_ago

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
CI = DEPLOY / "ci"
# The image's non-root user (Containerfile ARG UID), which the CronJob runs as.
IMAGE_UID = 10001


@dataclass(frozen=True)
class Invocation:
    """One ``regprune`` command line of a recipe: where it is and its arguments."""

    where: str
    args: tuple[str, ...]


# -- reading the recipes ------------------------------------------------------------------


def containerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, rest)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def exec_form(where: str, rest: str) -> list[str]:
    """An ENTRYPOINT or CMD in exec (JSON) form: no shell in between."""
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), where
    return value


def image_entrypoint() -> list[str]:
    found = [rest for kw, rest in containerfile_instructions(CONTAINERFILE) if kw == "ENTRYPOINT"]
    assert len(found) == 1, "the Containerfile needs one ENTRYPOINT"
    return exec_form("ENTRYPOINT", found[0])


def containerfile_invocations() -> Iterator[Invocation]:
    assert image_entrypoint() == ["regprune"]
    for keyword, rest in containerfile_instructions(CONTAINERFILE):
        if keyword == "CMD":
            yield Invocation(f"{CONTAINERFILE.name} CMD", tuple(exec_form("CMD", rest)))


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs and all(isinstance(doc, dict) for doc in docs), path
    return docs


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every object of the recipe, by kind (one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml_documents(path):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects"
            objects[doc["kind"]] = doc
    return objects


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def kubernetes_invocations() -> Iterator[Invocation]:
    cronjob = kubernetes_objects()["CronJob"]
    for container in pod_spec(cronjob)["containers"]:
        command = container.get("command") or image_entrypoint()
        assert Path(command[0]).name == "regprune", container["name"]
        yield Invocation(
            f"cronjob.yaml container {container['name']}",
            (*command[1:], *container.get("args", [])),
        )


def unit_settings(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of a systemd unit file, in order."""
    section, found = "", []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def systemd_invocations() -> Iterator[Invocation]:
    for path in sorted(SYSTEMD.glob("*.service")):
        for _, key, value in unit_settings(path):
            if key.startswith("Exec"):
                argv = shlex.split(value.lstrip("-@:+!"))
                if Path(argv[0]).name == "regprune":
                    yield Invocation(f"{path.name} {key}", tuple(argv[1:]))


SHELL_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>>", "&>"}


def shell_invocations(where: str, script: str) -> Iterator[Invocation]:
    """The ``regprune`` simple commands of a shell script (one command per line or
    joined by ``;``, ``&&``, ``||``, ``|``), without redirections and env assignments."""
    for line in script.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token not in SHELL_SEPARATORS:
                words.append(token)
                continue
            # Drop each redirection with its target, then leading NAME=value words.
            command = [
                w
                for i, w in enumerate(words)
                if w not in REDIRECTIONS and (i == 0 or words[i - 1] not in REDIRECTIONS)
            ]
            while command and "=" in command[0] and not command[0].startswith("-"):
                command.pop(0)
            if command and Path(command[0]).name == "regprune":
                yield Invocation(where, tuple(command[1:]))
            words = []


def ci_invocations() -> Iterator[Invocation]:
    gitlab = yaml_documents(CI / "gitlab-ci.yml")[0]
    for job_name, job in gitlab.items():
        if isinstance(job, dict):
            for key in ("before_script", "script", "after_script"):
                for line in job.get(key, []):
                    yield from shell_invocations(f"gitlab-ci.yml {job_name}.{key}", line)
    github = yaml_documents(CI / "github-actions.yml")[0]
    for job_name, job in github["jobs"].items():
        for n, step in enumerate(job["steps"]):
            if "run" in step:
                yield from shell_invocations(f"github-actions.yml {job_name} step {n}", step["run"])


def all_invocations() -> list[Invocation]:
    return [
        *containerfile_invocations(),
        *kubernetes_invocations(),
        *systemd_invocations(),
        *ci_invocations(),
    ]


# -- checking a command line against the CLI ----------------------------------------------


def builtin_cli() -> Any:
    """The click command behind ``regprune``, with the built-in plugins only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REGPRUNE_LOAD_PLUGINS", raising=False)
        patch.delenv("REGPRUNE_BLOCK_PLUGINS", raising=False)
        return typer.main.get_command(make_app(get_plugin_manager(load_entrypoints=False)))


def parse_command_line(args: Sequence[str]) -> list[str]:
    """Parse ``regprune ARGS`` the way the CLI would, down to a leaf command, without
    running anything: each level's ``make_context`` converts every option's value.
    Returns the command path; raises click's errors (unknown command, flag or value)."""
    command, ctx, rest, path = builtin_cli(), None, list(args), []
    while True:
        name = path[-1] if path else "regprune"
        try:
            ctx = command.make_context(name, list(rest), parent=ctx)  # click consumes it
        except typer.Exit as done:  # an eager option that answers at once (--version)
            assert done.exit_code == 0, f"`regprune {' '.join(args)}` exits {done.exit_code}"
            return [*path, *[arg for arg in rest if arg.startswith("-")][:1]]
        if not hasattr(command, "resolve_command"):
            return path
        # A group keeps the subcommand and its arguments for itself (click's Group.invoke).
        protected = getattr(ctx, "_protected_args", None)
        rest = [*(protected if protected is not None else ctx.protected_args), *ctx.args]
        assert rest, f"`regprune {' '.join(args)}` names no command"
        sub_name, command, rest = command.resolve_command(ctx, rest)
        path.append(sub_name)


INVOCATIONS = all_invocations()


def test_every_recipe_has_a_regprune_command() -> None:
    wheres = {invocation.where.split()[0] for invocation in INVOCATIONS}
    assert wheres == {
        "Containerfile",
        "cronjob.yaml",
        "regprune.service",
        "gitlab-ci.yml",
        "github-actions.yml",
    }


@pytest.mark.parametrize("invocation", INVOCATIONS, ids=lambda i: f"{i.where}: {' '.join(i.args)}")
def test_recipe_command_parses_against_the_cli(invocation: Invocation) -> None:
    path = parse_command_line(invocation.args)
    assert path, invocation
    assert not set(invocation.args) & {"--help", "-h"}, "a recipe runs a command, not its help"


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--yess"),  # a misspelt (or renamed) flag
        ("prune", "--yes"),  # a command that does not exist
        ("run", "--policy"),  # a flag without its value
        ("run", "--keep", "many"),  # a value the option's type refuses
    ],
)
def test_a_broken_command_line_fails_the_check(args: tuple[str, ...]) -> None:
    # NoSuchOption, BadOptionUsage, BadParameter: all click usage errors (exit 2).
    with pytest.raises(ClickUsageError):
        parse_command_line(args)


def test_the_shell_reader_finds_commands_behind_operators_and_env() -> None:
    found = list(
        shell_invocations(
            "x", "set -e; REGPRUNE_STATE=s.db regprune run --yes > out.json && echo ok"
        )
    )
    assert found == [Invocation("x", ("run", "--yes"))]


# -- the container recipe -----------------------------------------------------------------


def test_container_runs_regprune_as_a_non_root_user_with_state_on_a_volume() -> None:
    instructions = containerfile_instructions(CONTAINERFILE)
    keywords = [kw for kw, _ in instructions]
    assert instructions[0][0] == "FROM" and "python:3" in instructions[0][1]
    assert "-slim" in instructions[0][1]
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    (volume,) = [exec_form("VOLUME", rest) for kw, rest in instructions if kw == "VOLUME"]
    assert volume == ["/var/lib/regprune"]
    env = " ".join(rest for kw, rest in instructions if kw == "ENV")
    assert "REGPRUNE_CONFIG=/etc/regprune/regprune.toml" in env
    assert "REGPRUNE_STATE=/var/lib/regprune/state.db" in env
    runs = " ".join(rest for kw, rest in instructions if kw == "RUN")
    assert "pip install" in runs and ".whl" in runs
    copies = [rest for kw, rest in instructions if kw == "COPY"]
    assert copies == ["dist/regprune-*.whl /tmp/wheels/"], "only the wheel enters the image"
    uid = [rest for kw, rest in instructions if kw == "ARG" and rest.startswith("UID=")]
    assert uid == [f"UID={IMAGE_UID}"]


# -- the Kubernetes recipe ----------------------------------------------------------------


def test_kubernetes_recipe_has_its_objects_and_kustomize_lists_them() -> None:
    objects = kubernetes_objects()
    assert {"CronJob", "ConfigMap", "Secret", "PersistentVolumeClaim", "ServiceAccount"} <= set(
        objects
    )
    listed = set(objects.pop("Kustomization")["resources"])
    assert listed == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


def test_cronjob_never_overlaps_runs_as_non_root_and_keeps_state_on_the_pvc() -> None:
    objects = kubernetes_objects()
    cronjob = objects["CronJob"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = pod_spec(cronjob)
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    state = volumes[mounts["/var/lib/regprune"]["name"]]
    claim = objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert state["persistentVolumeClaim"]["claimName"] == claim
    config = volumes[mounts["/etc/regprune"]["name"]]
    assert config["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert mounts["/etc/regprune"]["readOnly"] is True
    env = {item["name"]: item for item in container["env"]}
    assert env["REGPRUNE_CONFIG"]["value"] == "/etc/regprune/regprune.toml"
    assert env["REGPRUNE_STATE"]["value"].startswith("/var/lib/regprune/")
    secret = objects["Secret"]
    for item in env.values():
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]


def configmap_config() -> dict[str, Any]:
    return tomllib.loads(kubernetes_objects()["ConfigMap"]["data"]["regprune.toml"])


def test_configmap_holds_a_valid_config_whose_secrets_come_from_the_secret() -> None:
    container = pod_spec(kubernetes_objects()["CronJob"])["containers"][0]
    from_secret = {item["name"] for item in container["env"] if "valueFrom" in item}
    environ = {name: "from-the-secret" for name in from_secret}

    settings = parse_settings(configmap_config(), environ=environ)

    assert settings.registry["main"].password == "from-the-secret"
    assert settings.policy


# -- secrets are REGPRUNE_* everywhere ----------------------------------------------------


def recipe_env_names() -> set[str]:
    """Every variable a recipe sets for regprune."""
    names = set()
    for kw, rest in containerfile_instructions(CONTAINERFILE):
        if kw == "ENV":
            names |= {word.split("=")[0] for word in shlex.split(rest) if "=" in word}
    for container in pod_spec(kubernetes_objects()["CronJob"])["containers"]:
        names |= {item["name"] for item in container["env"]}
    for _, key, value in unit_settings(SYSTEMD / "regprune.service"):
        if key == "Environment":
            names |= {word.split("=")[0] for word in shlex.split(value)}
    names |= set(yaml_documents(CI / "gitlab-ci.yml")[0]["regprune"]["variables"])
    names |= set(yaml_documents(CI / "github-actions.yml")[0]["jobs"]["prune"]["env"])
    return names


def test_recipes_name_regprune_variables_regprune_and_none_registry() -> None:
    names = recipe_env_names()
    assert {"REGPRUNE_CONFIG", "REGPRUNE_STATE", "REGPRUNE_REGISTRY_PASSWORD"} <= names
    # Distribution reads every REGISTRY_* variable as a config override.
    assert not [name for name in names if name.startswith("REGISTRY_")]
    assert names - {"HOME", "PYTHONUNBUFFERED"} == {n for n in names if n.startswith("REGPRUNE_")}


def test_docs_and_recipes_never_reference_a_registry_variable_as_a_secret() -> None:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    texts += [path for path in sorted(DEPLOY.rglob("*")) if path.is_file()]
    for path in texts:
        assert "${REGISTRY_" not in path.read_text(), path


# -- the systemd units --------------------------------------------------------------------


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """``systemd-analyze``, installed through scripts/ensure-systemd.sh when missing."""
    found = shutil.which("systemd-analyze")
    if found is None:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ensure-systemd.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        found = shutil.which("systemd-analyze")
    assert found is not None, "systemd-analyze is missing: run scripts/ensure-systemd.sh"
    return found


def test_systemd_units_pass_systemd_analyze_verify(systemd_analyze, tmp_path) -> None:
    """``verify`` checks that ExecStart's program exists, so the copy points it at
    this venv's regprune; everything else is verified as shipped."""
    installed = Path(sys.executable).parent / "regprune"
    assert installed.is_file()
    for unit in ("regprune.service", "regprune.timer"):
        text = (SYSTEMD / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/regprune/bin/regprune", str(installed)))
    assert str(installed) in (tmp_path / "regprune.service").read_text()

    done = subprocess.run(
        [
            systemd_analyze,
            "verify",
            *(str(tmp_path / u) for u in ("regprune.service", "regprune.timer")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )

    assert done.returncode == 0, done.stderr
    assert "regprune" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_systemd_verify_refuses_a_broken_timer(systemd_analyze, tmp_path) -> None:
    """The check has teeth: a bad calendar spec fails it."""
    installed = Path(sys.executable).parent / "regprune"
    service = (SYSTEMD / "regprune.service").read_text()
    (tmp_path / "regprune.service").write_text(
        service.replace("/opt/regprune/bin/regprune", str(installed))
    )
    timer = (SYSTEMD / "regprune.timer").read_text().replace("*-*-* 03:30:00", "someday")
    (tmp_path / "regprune.timer").write_text(timer)

    done = subprocess.run(
        [
            systemd_analyze,
            "verify",
            str(tmp_path / "regprune.service"),
            str(tmp_path / "regprune.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert "someday" in done.stderr


def test_systemd_service_runs_unprivileged_with_a_state_directory() -> None:
    settings = {
        (section, key): value for section, key, value in unit_settings(SYSTEMD / "regprune.service")
    }
    assert settings[("Service", "User")] == "regprune"
    assert settings[("Service", "StateDirectory")] == "regprune"
    assert settings[("Service", "Type")] == "oneshot"
    timer = {
        (section, key): value for section, key, value in unit_settings(SYSTEMD / "regprune.timer")
    }
    assert timer[("Timer", "Unit")] == "regprune.service"
    assert timer[("Install", "WantedBy")] == "timers.target"


# -- the Kubernetes recipe, run ------------------------------------------------------------


@pytest.mark.registry
def test_the_cronjobs_command_and_config_prune_a_real_registry(registry_server, pusher, tmp_path):
    """The CronJob's arguments with the ConfigMap's config (its URL pointed at a loopback
    registry) and the Secret's variable: old CI builds go, the newest and releases stay."""
    for n in range(8):
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30 + n), seed=f"b{n}")
    pusher.push_image("ci/app", ["v1.2.3"], created=days_ago(90), seed="release")
    config = configmap_config()
    config["registry"]["main"]["url"] = registry_server.url
    config_path = tmp_path / "regprune.toml"
    config_path.write_text(tomli_w.dumps(config))
    (invocation,) = kubernetes_invocations()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REGPRUNE_")},
        "REGPRUNE_CONFIG": str(config_path),
        "REGPRUNE_STATE": str(tmp_path / "state" / "state.db"),
        "REGPRUNE_REGISTRY_PASSWORD": "unused-without-auth",
        "REGPRUNE_LOAD_PLUGINS": "",
    }

    done = subprocess.run(
        [sys.executable, "-m", "regprune", *invocation.args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    left = set(pusher.tags("ci/app"))
    assert left == {"build-0", "build-1", "build-2", "build-3", "build-4", "v1.2.3"}
