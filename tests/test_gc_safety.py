"""GC under attack: --delete-untagged on 2.x, commands that cannot run, after always runs.

Against a real registry with the real ``registry garbage-collect``; every kept image
is pulled afterwards by an independent client (skopeo, ``assert_all_pull``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune.cli import run
from regprune.config import GcSettings
from regprune.engine import Engine
from regprune.errors import ConfigError, UsageError
from regprune.gc_checks import delete_untagged_spelling, validate_commands
from regprune.testing import (
    APPROVE_ALL,
    DEFAULT_REGISTRY,
    RegistryServer,
    assert_all_pull,
    days_ago,
    make_engine,
)

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}
# Every way the registry's pflag parser reads as --delete-untagged=true.
SPELLINGS = [
    ["--delete-untagged"],
    ["--delete-untagged=true"],
    ["--delete-untagged=1"],
    ["--delete-untagged=TRUE"],
    ["-m"],
    ["-m=true"],
    ["-dm"],
    ["-md"],
    ["--delete-untagged=false", "-m"],  # the last one wins
]
NOT_THE_FLAG = [
    [],
    ["--delete-untagged=false"],
    ["-m=false"],
    ["-dm=0"],
    ["-m", "--delete-untagged=false"],
]


def touch_command(path: Path, text: str = "") -> list[str]:
    """A command appending ``text`` and a newline to ``path`` (proves it ran, and when)."""
    return [sys.executable, "-c", f"open({str(path)!r}, 'a').write({text!r} + '\\n')"]


def gc_engine(server: RegistryServer, state_dir: Path, **gc: object) -> Engine:
    """An engine planning AGE as ``ci`` on ``server``, with ``gc`` as its ``[registry.test.gc]``."""
    return make_engine(server.url, AGE, name="ci", state_dir=state_dir, registry_options={"gc": gc})


def write_config(
    tmp_path: Path, url: str, gc: dict, *, version: int | None = None, gc_policy: bool = False
) -> Path:
    lines = ["[registry.local]", f"url = {json.dumps(url)}"]
    if version is not None:
        lines.append(f"version = {version}")
    lines.append("[registry.local.gc]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in gc.items()]
    lines += [
        "[policy.ci]",
        'registry = "local"',
        'repositories = ["ci/*"]',
        'selectors = [{ use = "age", older_than = "7d" }]',
    ]
    if gc_policy:
        lines.append("gc = true")
    path = tmp_path / "regprune.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(capsys, tmp_path: Path, config: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(["--config", str(config), "--state", str(tmp_path / "state.db"), *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "a bug in regprune" not in err, err
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


# -- the flag, read as the registry reads it ---------------------------------------------


def registry_deletes_untagged(server, flags: list[str]) -> bool:
    """Whether the real binary, given ``flags``, would delete untagged manifests (dry run)."""
    completed = subprocess.run(
        [server.binary, "garbage-collect", str(server.config_path), "--dry-run", *flags],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return "manifest eligible for deletion" in completed.stdout + completed.stderr


@pytest.fixture
def multi_arch(registry_server, pusher):
    """A registry holding a multi-arch image (its platform manifests are untagged), and an
    untagged image (its tag moved on), which --delete-untagged deletes on 2.x and 3.x alike."""
    index = pusher.push_index("ci/multi", ["v1"])
    pusher.push_image("ci/app", ["stable"], seed="first")
    pusher.push_image("ci/app", ["stable"], seed="second")
    return index


@pytest.mark.parametrize("flags", SPELLINGS + NOT_THE_FLAG, ids=" ".join)
def test_the_flag_is_read_as_the_real_registry_reads_it(registry_server, multi_arch, flags):
    command = registry_server.gc_command(*flags)
    assert (delete_untagged_spelling(command) is not None) == registry_deletes_untagged(
        registry_server, flags
    )


WORDS = st.sampled_from(
    ["-m", "-d", "-dm", "-md", "-m=true", "-m=false", "-m=1", "-m=F", "--delete-untagged",
     "--delete-untagged=false", "--delete-untagged=T", "--delete-untagged=0", "--dry-run", "--"]
)  # fmt: skip


def test_any_mix_of_flags_the_registry_obeys_is_detected(registry_server, multi_arch):
    """Property: whenever the real registry would delete untagged manifests, regprune sees it;
    and on a command line without ``--`` (so one the registry accepts) it sees nothing more."""

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(WORDS, max_size=5))
    def check(flags: list[str]) -> None:
        detected = delete_untagged_spelling(registry_server.gc_command(*flags)) is not None
        real = registry_deletes_untagged(registry_server, flags)
        if real:
            assert detected, flags
        if "--" not in flags:
            assert detected == real, flags

    check()


@pytest.mark.parametrize(
    "command",
    [
        ["python3", "-m", "gc_wrapper"],  # a wrapper's own -m is not the registry's
        ["docker", "run", "--rm", "-m", "1g", "registry:2", "garbage-collect", "/c.yml"],
    ],
)
def test_a_wrappers_own_dash_m_is_not_the_flag(command):
    assert delete_untagged_spelling(command) is None


@pytest.mark.parametrize(
    ("command", "spelling"),
    [
        (["gc-wrapper.sh", "--delete-untagged"], "--delete-untagged"),
        (["sh", "-c", "registry garbage-collect -dm /etc/config.yml"], "-dm"),
        (["kubectl", "exec", "deploy/r", "--", "registry", "garbage-collect", "-m", "/c"], "-m"),
    ],
)
def test_the_flag_is_found_through_wrappers(command, spelling):
    assert delete_untagged_spelling(command) == spelling


def test_a_value_the_registry_rejects_is_a_config_error(registry_server, tmp_path, capsys):
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        registry_server.url,
        {
            "command": registry_server.gc_command("--delete-untagged=yes"),
            "before": [touch_command(marker)],
        },
    )
    code, _, err = cli(capsys, tmp_path, config, "gc")
    assert code == 2
    assert "'yes' is not a value the registry accepts" in one_error_line(err)
    assert not marker.exists()


# -- refused before anything runs, judged from what the registry holds --------------------


@pytest.mark.parametrize("flags", SPELLINGS, ids=" ".join)
def test_delete_untagged_on_2x_is_refused_before_anything_runs(
    registry_server, multi_arch, tmp_path, capsys, flags
):
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        registry_server.url,
        {"command": registry_server.gc_command(*flags), "before": [touch_command(marker)]},
    )

    code, out, err = cli(capsys, tmp_path, config, "gc")

    assert code == 2, out + err
    line = one_error_line(err)
    assert "--delete-untagged" in line and "multi-arch" in line
    assert "ci/multi:v1" in line  # found by scanning the registry: the state DB was empty
    assert "--allow-delete-untagged" in line and "version = 3" in line
    assert not marker.exists()  # no before command, so no GC either
    pulled = {image.reference: image for image in assert_all_pull(registry_server.url)}
    assert pulled["ci/multi:v1"].manifests == 3  # the index and both platforms


def test_run_gc_and_the_engine_refuse_the_same_way_before_applying(
    registry_server, pusher, multi_arch, tmp_path, capsys
):
    old = pusher.push_image("ci/old", ["build-1"], created=days_ago(30))
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        registry_server.url,
        {"command": registry_server.gc_command("-m"), "before": [touch_command(marker)]},
    )

    code, _, err = cli(capsys, tmp_path, config, "run", "--yes", "--gc")

    assert code == 2
    assert "--delete-untagged" in one_error_line(err)
    assert pusher.resolve("ci/old", "build-1") == old.digest  # nothing applied either
    assert not marker.exists()
    # The Slack bot calls the same Engine.gc, which refuses with the same UsageError.
    engine = gc_engine(registry_server, tmp_path / "e", command=registry_server.gc_command("-m"))
    with pytest.raises(UsageError, match="multi-arch"):
        engine.gc(DEFAULT_REGISTRY)


def test_a_registry_that_cannot_be_scanned_means_refuse(tmp_path, capsys, registry_binary):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        url,
        {
            "command": [registry_binary, "garbage-collect", "-m", "/c.yml"],
            "before": [touch_command(marker)],
        },
    )

    code, _, err = cli(capsys, tmp_path, config, "gc")

    assert code == 2
    assert "could not be scanned" in one_error_line(err)
    assert not marker.exists()


def test_delete_untagged_runs_when_the_registry_holds_no_multi_arch_image(
    registry_server, pusher, tmp_path, capsys
):
    pusher.push_image("ci/app", ["v1"])
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        registry_server.url,
        {"command": registry_server.gc_command("-m"), "before": [touch_command(marker)]},
    )

    code, out, err = cli(capsys, tmp_path, config, "gc")

    assert code == 0, out + err
    assert marker.exists()
    assert_all_pull(registry_server.url, expect=["ci/app:v1"])


@pytest.mark.parametrize("flags", NOT_THE_FLAG[1:], ids=" ".join)
def test_the_flag_set_to_false_runs_and_keeps_every_platform(
    registry_server, multi_arch, tmp_path, capsys, flags
):
    config = write_config(
        tmp_path, registry_server.url, {"command": registry_server.gc_command(*flags), "after": []}
    )
    code, out, err = cli(capsys, tmp_path, config, "gc")
    assert code == 0, out + err
    registry_server.restart()  # forget the blob descriptor cache, as after would
    assert_all_pull(registry_server.url, expect=["ci/multi:v1", "ci/app:stable"])


def test_version_3_runs_it(registry_server, multi_arch, tmp_path, capsys):
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        registry_server.url,
        {
            "command": registry_server.gc_command("--delete-untagged", "--dry-run"),
            "before": [touch_command(marker)],
        },
        version=3,
    )
    code, out, err = cli(capsys, tmp_path, config, "gc")
    assert code == 0, out + err
    assert marker.exists()


def test_the_override_runs_it_and_says_so(registry_server, multi_arch, tmp_path, capsys):
    marker = tmp_path / "before-ran"
    config = write_config(
        tmp_path,
        registry_server.url,
        {"command": registry_server.gc_command("-m"), "before": [touch_command(marker)]},
    )

    code, out, err = cli(capsys, tmp_path, config, "gc", "--allow-delete-untagged")

    assert code == 0, out + err
    assert marker.exists()
    assert "--allow-delete-untagged was given" in err
    registry_server.restart()
    if registry_major(registry_server) == 2:
        # What the refusal protects against, seen by an independent client.
        with pytest.raises(AssertionError, match="ci/multi:v1"):
            assert_all_pull(registry_server.url)


def registry_major(server) -> int:
    """The Distribution major version of the server's binary (from ``--version``)."""
    out = subprocess.run([server.binary, "--version"], capture_output=True, text=True).stdout
    match = re.search(r" v?(\d+)\.\d+\.\d+", out)
    assert match, out
    return int(match.group(1))


