"""Garbage collection through the configured command, against a real registry."""

from __future__ import annotations

import sys

import pytest

from regprune.errors import ConfigError, LockHeld

from .support import YES, days_ago, engine_for

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}


def gc_settings(server, **extra):
    return {
        "gc": {"command": server.gc_command(), "storage_path": str(server.storage_path), **extra}
    }


def test_gc_after_apply_frees_the_disk_the_plan_estimated(registry_server, pusher, tmp_path):
    for n in range(4):
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30), layer_size=200_000)
    keep = pusher.push_image("ci/app", ["build-new"], layer_size=200_000)
    engine = engine_for(registry_server.url, tmp_path, {"ci": AGE}, **gc_settings(registry_server))
    plan = engine.plan("ci")
    engine.apply(plan.id, context=YES)

    result = engine.gc("local")

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
    engine = engine_for(registry_server.url, tmp_path, {"ci": AGE}, **gc_settings(registry_server))
    engine.apply(engine.plan("ci").id, context=YES)
    before = registry_server.disk_usage()

    result = engine.gc("local", dry_run=True)

    assert result.ok
    assert "--dry-run" in result.command
    assert registry_server.disk_usage() == before
    assert pusher.blob_exists("ci/app", image.layer_digests[0])


def test_before_and_after_commands_run_in_order(registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["v1"])
    log = tmp_path / "steps.log"
    step = [sys.executable, "-c", f"import sys; open({str(log)!r}, 'a').write(sys.argv[1] + '\\n')"]
    engine = engine_for(
        registry_server.url,
        tmp_path,
        {"ci": AGE},
        **gc_settings(registry_server, before=[[*step, "readonly"]], after=[[*step, "restart"]]),
    )

    result = engine.gc("local")

    assert result.ok
    assert log.read_text().split() == ["readonly", "restart"]
    assert not any("restart" in w for w in result.warnings)


def test_failing_before_command_skips_gc_but_runs_after(registry_server, tmp_path):
    log = tmp_path / "steps.log"
    after = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('after')"]
    engine = engine_for(
        registry_server.url,
        tmp_path,
        {"ci": AGE},
        **gc_settings(
            registry_server, before=[[sys.executable, "-c", "raise SystemExit(3)"]], after=[after]
        ),
    )

    result = engine.gc("local")

    assert not result.ok
    assert result.exit_code == 3
    assert "garbage collection not run" in result.output
    assert log.read_text() == "after"


def test_gc_without_a_command_is_a_config_error(registry_server, tmp_path):
    engine = engine_for(registry_server.url, tmp_path, {"ci": AGE})
    with pytest.raises(ConfigError, match=r"registry\.local\.gc"):
        engine.gc("local")


def test_gc_waits_for_no_one_while_an_apply_holds_the_lock(registry_server, tmp_path):
    engine = engine_for(registry_server.url, tmp_path, {"ci": AGE}, **gc_settings(registry_server))
    with (
        engine.state.locks.hold(engine.lock_name("local"), purpose="apply of plan 12345678"),
        pytest.raises(LockHeld, match="apply of plan 12345678"),
    ):
        engine.gc("local")


def test_delete_untagged_on_2x_warns_while_multi_arch_images_exist(
    registry_server, pusher, tmp_path
):
    pusher.push_index("ci/multi", ["v1"])
    command = registry_server.gc_command("--delete-untagged")
    engine = engine_for(registry_server.url, tmp_path, {"ci": AGE}, gc={"command": command})
    engine.plan("ci")  # scanning records the index

    result = engine.gc("local", dry_run=True)

    assert any("--delete-untagged" in w and "multi-arch" in w for w in result.warnings)
    engine3 = engine_for(
        registry_server.url, tmp_path / "v3", {"ci": AGE}, gc={"command": command}, version=3
    )
    engine3.plan("ci")
    assert not engine3.gc("local", dry_run=True).warnings[:-1]
