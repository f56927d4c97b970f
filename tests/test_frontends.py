"""Front ends are plugins: core knows none of them by name.

A front end registers itself and its settings model through ``register_front_ends``;
core validates its section like any other, names key paths in errors, and rejects
sections nobody claims.  The Slack front end is a built-in through regprune's own
entry point, not through ``DEFAULT_PLUGINS``.  Approvers say "decided elsewhere" by a
property, never by their name.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from regprune import hookimpl
from regprune.cli import run
from regprune.config import parse_settings
from regprune.errors import ConfigError, UsageError
from regprune.frontends import FrontEnd, approvals_decided_by, collect_front_ends
from regprune.models import Approval, ApprovalContext, Plan
from regprune.plugin_manager import (
    BLOCK_ENV,
    DEFAULT_PLUGINS,
    LOAD_ENV,
    build_catalog,
    builtin_plugins,
    get_plugin_manager,
    plugin_rows,
)

ROOT = Path(__file__).resolve().parent.parent
SLACK_PLUGIN = "regprune.bots.slack.plugin"
REGISTRY = {"registry": {"local": {"url": "http://127.0.0.1:5000"}}}


class ChatSettings(BaseModel):
    """A test front end's section."""

    model_config = ConfigDict(extra="forbid")

    room: str
    approvals_required: int = Field(default=1, ge=1)


def front_end_plugin(name: str, *front_ends: FrontEnd) -> types.ModuleType:
    """A plugin module (made in code) that registers ``front_ends``."""
    module = types.ModuleType(name)

    @hookimpl
    def register_front_ends(register: Callable[[FrontEnd], None]) -> None:
        for front_end in front_ends:
            register(front_end)

    module.register_front_ends = register_front_ends  # type: ignore[attr-defined]  # a module built in code
    return module


def chat_front_ends(*extra: FrontEnd) -> dict[str, FrontEnd]:
    plugin = front_end_plugin("chat_plugin", FrontEnd(name="chat", settings=ChatSettings), *extra)
    return collect_front_ends(get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin]))