def test_a_dry_run_only_warns(registry_server, multi_arch, tmp_path):
    engine = gc_engine(registry_server, tmp_path, command=registry_server.gc_command("-m"))
    result = engine.gc(DEFAULT_REGISTRY, dry_run=True)
    assert result.ok
    assert any("multi-arch" in w and "a real run is refused" in w for w in result.warnings)


# -- commands validated before anything runs ----------------------------------------------


@pytest.mark.parametrize(
    ("gc", "key", "message"),
    [
        ({"command": []}, "gc.command", "non-empty list"),
        ({"before": [[]]}, "gc.before.0", "non-empty list"),
        ({"after": [["true", ""]]}, "gc.after.0", "word 1 is empty"),
        ({"command": ["", "garbage-collect"]}, "gc.command", "word 0 is empty"),
        ({"after": [["no-such-program-regprune"]]}, "gc.after.0", "not found on PATH"),
        ({"after": [["/"]]}, "gc.after.0", "is a directory"),
        ({"after": [["/etc/passwd"]]}, "gc.after.0", "is not executable"),
        ({"command": ["/no/such/registry", "garbage-collect"]}, "gc.command", "does not exist"),
    ],
)
def test_a_command_that_cannot_run_is_a_config_error_and_nothing_runs(
    registry_server, tmp_path, capsys, gc, key, message
):
    marker = tmp_path / "before-ran"
    settings = {"command": registry_server.gc_command(), "before": [touch_command(marker)], **gc}
    if gc.get("before") is not None:
        settings["after"] = [touch_command(marker)]
    config = write_config(tmp_path, registry_server.url, settings)

    code, _, err = cli(capsys, tmp_path, config, "gc")

    assert code == 2
    line = one_error_line(err)
    assert f"registry.local.{key}" in line and message in line, line
    assert not marker.exists()


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "command": st.none() | st.lists(st.text(max_size=4), max_size=3),
            "before": st.lists(st.lists(st.text(max_size=4), max_size=3), max_size=2),
            "after": st.lists(st.lists(st.text(max_size=4), max_size=3), max_size=2),
        }
    )
)
def test_any_command_lists_validate_or_fail_with_one_config_error(gc):
    try:
        validate_commands(GcSettings(**gc), "local")
        delete_untagged_spelling(gc["command"])
    except ConfigError as exc:
        assert exc.message.startswith("registry.local.gc.") and "\n" not in exc.message
    else:
        for argv in [gc["command"] or ["x"], *gc["before"], *gc["after"]]:
            assert argv and all(word.strip() for word in argv)


