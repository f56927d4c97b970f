"""Garbage collection through the configured command, against a real registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from regprune.engine import Engine
from regprune.errors import ConfigError, LockHeld
from regprune.testing import APPROVE_ALL, DEFAULT_REGISTRY, RegistryServer, days_ago, make_engine

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}


def gc_engine(server: RegistryServer, state_dir: Path, **gc: object) -> Engine:
    """An engine over policy ``ci`` whose registry collects with ``server``'s own GC."""
    command = {"command": server.gc_command(), "storage_path": str(server.storage_path)}
    return make_engine(
        server.url, AGE, name="ci", state_dir=state_dir, registry_options={"gc": {**command, **gc}}
    )


def test_gc_after_apply_frees_the_disk_the_plan_estimated(registry_server, pusher, tmp_path):
    for n in range(4):
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30), layer_size=200_000)
    keep = pusher.push_image("ci/app", ["build-new"], layer_size=200_000)
    engine = gc_engine(registry_server, tmp_path)
    plan = engine.plan("ci")
    engine.apply(plan.id, context=APPROVE_ALL)

    result = engine.gc(DEFAULT_REGISTRY)

    assert result.ok, result.output
    assert result.bytes_freed is not None
    assert result.bytes_freed >= 4 * 200_000
    # The plan's estimate is what the registry's own GC freed (same manifests, same blobs).
    assert abs(result.bytes_freed - plan.summary.bytes) <= plan.summary.bytes * 0.05
    assert pusher.resolve("ci/app", "build-new") == keep.digest
    assert engine.state.gc_runs.recent(limit=1)[0].bytes_freed == result.bytes_freed
    assert any(e.event == "gc.finished" for e in engine.state.audit_log.events(limit=5))


def test_gc_dry_run_changes_nothing(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30), layer_size=100_000)
    engine = gc_engine(registry_server, tmp_path)
    engine.apply(engine.plan("ci").id, context=APPROVE_ALL)
    before = registry_server.disk_usage()

    result = engine.gc(DEFAULT_REGISTRY, dry_run=True)

    assert result.ok
    assert "--dry-run" in result.command
    assert registry_server.disk_usage() == before
    assert pusher.blob_exists("ci/app", image.layer_digests[0])


def test_before_and_after_commands_run_in_order(registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["v1"])
    log = tmp_path / "steps.log"
    step = [sys.executable, "-c", f"import sys; open({str(log)!r}, 'a').write(sys.argv[1] + '\\n')"]
    engine = gc_engine(
        registry_server, tmp_path, before=[[*step, "readonly"]], after=[[*step, "restart"]]
    )

    result = engine.gc(DEFAULT_REGISTRY)

    assert result.ok
    assert log.read_text().split() == ["readonly", "restart"]
    assert not any("restart" in w for w in result.warnings)


def test_failing_before_command_skips_gc_but_runs_after(registry_server, tmp_path):
    log = tmp_path / "steps.log"
    after = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('after')"]
    engine = gc_engine(
        registry_server,
        tmp_path,
        before=[[sys.executable, "-c", "raise SystemExit(3)"]],
        after=[after],
    )

    result = engine.gc(DEFAULT_REGISTRY)

    assert not result.ok
    assert result.exit_code == 3
    assert "garbage collection not run" in result.output
    assert log.read_text() == "after"


def test_gc_without_a_command_is_a_config_error(registry_server, tmp_path):
    engine = make_engine(registry_server.url, AGE, name="ci", state_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"registry\.test\.gc"):
        engine.gc(DEFAULT_REGISTRY)


def test_gc_waits_for_no_one_while_an_apply_holds_the_lock(registry_server, tmp_path):
    engine = gc_engine(registry_server, tmp_path)
    with (
        engine.state.locks.hold(
            engine.lock_name(DEFAULT_REGISTRY), purpose="apply of plan 12345678"
        ),
        pytest.raises(LockHeld, match="apply of plan 12345678"),
    ):
        engine.gc(DEFAULT_REGISTRY)


def test_delete_untagged_on_2x_warns_while_multi_arch_images_exist(
    registry_server, pusher, tmp_path
):
    pusher.push_index("ci/multi", ["v1"])
    command = registry_server.gc_command("--delete-untagged")
    engine = make_engine(
        registry_server.url,
        AGE,
        name="ci",
        state_dir=tmp_path,
        registry_options={"gc": {"command": command}},
    )
    engine.plan("ci")  # scanning records the index

    result = engine.gc(DEFAULT_REGISTRY, dry_run=True)

    assert any("--delete-untagged" in w and "multi-arch" in w for w in result.warnings)
    engine3 = make_engine(
        registry_server.url,
        AGE,
        name="ci",
        state_dir=tmp_path / "v3",
        registry_options={"gc": {"command": command}, "version": 3},
    )
    engine3.plan("ci")
    assert not engine3.gc(DEFAULT_REGISTRY, dry_run=True).warnings[:-1]


@pytest.mark.parametrize(
    ("command", "timeout", "said"),
    [
        (
            ["/bin/sh", "-c", "echo marking; echo 'failed to mark: boom'; exit 3"],
            "1m",
            "exit code 3",
        ),
        (["/bin/sh", "-c", "echo started; exec sleep 30"], "1s", "exit code 124"),
    ],
    ids=["fails", "times-out"],
)
def test_a_failed_gc_is_one_error_line_on_stderr(
    regprune_cli, registry_server, tmp_path, command, timeout, said
):
    (tmp_path / "regprune.toml").write_text(
        f'[registry.main]\nurl = "{registry_server.url}"\n\n'
        f"[registry.main.gc]\ncommand = {json.dumps(command)}\ntimeout = {json.dumps(timeout)}\n"
        'after = [["true"]]\n'
    )
    result = regprune_cli("--config", str(tmp_path / "regprune.toml"), "gc")
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert errors[0].startswith(f"error: garbage collection of registry 'main' failed ({said})")
    if said == "exit code 3":
        assert errors[0].endswith(": failed to mark: boom")