# -- core knows no front end ---------------------------------------------------------------


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a core module imports (relative imports resolved)."""
    package = ["regprune", *path.relative_to(ROOT / "core").parent.parts]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_core_imports_nothing_from_bots() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if ".bots" in m)
        for path in (ROOT / "core").rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
    assert not [name for name in DEFAULT_PLUGINS if ".bots." in name]


def test_with_the_slack_front_end_blocked_nothing_under_bots_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from regprune.cli import run; code = run(['plugins', '--json']); "
        "print(sorted(m for m in sys.modules if m.startswith('regprune.bots')))"
    )
    env = {**os.environ, BLOCK_ENV: "slack", LOAD_ENV: ""}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "regprune.bots.slack.plugin" not in out.stdout.rsplit("]", 1)[0]


# -- the Slack front end is a built-in through regprune's own entry point --------------------


def test_slack_is_a_builtin_from_regprunes_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_ENV, "")  # no third-party plugin: built-ins still load
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    assert SLACK_PLUGIN not in DEFAULT_PLUGINS
    assert SLACK_PLUGIN in builtin_plugins()

    manager = get_plugin_manager()

    assert manager.get_plugin(SLACK_PLUGIN) is not None
    row = {row["name"]: row for row in plugin_rows(manager)}[SLACK_PLUGIN]
    assert row["builtin"] is True
    assert "register_front_ends" in row["hooks"]
    assert "slack" in collect_front_ends(manager)
    assert "slack" in build_catalog(manager).approvers


@pytest.mark.parametrize("blocked", ["slack", "plugin", SLACK_PLUGIN])
def test_blocking_the_slack_front_end(monkeypatch: pytest.MonkeyPatch, blocked: str) -> None:
    monkeypatch.setenv(BLOCK_ENV, blocked)

    manager = get_plugin_manager(load_entrypoints=False)

    assert manager.get_plugin(SLACK_PLUGIN) is None
    assert "slack" not in collect_front_ends(manager)
    assert "slack" not in build_catalog(manager).approvers
    # Its section is then a section nobody claims: one clear error, as for a typo.
    with pytest.raises(ConfigError, match=r"^config: slack: unknown key"):
        parse_settings(
            {**REGISTRY, "slack": {"channel": "C1"}}, front_ends=collect_front_ends(manager)
        )


def test_regprune_plugins_lists_front_ends(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["registered"]["front_ends"] == ["listen", "slack"]
    assert "slack" in data["registered"]["approvers"]


def test_the_bot_command_still_comes_from_the_slack_plugin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["bot", "slack", "--help"]) == 0
    assert "Run the Slack approval bot" in capsys.readouterr().out


# -- a front end's settings are validated by core ------------------------------------------


def test_a_claimed_section_is_validated_by_its_front_end() -> None:
    settings = parse_settings(
        {**REGISTRY, "chat": {"room": "ops", "approvals_required": 2}},
        front_ends=chat_front_ends(),
    )

    chat = settings.front_end_settings("chat", ChatSettings)
    assert chat == ChatSettings(room="ops", approvals_required=2)
    assert settings.front_end("nobody") is None
    with pytest.raises(TypeError):
        settings.front_end_settings("chat", FrontEndLike)


class FrontEndLike(BaseModel):
    """Another model: asking for the chat section as this one is a programming error."""


def test_front_end_errors_name_the_key_path_and_come_with_core_errors() -> None:
    data = {
        "registry": {"local": {"url": "http://127.0.0.1:5000", "retries": -1}},
        "chat": {"approvals_required": 0, "romo": "x"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, source="regprune.toml", front_ends=chat_front_ends())

    message = caught.value.message
    assert "\n" not in message
    assert message.startswith("regprune.toml: registry.local.retries: ")
    assert "chat.room: required key is missing" in message
    assert "chat.approvals_required: Input should be greater than or equal to 1" in message
    assert "chat.romo: unknown key (check the spelling; see docs/configuration.md)" in message


def test_a_section_nobody_claims_is_one_error() -> None:
    with pytest.raises(ConfigError, match=r"^config: chat: unknown key"):
        parse_settings({**REGISTRY, "chat": {"room": "ops"}}, front_ends={})


def test_a_claimed_section_that_is_not_a_table_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"chat: must be a table \(\[chat\]\), not str"):
        parse_settings({**REGISTRY, "chat": "ops"}, front_ends=chat_front_ends())


def test_slack_keys_are_spelled_as_before_and_errors_name_them() -> None:
    with pytest.raises(ConfigError, match=r"slack\.approvals_required: .*greater than or equal"):
        parse_settings({**REGISTRY, "slack": {"channel": "C1", "approvals_required": 0}})
    with pytest.raises(ConfigError, match=r"slack\.plan_ttl: must be longer than 0"):
        parse_settings({**REGISTRY, "slack": {"plan_ttl": "0s"}})


def test_front_end_sections_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_cli: None
) -> None:
    config = tmp_path / "regprune.toml"
    config.write_text('[chat]\nroom = "ops"\napprovals_required = 0\n', encoding="utf-8")
    plugin = front_end_plugin("chat_plugin", FrontEnd(name="chat", settings=ChatSettings))
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])

    code = run(["--config", str(config), "plan"], manager=manager)

    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [
        f"error: {config}: chat.approvals_required: Input should be greater than or equal to 1"
    ]


# -- registration mistakes are one line naming the plugin ----------------------------------


@pytest.mark.parametrize(
    ("front_ends", "message"),
    [
        (
            [FrontEnd(name="chat"), FrontEnd(name="chat")],
            "plugins 'chat_plugin' and 'chat_plugin' both register the front end 'chat'",
        ),
        (
            [
                FrontEnd(name="one", settings=ChatSettings, section="room"),
                FrontEnd(name="two", settings=ChatSettings, section="room"),
            ],
            "both claim the config section [room]",
        ),
        (
            [FrontEnd(name="mine", settings=ChatSettings, section="policy")],
            "claims the config section [policy], which regprune itself uses",
        ),
        ([FrontEnd(name="has space")], "use letters, digits"),
        ([FrontEnd(name="x", settings=dict)], "must be a pydantic model class"),  # type: ignore[arg-type]  # the mistake under test
    ],
)
def test_bad_registrations(front_ends: list[FrontEnd], message: str) -> None:
    plugin = front_end_plugin("chat_plugin", *front_ends)
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    with pytest.raises(UsageError, match=None) as caught:
        collect_front_ends(manager)
    assert message in caught.value.message
    assert BLOCK_ENV in caught.value.message


def test_registering_something_else_than_a_front_end() -> None:
    module = types.ModuleType("odd")
    module.register_front_ends = hookimpl(lambda register: register("chat"))  # type: ignore[attr-defined]  # a module built in code
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=[module])
    with pytest.raises(UsageError, match="plugin 'odd' registered 'chat' as a front end"):
        collect_front_ends(manager)


# -- "decided elsewhere" is a property of the approver, never its name ----------------------


class ElsewhereApprover:
    decided_elsewhere = True
    front_end = "chat"
    waiting = "waits for approval in the chat room; the chat bot applies it"

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        return Approval("pending", "", "room")


class AutoNamedSlack:
    """An approver that happens to be called "slack" but decides at once."""

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        return Approval("approved", "policy", "slack")


def approver_plugin(name: str, approver: object) -> types.ModuleType:
    module = types.ModuleType(f"approver_{name}")
    module.register_approvers = hookimpl(  # type: ignore[attr-defined]  # a module built in code
        lambda register: register(name, approver)
    )
    return module


def test_approvals_decided_by_a_front_end_are_found_by_property() -> None:
    approvers = {"room": ElsewhereApprover(), "slack": AutoNamedSlack(), "cli": object()}
    assert approvals_decided_by(approvers, "chat") == {"room"}
    assert approvals_decided_by(approvers, "slack") == set()


def plan_output(
    registry_server, pusher, tmp_path: Path, capsys, approval: str, approver: object = None
) -> tuple[int, str]:
    """Exit code and output of a quick-mode plan with ``--approval approval``: the
    installed plugins when ``approver`` is None, else the built-ins and ``approver``
    registered under that name."""
    from regprune.testing import days_ago

    if approver is None:
        manager = get_plugin_manager()
    else:
        manager = get_plugin_manager(
            load_entrypoints=False, extra_plugins=[approver_plugin(approval, approver)]
        )
    pusher.push_image("ci/app", ["old"], created=days_ago(30))
    argv = [
        "--state",
        str(tmp_path / "state.db"),
        "plan",
        "--registry",
        registry_server.url,
        "--repo",
        "ci/*",
        "--older-than",
        "14d",
        "--approval",
        approval,
    ]
    code = run(argv, manager=manager)
    return code, capsys.readouterr().out


def test_plan_says_where_a_front_end_decides(
    registry_server, pusher, tmp_path: Path, capsys, isolated_cli: None
) -> None:
    code, out = plan_output(registry_server, pusher, tmp_path, capsys, "room", ElsewhereApprover())
    assert code == 0
    assert "waits for approval in the chat room; the chat bot applies it." in out
    assert "Apply it with" not in out


def test_an_approver_named_slack_is_not_decided_elsewhere_by_its_name(
    registry_server,
    pusher,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    isolated_cli: None,
) -> None:
    monkeypatch.setenv(BLOCK_ENV, "slack")
    code, out = plan_output(registry_server, pusher, tmp_path, capsys, "slack", AutoNamedSlack())
    assert code == 0
    assert "Apply it with: regprune apply" in out
    assert "waits for approval" not in out


def test_the_slack_approver_still_waits_for_slack(
    registry_server, pusher, tmp_path: Path, capsys, isolated_cli: None
) -> None:
    code, out = plan_output(registry_server, pusher, tmp_path, capsys, "slack")
    assert code == 0
    assert "waits for approval in Slack; the bot applies it." in out


# -- any section content: a validated model or one line naming the key path ----------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["room", "approvals_required", "rom", "x.y", ""]), JSONISH, max_size=4
    )
)
def test_any_front_end_section_is_validated_or_one_error_line(section: dict[str, object]) -> None:
    front_ends = CHAT_FRONT_ENDS
    try:
        parsed = parse_settings({**REGISTRY, "chat": section}, front_ends=front_ends)
    except ConfigError as exc:
        message = exc.message
        assert "\n" not in message
        # "; " before a key path separates problems (a message may hold "; " too).
        problems = re.split(r"; (?=\S+: )", message.removeprefix("config: "))
        assert problems and all(problem.startswith("chat") for problem in problems), message
        return
    chat = parsed.front_end_settings("chat", ChatSettings)
    assert chat is not None
    assert chat == ChatSettings.model_validate(section)


CHAT_FRONT_ENDS = chat_front_ends()
