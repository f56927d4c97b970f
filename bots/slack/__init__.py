"""The Slack approval bot (see docs/slack.md).

Public surface, imported lazily so that ``regprune`` starts without slack_bolt:
``create_app`` (the bolt app factory), ``SlackService`` (the rules, testable without
HTTP), ``HttpServer`` (HTTP mode on ``/slack/events``) and ``run_bot`` (what
``regprune bot slack`` runs).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["HttpServer", "SlackService", "create_app", "run_bot"]

_WHERE = {
    "create_app": ".app",
    "SlackService": ".service",
    "HttpServer": ".server",
    "run_bot": ".runner",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
