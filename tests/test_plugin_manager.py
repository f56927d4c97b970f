"""The plugin manager: built-ins are plugins, installed plugins come from entry points,
and every way a plugin can break ends in one line that names the way out.

Installed plugins are simulated with a real distribution on ``sys.path``: a
``*.dist-info`` directory with ``METADATA`` and ``entry_points.txt`` next to the
plugin's module, which is what ``pip install`` leaves behind.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

from regprune import hookimpl
from regprune.cli import run
from regprune.errors import UsageError
from regprune.plugin_manager import (
    BLOCK_ENV,
    ENTRY_POINT_GROUP,
    LOAD_ENV,
    build_catalog,
    builtin_plugins,
    get_plugin_manager,
    plugin_rows,
)

# The modules of DEFAULT_PLUGINS and regprune's own entry points (the Slack front end).
BUILTINS = builtin_plugins()

SELECTOR_PLUGIN = """
from regprune import hookimpl


class Nothing:
    def select(self, images, context):
        return {}


@hookimpl
def register_selectors(register):
    register("SELECTOR", lambda options: Nothing())
"""


def selector_plugin(name: str) -> str:
    """Source of a plugin module registering an (inert) selector ``name``."""
    return SELECTOR_PLUGIN.replace("SELECTOR", name)


Installer = Callable[..., Path]


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv(LOAD_ENV, raising=False)


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    """``install(dist, version, {entry_point: module}, {module: source})``: a fake installed package."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def make(
        dist: str, version: str, entry_points: dict[str, str], sources: dict[str, str]
    ) -> Path:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in sources.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            modules.append(module)
        importlib.invalidate_caches()
        return info

    yield make
    for module in modules:
        sys.modules.pop(module, None)


def plugin_names(manager: pluggy.PluginManager) -> set[str]:
    return {name for name, plugin in manager.list_name_plugin() if plugin is not None}


def extra(name: str, **functions: Callable[..., object]) -> types.ModuleType:
    """A plugin module made in code, as ``extra_plugins`` takes them."""
    module = types.ModuleType(name)
    for attribute, function in functions.items():
        setattr(module, attribute, function)
    return module


# -- built-ins are plugins -----------------------------------------------------------------


def test_builtins_are_registered_like_third_party_plugins(install):
    install(
        "regprune-fake",
        "1.0",
        {"fake": "fake_selector"},
        {"fake_selector": selector_plugin("fake")},
    )
    manager = get_plugin_manager()

    for module_name in BUILTINS:
        # Registered as the module object itself, under its name, through register().
        assert manager.get_plugin(module_name) is importlib.import_module(module_name)
    implementations = manager.hook.register_selectors.get_hookimpls()
    by_name = {impl.plugin_name: impl for impl in implementations}
    assert {"regprune.plugins.age", "regprune.plugins.count", "fake"} <= set(by_name)
    # Same hook, same kind of implementation: a module function marked with @hookimpl.
    assert by_name["regprune.plugins.age"].function.__module__ == "regprune.plugins.age"
    assert by_name["fake"].function.__module__ == "fake_selector"
    assert isinstance(by_name["fake"].plugin, types.ModuleType)
    catalog = build_catalog(manager)
    assert {"age", "count", "branch", "fake"} <= set(catalog.selectors)


def test_every_builtin_implements_a_hook():
    manager = get_plugin_manager(load_entrypoints=False)
    for module_name in BUILTINS:
        hooks = manager.get_hookcallers(manager.get_plugin(module_name)) or []
        assert hooks, f"{module_name} implements no hook"


def test_without_entry_points_only_builtins_and_extras_load(install):
    install(
        "regprune-fake",
        "1.0",
        {"fake": "fake_selector"},
        {"fake_selector": selector_plugin("fake")},
    )
    mine = extra("mine", register_selectors=hookimpl(lambda register: register("mine", dict)))

    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[mine])

    assert plugin_names(manager) == {*BUILTINS, "mine"}


def test_a_later_plugin_answers_a_firstresult_hook_before_the_builtin():
    calls = []

    def delete_manifest(repository, digest):
        calls.append((repository, digest))
        return "absent"

    manager = get_plugin_manager(
        load_entrypoints=False,
        extra_plugins=[extra("rehearsal", delete_manifest=hookimpl(delete_manifest))],
    )

    # The built-in deleter would need a real client; it is never asked.
    answer = manager.hook.delete_manifest(
        client=None, repository="r", digest="d", registry="local", settings=None
    )
    assert answer == "absent"
    assert calls == [("r", "d")]


# -- blocking and choosing plugins -----------------------------------------------------------


