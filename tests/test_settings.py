"""Settings are immutable once parsed: every change is a copy, never an edit in place.

One parsed ``Settings`` is shared by the CLI's engine, quick mode, and every worker
thread of the Slack bot; an edit by one would change what the others apply.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from regprune.config import PluginSpec, PolicySettings, RegistrySettings, Settings, parse_settings
from regprune.engine import Engine
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State
from regprune.testing import DEFAULT_REGISTRY, make_settings

from .test_state import make_plan

URL = "http://127.0.0.1:5000"
POLICY = {
    "repositories": ["ci/*"],
    "selectors": [{"use": "age", "older_than": "7d"}],
    "keep_tags": ["^v"],
}


def parsed() -> Settings:
    return make_settings(
        URL, POLICY, name="ci", registry_options={"gc": {"command": ["true"]}, "retries": 1}
    )


ASSIGNMENTS: list[tuple[str, Callable[[Settings], None]]] = [
    ("registry", lambda s: setattr(s, "registry", {})),
    ("policy", lambda s: setattr(s, "policy", {})),
    ("state", lambda s: setattr(s.state, "plan_retention", "1d")),
    ("registry.url", lambda s: setattr(s.registry[DEFAULT_REGISTRY], "url", "http://evil:1")),
    ("registry.retries", lambda s: setattr(s.registry[DEFAULT_REGISTRY], "retries", 0)),
    ("registry.gc.command", lambda s: setattr(s.registry[DEFAULT_REGISTRY].gc, "command", [])),
    ("policy.registry", lambda s: setattr(s.policy["ci"], "registry", "other")),
    ("policy.approval", lambda s: setattr(s.policy["ci"], "approval", "auto")),
    ("policy.keep_tags", lambda s: setattr(s.policy["ci"], "keep_tags", [])),
    ("selector.use", lambda s: setattr(s.policy["ci"].selectors[0], "use", "count")),
]


@pytest.mark.parametrize("change", [c for _, c in ASSIGNMENTS], ids=[n for n, _ in ASSIGNMENTS])
def test_assigning_to_a_parsed_settings_field_raises(change: Callable[[Settings], None]) -> None:
    settings = parsed()
    before = settings.model_dump()

    with pytest.raises(ValidationError, match="frozen"):
        change(settings)

    assert settings.model_dump() == before


@pytest.mark.parametrize("table", ["registry", "policy"])
def test_the_registry_and_policy_tables_are_read_only(table: str) -> None:
    settings = parsed()
    tables = getattr(settings, table)
    key = next(iter(tables))

    with pytest.raises(TypeError):
        tables["added"] = tables[key]
    with pytest.raises(TypeError):
        del tables[key]
    assert list(getattr(settings, table)) == [key]


def test_with_registry_and_with_policy_are_copies() -> None:
    settings = parsed()
    quick = PolicySettings(
        registry="extra", repositories=["x/*"], selectors=[PluginSpec(use="count", keep=1)]
    )

    changed = settings.with_registry("extra", RegistrySettings(url="http://127.0.0.1:6000"))
    changed = changed.with_policy("quick", quick)

    assert sorted(changed.registry) == ["extra", DEFAULT_REGISTRY]
    assert sorted(changed.policy) == ["ci", "quick"]
    assert list(settings.registry) == [DEFAULT_REGISTRY] and list(settings.policy) == ["ci"]
    with pytest.raises(TypeError):
        changed.registry["more"] = changed.registry["extra"]  # type: ignore[index]  # read-only on purpose


def test_a_dump_parses_back_to_equal_settings() -> None:
    settings = parsed()

    assert parse_settings(settings.model_dump()) == settings


def test_applying_a_quick_mode_plan_leaves_shared_settings_unchanged(tmp_path) -> None:
    """The bot's worker threads share one Settings: a quick-mode plan's registry (known
    only by its URL) is added to the engine's own copy, not to the shared object."""
    shared = parse_settings({})
    engines = [
        Engine(
            shared, State(tmp_path / f"{n}.db"), manager=get_plugin_manager(load_entrypoints=False)
        )
        for n in range(2)
    ]
    plan = make_plan(registry="http://127.0.0.1:5999", registry_url="http://127.0.0.1:5999")

    client = engines[0].client_for_plan(plan)

    assert client is engines[0].client(plan.registry)
    assert dict(shared.registry) == {}
    assert dict(engines[1].settings.registry) == {}
    assert engines[1].settings is shared
    assert engines[0].settings.registry[plan.registry].url == plan.registry_url
    for engine in engines:
        engine.close()
        engine.state.close()
