"""Plugin configuration: ``[plugins.NAME]`` tables validated by the plugin, and
``approval = { use = "NAME", ... }`` options validated by the approver.

Plugins are registered in code (``extra_plugins``) and run by the real engine over a
real state DB; the command-line tests run ``regprune`` in an empty directory.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from regprune import Approval, Options, hookimpl
from regprune.cli import run
from regprune.config import parse_settings
from regprune.engine import Engine
from regprune.errors import ConfigError
from regprune.models import ApprovalContext
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State

REGISTRY = {"main": {"url": "http://127.0.0.1:5999"}}


def policy(**extra: Any) -> dict[str, Any]:
    return {
        "registry": "main",
        "repositories": ["apps/*"],
        "selectors": [{"use": "age", "older_than": "14d"}],
        **extra,
    }


class WebhookSettings(Options):
    url: str
    timeout: float = Field(default=5.0, gt=0)


def webhook_plugin(received: list[Options]) -> types.ModuleType:
    """A notifier plugin with settings of its own: ``[plugins.webhook] url = ...``."""
    module = types.ModuleType("webhook")

    def register_settings(register: Callable[..., None]) -> None:
        register(WebhookSettings, received.append)

    module.register_settings = hookimpl(register_settings)  # type: ignore[attr-defined]  # a module built in code
    return module


class TicketOptions(Options):
    queue: str
    reviewers: int = Field(default=1, ge=1)


class TicketApprover:
    """Approves when the ticket queue's options say so (records what it was given)."""

    options_model = TicketOptions

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def approve(self, plan: Any, context: ApprovalContext) -> Approval:
        self.seen.append(context.options)
        return Approval("pending", "", "ticket", note="decided in the ticket queue")


def ticket_plugin(approver: TicketApprover) -> types.ModuleType:
    module = types.ModuleType("ticket")

    def register_approvers(register: Callable[[str, Any], None]) -> None:
        register("ticket", approver)

    module.register_approvers = hookimpl(register_approvers)  # type: ignore[attr-defined]  # a module built in code
    return module


def engine(tmp_path: Path, document: dict[str, Any], *plugins: object) -> Engine:
    settings = parse_settings({"registry": REGISTRY, **document})
    manager = get_plugin_manager(load_entrypoints=False, extra_plugins=plugins)
    return Engine(settings, State(tmp_path / "state.db"), manager=manager)


# -- [plugins.NAME] ---------------------------------------------------------------------------


def test_a_plugin_gets_its_validated_table(tmp_path):
    received: list[Options] = []
    eng = engine(
        tmp_path,
        {"plugins": {"webhook": {"url": "https://hooks.example/x", "timeout": 2}}},
        webhook_plugin(received),
    )

    eng.catalog  # noqa: B018 (loading the catalog configures the plugins)

    assert received == [WebhookSettings(url="https://hooks.example/x", timeout=2.0)]
    assert eng.plugin_settings["webhook"] == received[0]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"url": "u", "timout": 1},
            "plugins.webhook.timout: unknown option (valid options: url, timeout)",
        ),
        (
            {"url": "u", "timeout": 0},
            "plugins.webhook.timeout: input should be greater than 0, got 0",
        ),
        ({"timeout": 1}, "plugins.webhook.url: required option missing"),
    ],
)
def test_a_bad_table_is_one_error_with_the_key_path(tmp_path, table, message):
    received: list[Options] = []
    eng = engine(tmp_path, {"plugins": {"webhook": table}}, webhook_plugin(received))

    with pytest.raises(ConfigError) as raised:
        eng.catalog  # noqa: B018
    assert raised.value.message == message
    assert received == []  # never configured with bad settings


def test_required_settings_without_a_table_name_the_table_to_add(tmp_path):
    eng = engine(tmp_path, {}, webhook_plugin([]))

    with pytest.raises(ConfigError, match=r"^plugins\.webhook\.url: required option missing$"):
        eng.catalog  # noqa: B018


def test_a_table_for_a_plugin_that_is_not_loaded_names_the_loaded_ones(tmp_path):
    eng = engine(tmp_path, {"plugins": {"webhok": {"url": "u"}}}, webhook_plugin([]))

    with pytest.raises(ConfigError) as raised:
        eng.catalog  # noqa: B018
    message = raised.value.message
    assert message.startswith("plugins.webhok: no loaded plugin is named 'webhok' (loaded: ")
    assert "webhook" in message and "regprune.plugins.age" in message
    assert message.endswith("check the name with `regprune plugins`, or remove the table")