@pytest.mark.parametrize("blocked", ["age", "regprune.plugins.age"])
def test_block_a_builtin_by_short_or_full_name(monkeypatch, blocked):
    monkeypatch.setenv(BLOCK_ENV, f"count, {blocked}")

    manager = get_plugin_manager(load_entrypoints=False)

    assert "regprune.plugins.age" not in plugin_names(manager)
    assert "regprune.plugins.count" not in plugin_names(manager)
    assert set(build_catalog(manager).selectors) == {"branch", "untagged", "unused"}


def test_block_an_entry_point_plugin_without_importing_it(install, monkeypatch):
    install(
        "regprune-fake",
        "1.0",
        {"fake": "fake_selector"},
        {"fake_selector": selector_plugin("fake")},
    )
    assert "fake" in build_catalog(get_plugin_manager()).selectors
    sys.modules.pop("fake_selector", None)

    monkeypatch.setenv(BLOCK_ENV, "fake")
    manager = get_plugin_manager()

    assert "fake" not in plugin_names(manager)
    assert manager.is_blocked("fake")
    assert "fake" not in build_catalog(manager).selectors
    assert "fake_selector" not in sys.modules


def test_load_plugins_empty_loads_no_third_party_plugin(install, monkeypatch):
    install(
        "regprune-fake",
        "1.0",
        {"fake": "fake_selector"},
        {"fake_selector": selector_plugin("fake")},
    )
    monkeypatch.setenv(LOAD_ENV, "")

    manager = get_plugin_manager()

    assert plugin_names(manager) == set(BUILTINS)
    assert not [row for row in plugin_rows(manager) if not row["builtin"]]


def test_load_plugins_names_the_ones_to_load(install, monkeypatch):
    install(
        "regprune-two",
        "2.0",
        {"one": "plugin_one", "two": "plugin_two"},
        {
            "plugin_one": selector_plugin("one"),
            "plugin_two": selector_plugin("two"),
        },
    )
    monkeypatch.setenv(LOAD_ENV, "two")

    manager = get_plugin_manager()

    assert plugin_names(manager) == {*BUILTINS, "two"}
    assert "one" not in build_catalog(manager).selectors


# -- when plugins break ------------------------------------------------------------------