# -- after always runs once before ran -----------------------------------------------------


def gc_script(tmp_path: Path, body: str, *, shebang: bool = True) -> Path:
    script = tmp_path / "gc.sh"
    script.write_text(("#!/bin/sh\n" if shebang else "") + body)
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("sabotage", "reason"),
    [
        ("chmod -x {gc}", "Permission denied"),
        ("rm {gc} && mkdir {gc}", "Permission denied"),
        ("rm {gc}", "No such file"),
        (None, "a script needs a #! line"),
    ],
    ids=["not-executable", "directory", "vanished", "no-shebang"],
)
def test_after_runs_when_the_gc_command_cannot_start(registry_server, tmp_path, sabotage, reason):
    """The GC command passed validation, then cannot be started (a before command broke it)."""
    log = tmp_path / "steps.log"
    gc = gc_script(tmp_path, "exit 0\n", shebang=sabotage is not None)
    before = [touch_command(log, "before")]
    if sabotage:
        before.append(["/bin/sh", "-c", sabotage.format(gc=gc)])
    engine = gc_engine(
        registry_server,
        tmp_path,
        command=[str(gc)],
        before=before,
        after=[touch_command(log, "after")],
    )

    result = engine.gc(DEFAULT_REGISTRY)

    assert not result.ok
    assert result.exit_code in (126, 127)
    assert reason in result.output
    assert log.read_text().split() == ["before", "after"]


