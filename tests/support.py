"""Helpers for engine tests: settings for a test registry and an engine over a real state DB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from regprune.config import Settings, parse_settings
from regprune.engine import Engine
from regprune.models import ApprovalContext
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State

YES = ApprovalContext(assume_yes=True, interactive=False, actor="tester")


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def settings_for(url: str, policies: dict[str, dict[str, Any]], **registry: Any) -> Settings:
    data: dict[str, Any] = {"registry": {"local": {"url": url, **registry}}, "policy": {}}
    for name, policy in policies.items():
        data["policy"][name] = {"registry": "local", **policy}
    return parse_settings(data)


def engine_for(
    url: str, state_dir: Path, policies: dict[str, dict[str, Any]], **registry: Any
) -> Engine:
    settings = settings_for(url, policies, **registry)
    state = State(state_dir / "state.db")
    return Engine(settings, state, manager=get_plugin_manager(load_entrypoints=False))


def deleted_digests(plan) -> set[str]:
    return {item.digest for item in plan.delete}


def kept(plan, digest: str) -> list[str]:
    for item in plan.keep:
        if item.digest == digest:
            return list(item.reasons)
    raise AssertionError(f"{digest} is not in the plan's keep list")