def test_a_broken_entry_point_is_one_line_naming_the_plugin_and_the_way_out(install, capsys):
    install(
        "regprune-broken",
        "0.1",
        {"broken": "broken_plugin"},
        {"broken_plugin": "raise RuntimeError('cannot find libfoo.so\\nsecond line')\n"},
    )

    with pytest.raises(UsageError) as caught:
        get_plugin_manager()

    message = caught.value.message
    assert message.startswith("plugin 'broken' failed to load (RuntimeError: cannot find libfoo.so")
    assert message.endswith(f"set {BLOCK_ENV}=broken to run without it")
    assert caught.value.exit_code == 2

    assert run(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: plugin 'broken' failed to load")
    assert f"{BLOCK_ENV}=broken" in err


def test_blocking_the_broken_plugin_gets_regprune_running(install, monkeypatch, capsys):
    install(
        "regprune-broken",
        "0.1",
        {"broken": "broken_plugin"},
        {"broken_plugin": "import no_such_module_anywhere\n"},
    )
    monkeypatch.setenv(BLOCK_ENV, "broken")

    assert run(["plugins", "--json"]) == 0
    assert '"broken"' not in capsys.readouterr().out


def test_two_plugins_registering_the_same_selector_is_an_error(install, monkeypatch, capsys):
    install(
        "regprune-dup",
        "1.0",
        {"dup-a": "dup_a", "dup-b": "dup_b"},
        {
            "dup_a": selector_plugin("dup"),
            "dup_b": selector_plugin("dup"),
        },
    )
    monkeypatch.setenv(LOAD_ENV, "dup-a,dup-b")

    with pytest.raises(
        UsageError,
        match=f"plugins 'dup-[ab]' and 'dup-[ab]' both register the selector 'dup'; block one with {BLOCK_ENV}",
    ):
        build_catalog(get_plugin_manager())

    with pytest.raises(UsageError) as raised:
        build_catalog(get_plugin_manager())
    assert "'dup-a'" in raised.value.message and "'dup-b'" in raised.value.message

    assert run(["plugins"]) == 2
    assert "both register the selector 'dup'" in capsys.readouterr().err

    monkeypatch.setenv(BLOCK_ENV, "dup-b")
    assert "dup" in build_catalog(get_plugin_manager()).selectors


def test_a_plugin_reusing_a_builtin_name_is_an_error():
    again = extra("again", register_selectors=hookimpl(lambda register: register("age", dict)))

    with pytest.raises(UsageError, match="both register the selector 'age'") as raised:
        build_catalog(get_plugin_manager(load_entrypoints=False, extra_plugins=[again]))
    assert "'regprune.plugins.age'" in raised.value.message  # both plugins are named
    assert "'again'" in raised.value.message


def test_check_pending_catches_a_misspelled_hookimpl():
    typo = extra("typo", register_selector=hookimpl(lambda register: None))

    # pluggy accepts the registration; check_pending() is what notices.
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    from regprune import hookspecs

    manager.add_hookspecs(hookspecs)
    manager.register(typo)
    with pytest.raises(pluggy.PluginValidationError):
        manager.check_pending()

    with pytest.raises(UsageError) as caught:
        get_plugin_manager(load_entrypoints=False, extra_plugins=[typo])
    assert caught.value.message == (
        "plugin 'typo' implements 'register_selector', which regprune does not define "
        f"(see docs/plugins/hooks.md); set {BLOCK_ENV}=typo to run without it"
    )


def test_a_misspelled_hook_in_an_installed_plugin(install, capsys):
    install(
        "regprune-typo",
        "1.0",
        {"typo": "typo_plugin"},
        {
            "typo_plugin": """
            from regprune import hookimpl


            @hookimpl
            def register_selector(register):
                pass
        """
        },
    )

    assert run(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: plugin 'typo' implements 'register_selector', which regprune does not define "
        f"(see docs/plugins/hooks.md); set {BLOCK_ENV}=typo to run without it\n"
    )


def test_a_hookimpl_with_an_argument_the_hook_lacks(install):
    install(
        "regprune-args",
        "1.0",
        {"args": "args_plugin"},
        {
            "args_plugin": """
            from regprune import hookimpl


            @hookimpl
            def register_selectors(register, options):
                pass
        """
        },
    )

    with pytest.raises(UsageError) as caught:
        get_plugin_manager()
    message = caught.value.message
    assert message.startswith("plugin 'args' is invalid (")
    assert "options" in message
    assert "\n" not in message
    assert message.endswith(f"set {BLOCK_ENV}=args to run without it")


# -- what `regprune plugins` shows ---------------------------------------------------------


def test_plugin_rows_show_the_distribution_of_entry_point_plugins(install, monkeypatch):
    install(
        "regprune-fake",
        "1.2.3",
        {"fake": "fake_selector"},
        {"fake_selector": selector_plugin("fake")},
    )
    monkeypatch.setenv(LOAD_ENV, "fake")
    mine = extra("mine", register_selectors=hookimpl(lambda register: register("mine", dict)))

    rows = {row["name"]: row for row in plugin_rows(get_plugin_manager(extra_plugins=[mine]))}

    assert rows["fake"] == {
        "name": "fake",
        "builtin": False,
        "hooks": ["register_selectors"],
        "distribution": "regprune-fake 1.2.3",
    }
    assert rows["mine"]["distribution"] is None
    assert rows["mine"]["builtin"] is False
    for module_name in BUILTINS:
        assert rows[module_name]["builtin"] is True
        assert rows[module_name]["distribution"] is None


def test_a_plugin_in_code_named_like_an_entry_point_gets_no_distribution(install, monkeypatch):
    install(
        "regprune-fake",
        "1.2.3",
        {"fake": "fake_selector"},
        {"fake_selector": selector_plugin("fake")},
    )
    monkeypatch.setenv(LOAD_ENV, "")
    impostor = extra("fake", register_selectors=hookimpl(lambda register: None))

    rows = {row["name"]: row for row in plugin_rows(get_plugin_manager(extra_plugins=[impostor]))}

    assert rows["fake"]["distribution"] is None


# -- blocking by distribution, and names that block nothing ----------------------------------


def _two_plugin_distribution(install: Installer) -> None:
    install(
        "regprune-pair",
        "1.0",
        {"pair-a": "pair_a", "pair-b": "pair_b"},
        {"pair_a": selector_plugin("pair_a"), "pair_b": selector_plugin("pair_b")},
    )


@pytest.mark.parametrize("spelled", ["regprune-pair", "Regprune_Pair", "regprune.pair"])
def test_block_a_distribution_blocks_every_plugin_it_ships(install, monkeypatch, capsys, spelled):
    _two_plugin_distribution(install)
    assert {"pair-a", "pair-b"} <= plugin_names(get_plugin_manager())

    monkeypatch.setenv(BLOCK_ENV, spelled)
    manager = get_plugin_manager()

    assert not {"pair-a", "pair-b"} & plugin_names(manager)
    assert manager.is_blocked("pair-a") and manager.is_blocked("pair-b")
    assert "regprune.plugins.age" in plugin_names(manager)  # built-ins are not its plugins
    assert run(["plugins"]) == 0
    assert "warning" not in capsys.readouterr().err  # the name matched: nothing to warn about


def test_a_blocked_name_that_matches_nothing_is_one_warning_line(install, monkeypatch, capsys):
    _two_plugin_distribution(install)
    monkeypatch.setenv(BLOCK_ENV, "pair-a, semvr ,age")

    assert run(["plugins", "--json"]) == 0
    err = capsys.readouterr().err

    assert err.splitlines() == [
        f"warning: {BLOCK_ENV}: 'semvr' matches no plugin or distribution, so nothing was "
        "blocked for it (installed plugins: "
        + ", ".join(sorted(ep.name for ep in importlib.metadata.entry_points(group="regprune")))
        + "; see `regprune plugins`)"
    ]


def test_a_load_name_that_matches_nothing_is_one_warning_line(install, monkeypatch, capsys):
    """REGPRUNE_LOAD_PLUGINS=nope loaded nothing, silently; BLOCK already warned."""
    _two_plugin_distribution(install)
    monkeypatch.setenv(LOAD_ENV, "pair-a,paira")

    assert run(["plugins", "--json"]) == 0
    err = capsys.readouterr().err

    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"warning: {LOAD_ENV}: 'paira' matches no installed plugin")
    assert "pair-a" in err  # the installed plugins are listed