def test_a_table_for_a_plugin_without_settings_is_an_error(tmp_path):
    eng = engine(tmp_path, {"plugins": {"age": {"x": 1}}})

    with pytest.raises(
        ConfigError, match=r"^plugins\.age: plugin 'regprune\.plugins\.age' takes no settings"
    ):
        eng.catalog  # noqa: B018


def test_a_table_must_be_a_table():
    with pytest.raises(ConfigError, match=r"plugins\.webhook: "):
        parse_settings({"registry": REGISTRY, "plugins": {"webhook": "url"}})


def test_unknown_table_through_the_command_line(isolated_cli, tmp_path, capsys):
    (tmp_path / "regprune.toml").write_text(
        '[registry.main]\nurl = "http://127.0.0.1:5999"\n\n'
        '[policy.ci]\nregistry = "main"\nrepositories = ["ci/*"]\n'
        'selectors = [{ use = "age", older_than = "14d" }]\n\n'
        "[plugins.semvr]\nkeep = 1\n",
        encoding="utf-8",
    )

    code = run(["plan"])  # fails before any request: the registry need not exist
    err = capsys.readouterr().err

    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: plugins.semvr: no loaded plugin is named 'semvr' (loaded: ")


# -- approval = { use = "NAME", ... } ---------------------------------------------------------


def test_approval_as_a_name_or_a_table(tmp_path):
    settings = parse_settings(
        {
            "registry": REGISTRY,
            "policy": {
                "bare": policy(approval="auto"),
                "table": policy(approval={"use": "auto"}),
                "default": policy(),
            },
        }
    )
    assert [p.approval for p in settings.policy.values()] == ["auto", "auto", "cli"]
    assert all(p.approval_options == {} for p in settings.policy.values())


def test_approver_options_are_validated_and_handed_to_approve(tmp_path):
    approver = TicketApprover()
    eng = engine(
        tmp_path,
        {"policy": {"ci": policy(approval={"use": "ticket", "queue": "ops", "reviewers": 2})}},
        ticket_plugin(approver),
    )
    eng.compile("ci")
    plan = types.SimpleNamespace(id="p-1", policy="ci", approval="ticket")

    eng.approve(plan, ApprovalContext(assume_yes=False, interactive=False, actor="me"))  # type: ignore[arg-type]  # a stand-in plan

    assert approver.seen == [TicketOptions(queue="ops", reviewers=2)]


@pytest.mark.parametrize(
    ("approval", "message"),
    [
        (
            {"use": "ticket", "queue": "ops", "reviewer": 2},
            "policy.ci.approval.reviewer: unknown option (valid options: queue, reviewers)",
        ),
        ({"use": "ticket"}, "policy.ci.approval.queue: required option missing"),
        (
            {"use": "auto", "queue": "ops"},
            "policy.ci.approval: this approver takes no options (got 'queue'); "
            'write approval = "NAME", or see the approver\'s documentation',
        ),
    ],
)
def test_bad_approver_options_name_the_key(tmp_path, approval, message):
    eng = engine(
        tmp_path, {"policy": {"ci": policy(approval=approval)}}, ticket_plugin(TicketApprover())
    )

    with pytest.raises(ConfigError) as raised:
        eng.compile("ci")
    assert raised.value.message == message


@pytest.mark.parametrize("table", [{"queue": "ops"}, {"use": 3}])
def test_an_approval_table_needs_use(table):
    with pytest.raises(ConfigError, match=r'policy\.ci\.approval: a table needs use = "NAME"'):
        parse_settings({"registry": REGISTRY, "policy": {"ci": policy(approval=table)}})


# -- time_source = [{ use = "NAME" }] --------------------------------------------------------


def test_time_source_entries_may_be_tables_naming_the_source():
    settings = parse_settings(
        {
            "registry": REGISTRY,
            "policy": {"ci": policy(time_source=["created", {"use": "first_seen"}])},
        }
    )
    assert settings.policy["ci"].time_source == ["created", "first_seen"]


@pytest.mark.parametrize("entry", [{"use": "label", "trust": "yes"}, {"name": "label"}])
def test_a_time_source_table_takes_only_use(entry):
    with pytest.raises(ConfigError, match=r"policy\.ci\.time_source: entry 1: a table names"):
        parse_settings(
            {"registry": REGISTRY, "policy": {"ci": policy(time_source=["created", entry])}}
        )


def test_a_plan_of_an_approval_table_records_the_approver_name(pusher, regprune_plan):
    pusher.push_image("app", ["old"])

    plan = regprune_plan({"selectors": [{"use": "count", "keep": 0}], "approval": {"use": "auto"}})

    assert plan.approval == "auto"  # stored and shown as before: the name alone
