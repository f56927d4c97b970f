"""Plugin faults never corrupt the record: a third-party plugin that raises or answers
nonsense names itself, never skips the audit log, and never deletes what it should not.
Against a real registry and a real state DB.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from regprune import hookimpl
from regprune.cli import run
from regprune.engine import Engine
from regprune.errors import UsageError
from regprune.hookcalls import PluginError
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State

from .support import YES, days_ago, settings_for

AGE = {"repositories": ["ci/*"], "selectors": [{"use": "age", "older_than": "7d"}]}


def plugin(name: str, **hooks: Callable[..., object]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


def engine_with(url: str, tmp_path: Path, *plugins: object, policy: dict | None = None) -> Engine:
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=plugins)
    settings = settings_for(url, {"ci": policy or AGE})
    return Engine(settings, State(tmp_path / "state.db"), manager=manager)


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom")


def events(engine: Engine, plan_id: str, name: str) -> list[dict]:
    return [e for e in engine.state.audit_log.events(limit=500, plan_id=plan_id) if e.event == name]


# -- item 15: event hooks ------------------------------------------------------------------


def test_a_plugin_failing_in_event_hooks_never_skips_the_audit_log(
    registry_server, pusher, tmp_path
):
    images = [pusher.push_image("ci/app", [f"b-{n}"], created=days_ago(30)) for n in range(3)]
    noisy = plugin(
        "acme",
        item_deleted=lambda plan, item: boom(),
        plan_created=lambda plan: boom(),
        plan_decided=lambda plan: boom(),
        apply_finished=lambda plan, result: boom(),
    )
    engine = engine_with(registry_server.url, tmp_path, noisy)

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("regprune").addHandler(handler)
    try:
        plan = engine.plan("ci")
        result = engine.apply(plan.id, context=YES)
    finally:
        logging.getLogger("regprune").removeHandler(handler)

    assert result.status == "done"
    assert engine.state.plans.get(plan.id).status == "done"
    assert len(events(engine, plan.id, "plan.created")) == 1
    assert len(events(engine, plan.id, "plan.approved")) == 1
    assert sorted(
        e.details["digest"] for e in events(engine, plan.id, "item.deleted")
    ) == sorted(i.digest for i in images)
    assert len(events(engine, plan.id, "apply.finished")) == 1
    warnings = [r.getMessage() for r in records]
    assert any("plugin acme failed in item_deleted: RuntimeError: boom" in w for w in warnings)
    assert any("plugin acme failed in apply_finished" in w for w in warnings)


def test_event_hook_failures_are_one_warning_line_on_the_cli(
    registry_server, pusher, tmp_path, capsys
):
    pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    config = tmp_path / "regprune.toml"
    config.write_text(
        f'[registry.local]\nurl = "{registry_server.url}"\n[policy.ci]\nregistry = "local"\n'
        'repositories = ["ci/*"]\nselectors = [{ use = "age", older_than = "7d" }]\n'
    )
    manager = get_plugin_manager(
        load_entrypoints=False, extra_plugins=[plugin("acme", plan_created=lambda plan: boom())]
    )

    code = run(
        ["--config", str(config), "--state", str(tmp_path / "s.db"), "plan"], manager=manager
    )

    assert code == 0
    err = capsys.readouterr().err
    assert "warning: plugin acme failed in plan_created: RuntimeError: boom" in err
    assert "Traceback" not in err


# -- item 16: delete_manifest answers are validated ---------------------------------------------


def test_a_deleter_answering_nonsense_leaves_the_item_retryable(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    liar = plugin("liar", delete_manifest=lambda client, repository, digest: "gone")
    engine = engine_with(registry_server.url, tmp_path, liar)
    plan = engine.plan("ci")

    with pytest.raises(
        PluginError, match=r"plugin liar failed in delete_manifest: it answered 'gone'"
    ):
        engine.apply(plan.id, context=YES)

    assert pusher.resolve("ci/app", "b-1") == image.digest  # still there, and not counted
    assert engine.state.plans.get(plan.id).status == "failed"
    assert {s for s, _ in engine.state.plans.item_statuses(plan.id).values()} == {"failed"}
    assert events(engine, plan.id, "item.deleted") == []
    # The plan can be cancelled, or finished once the plugin is gone.
    fixed = engine_with(registry_server.url, tmp_path)
    assert fixed.apply(plan.id, context=YES).status == "done"
    assert pusher.resolve("ci/app", "b-1") is None


def test_a_deleter_raising_names_itself_and_stops_the_apply(registry_server, pusher, tmp_path):
    for n in range(3):
        pusher.push_image("ci/app", [f"b-{n}"], created=days_ago(30))
    broken = plugin("broken", delete_manifest=lambda client, repository, digest: boom())
    engine = engine_with(registry_server.url, tmp_path, broken)
    plan = engine.plan("ci")

    with pytest.raises(
        PluginError, match=r"plugin broken failed in delete_manifest: RuntimeError: boom"
    ):
        engine.apply(plan.id, context=YES)

    statuses = [s for s, _ in engine.state.plans.item_statuses(plan.id).values()]
    assert statuses.count("failed") == 1 and statuses.count("pending") == 2
    assert len(events(engine, plan.id, "apply.finished")) == 1
    assert all(pusher.resolve("ci/app", f"b-{n}") for n in range(3))
    state = tmp_path / "state.db"
    assert run(["--state", str(state), "cancel", plan.id]) == 0


# -- item 17: errors name the plugin and the hook; selectors and keep rules fail closed ------------


def selector_plugin(name: str, select: Callable[..., object]) -> types.ModuleType:
    class Selector:
        def select(self, images, context):
            return select(images, context)

    return plugin(
        name, register_selectors=lambda register: register(name, lambda options: Selector())
    )


def protector_plugin(name: str, protect: Callable[..., object]) -> types.ModuleType:
    class Protector:
        def protect(self, images, context):
            return protect(images, context)

    return plugin(
        name, register_protectors=lambda register: register(name, lambda options: Protector())
    )


def test_a_selector_that_raises_names_its_plugin_and_stores_no_plan(
    registry_server, pusher, tmp_path
):
    pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    acme = selector_plugin("acme", lambda images, context: boom())
    engine = engine_with(
        registry_server.url, tmp_path, acme, policy={**AGE, "selectors": [{"use": "acme"}]}
    )

    with pytest.raises(
        PluginError, match=r"plugin acme failed in select \(acme\): RuntimeError: boom"
    ):
        engine.plan("ci")

    assert engine.state.plans.find() == []


@pytest.mark.parametrize(
    "answer", [["not", "a", "mapping"], "everything", None], ids=["list", "str", "none"]
)
def test_a_keep_rule_answering_nonsense_fails_closed(registry_server, pusher, tmp_path, answer):
    pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    odd = protector_plugin("odd", lambda images, context: answer)
    engine = engine_with(
        registry_server.url, tmp_path, odd, policy={**AGE, "protectors": [{"use": "odd"}]}
    )

    with pytest.raises(PluginError, match=r"plugin odd failed in protect"):
        engine.plan("ci")
    assert engine.state.plans.find() == []


def test_a_keep_rule_that_raises_at_apply_deletes_nothing(registry_server, pusher, tmp_path):
    image = pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    calls = []

    def protect(images, context):
        calls.append(1)
        if len(calls) > 1:  # fine at plan time, broken at apply time
            raise RuntimeError("cluster unreachable")
        return {}

    flaky = protector_plugin("flaky", protect)
    engine = engine_with(
        registry_server.url, tmp_path, flaky, policy={**AGE, "protectors": [{"use": "flaky"}]}
    )
    plan = engine.plan("ci")

    with pytest.raises(PluginError, match="plugin flaky failed in protect"):
        engine.apply(plan.id, context=YES)
    assert pusher.resolve("ci/app", "b-1") == image.digest


def test_a_selector_answering_a_non_boolean_fails_closed(registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["b-1"], created=days_ago(30))
    sloppy = selector_plugin(
        "sloppy", lambda images, context: {i.digest: ("yes", "why not") for i in images}
    )
    engine = engine_with(
        registry_server.url, tmp_path, sloppy, policy={**AGE, "selectors": [{"use": "sloppy"}]}
    )

    with pytest.raises(UsageError, match="selector sloppy answered"):
        engine.plan("ci")


def test_a_factory_that_raises_names_its_plugin(registry_server, tmp_path):
    bad = plugin("bad", register_selectors=lambda register: register("bad", lambda options: boom()))
    engine = engine_with(
        registry_server.url, tmp_path, bad, policy={**AGE, "selectors": [{"use": "bad"}]}
    )

    with pytest.raises(PluginError, match=r"plugin bad failed in its selector factory 'bad'"):
        engine.plan("ci")


def test_an_approver_that_raises_names_its_plugin(registry_server, pusher, tmp_path):
    pusher.push_image("ci/app", ["b-1"], created=days_ago(30))

    class Approver:
        def approve(self, plan, context):
            raise KeyError("oops")

    voter = plugin("voter", register_approvers=lambda register: register("vote", Approver()))
    engine = engine_with(registry_server.url, tmp_path, voter, policy={**AGE, "approval": "vote"})
    plan = engine.plan("ci")

    with pytest.raises(PluginError, match=r"plugin voter failed in approve \(vote\): KeyError"):
        engine.apply(plan.id, context=YES)
    assert pusher.resolve("ci/app", "b-1") is not None


def test_a_plugin_failing_to_register_commands_keeps_help_and_plugins_working(capsys):
    manager = get_plugin_manager(
        load_entrypoints=False, extra_plugins=[plugin("cmds", register_commands=lambda cli: boom())]
    )

    assert run(["--help"], manager=manager) == 0
    assert run(["plugins"], manager=manager) == 0
    captured = capsys.readouterr()
    assert "plugin cmds failed in register_commands: RuntimeError: boom" in captured.err
    assert "cmds" in captured.out


def test_a_plugin_wrapping_a_hook_is_refused_when_loaded():
    def wrapper(plan, state):
        yield

    module = types.ModuleType("wrapping")
    module.plan_created = hookimpl(hookwrapper=True)(wrapper)

    with pytest.raises(UsageError, match="plugin 'wrapping' wraps the hook 'plan_created'"):
        get_plugin_manager(load_entrypoints=False, extra_plugins=[module])


@pytest.mark.parametrize("answer", ["2020-01-01", 42, object()], ids=["str", "int", "object"])
def test_a_time_source_answering_nonsense_gives_no_time_and_no_deletion(
    registry_server, pusher, tmp_path, answer
):
    pusher.push_image("ci/app", ["b-1"], created=None)  # no build time of its own
    clock = plugin(
        "clock", register_time_sources=lambda register: register("clock", lambda image: answer)
    )
    engine = engine_with(
        registry_server.url, tmp_path, clock, policy={**AGE, "time_source": ["clock"]}
    )

    plan = engine.plan("ci")

    assert plan.delete == []  # no trustworthy time: never selected by age