def test_after_runs_when_gc_times_out_and_the_group_is_stopped(registry_server, tmp_path):
    log = tmp_path / "steps.log"
    pids = tmp_path / "pids"
    gc = gc_script(tmp_path, f"sleep 60 & echo $! >> {pids}\necho $$ >> {pids}\nwait\n")
    engine = gc_engine(
        registry_server,
        tmp_path,
        command=[str(gc)],
        timeout="1s",
        after=[touch_command(log, "after")],
    )

    result = engine.gc(DEFAULT_REGISTRY)

    assert result.exit_code == 124
    assert "timed out" in result.output
    assert log.read_text().split() == ["after"]
    assert_gone(int(pid) for pid in pids.read_text().split())


def assert_gone(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        status = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        assert status == "Z", f"process {pid} survived (state {status})"


# -- after a real gc, every kept image pulls ------------------------------------------------


def test_every_kept_image_pulls_after_apply_and_a_real_gc(registry_server, pusher, tmp_path):
    index = pusher.push_index("ci/multi", ["v1"], platforms=["linux/amd64", "linux/arm64"])
    for n in range(3):
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30), layers=2)
    pusher.push_image("ci/app", ["build-new"], layers=2)
    pusher.push_signature("ci/multi", index.digest, "sig")
    log = tmp_path / "steps.log"
    engine = make_engine(
        registry_server.url,
        {"repositories": ["ci/app"], "selectors": [{"use": "age", "older_than": "7d"}]},
        name="ci",
        state_dir=tmp_path,
        registry_options={
            "gc": {
                "command": registry_server.gc_command(),
                "after": [touch_command(log, "after")],
                "storage_path": str(registry_server.storage_path),
            }
        },
    )
    engine.apply(engine.plan("ci").id, context=APPROVE_ALL)

    result = engine.gc(DEFAULT_REGISTRY)

    assert result.ok, result.output
    assert result.bytes_freed and result.bytes_freed > 0
    registry_server.restart()  # what the after command would do in production
    pulled = assert_all_pull(
        registry_server.url,
        expect=["ci/multi:v1", "ci/app:build-new", f"ci/multi:sha256-{index.digest[7:]}.sig"],
    )
    assert {image.reference for image in pulled} >= {"ci/multi:v1", "ci/app:build-new"}
    assert not any(
        image.reference.startswith("ci/app:build-") and image.reference != "ci/app:build-new"
        for image in pulled
    )
    by_ref = {image.reference: image for image in pulled}
    assert by_ref["ci/multi:v1"].manifests == 3


def test_the_pull_check_fails_on_a_missing_layer(registry_server, pusher):
    image = pusher.push_image("ci/app", ["v1"], layers=2)
    pusher.push_image("ci/other", ["v1"])
    layer = image.layer_digests[1].split(":")[1]
    blob = (
        registry_server.storage_path
        / "docker/registry/v2/blobs/sha256"
        / layer[:2]
        / layer
        / "data"
    )
    blob.unlink()  # what a GC that swept a referenced layer leaves behind
    registry_server.restart()  # no cached descriptor may hide it

    with pytest.raises(
        AssertionError, match=r"(?s)1 of 2 image\(s\) do not pull.*ci/app:v1: .*404"
    ):
        assert_all_pull(registry_server.url, expect=["ci/other:v1"])
    with pytest.raises(AssertionError, match="ci/gone:v1: tag not listed"):
        assert_all_pull(registry_server.url, repositories=["ci/other"], expect=["ci/gone:v1"])