def test_blocked_names_that_all_match_warn_nothing(install, monkeypatch, capsys):
    _two_plugin_distribution(install)
    monkeypatch.setenv(BLOCK_ENV, "pair-a,regprune.plugins.count,age,regprune-pair")

    assert run(["plugins"]) == 0
    assert capsys.readouterr().err == ""


# -- tracing hook calls ------------------------------------------------------------------------


def test_trace_hooks_logs_each_call_with_plugin_arguments_duration_and_answer(monkeypatch, capsys):
    from regprune.hookcalls import TRACE_ENV, first_result, notify

    deleter = extra(
        "answering",
        delete_manifest=hookimpl(lambda client, repository, digest: "deleted"),
    )

    def broken(plan, state):
        raise RuntimeError("boom")

    listener = extra("listening", plan_created=hookimpl(broken))
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[deleter, listener])
    digest = "sha256:" + "ab" * 32

    monkeypatch.setenv(TRACE_ENV, "1")
    capsys.readouterr()
    assert first_result(
        manager, "delete_manifest", client=object(), repository="apps/web", digest=digest
    ) == ("answering", "deleted")
    with pytest.raises(AttributeError):  # the built-in audit log needs a state: raised last
        notify(
            manager, "plan_created", plan=types.SimpleNamespace(id="p-1"), state=None, audit=None
        )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trace:")]

    pattern = (
        r"^trace: delete_manifest answering\(client=object, repository='apps/web', "
        r"digest='sha256:abab[^,]*'\) \d+\.\d ms -> 'deleted'$"
    )
    assert re.match(pattern, lines[0]), lines[0]
    assert any(
        re.match(
            r"^trace: plan_created listening\(plan=SimpleNamespace\(p-1\), state=None\) "
            r"\d+\.\d ms raised RuntimeError$",
            line,
        )
        for line in lines
    ), lines
    assert any(
        line.startswith("trace: plan_created regprune.plugins.audit(plan=SimpleNamespace(p-1)")
        and line.endswith("raised AttributeError")
        for line in lines
    ), lines


def test_trace_hooks_is_off_unless_asked(monkeypatch, capsys):
    from regprune.hookcalls import TRACE_ENV

    for value in (None, "", "0"):
        if value is None:
            monkeypatch.delenv(TRACE_ENV, raising=False)
        else:
            monkeypatch.setenv(TRACE_ENV, value)
        assert run(["plugins", "--json"]) == 0
        assert "trace:" not in capsys.readouterr().err


def test_trace_hooks_through_the_command_line_leaves_stdout_alone(monkeypatch, capsys):
    import json

    from regprune.hookcalls import TRACE_ENV

    monkeypatch.setenv(TRACE_ENV, "1")
    assert run(["plugins", "--json"]) == 0
    out, err = capsys.readouterr()

    assert "age" in json.loads(out)["registered"]["selectors"]
    assert re.search(
        r"^trace: register_selectors regprune\.plugins\.age\(register=register\(\)\) "
        r"\d+\.\d ms -> None$",
        err,
        re.M,
    ), err
