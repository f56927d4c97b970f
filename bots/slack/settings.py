"""The ``[slack]`` section of the config: the Slack front end's settings model.

Registered with core through ``register_front_ends`` (see ``plugin.py``); core
validates the section with this model and names key paths in its errors
(``slack.approvals_required: ...``).  Only pydantic here: the CLI imports it at
start-up, long before slack_bolt is needed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from regprune.config import Settings
from regprune.durations import parse_positive_duration

NAME = "slack"
"""The front end's name: its validated section and message references are kept under it."""
SECTION = "slack"
"""Its top-level config section, ``[slack]``."""
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]+$")
"""A conversation ID: C… (channel), G… (private channel, older workspaces), D… (DM)."""


class SlackSettings(BaseModel):
    """The Slack approval bot."""

    model_config = ConfigDict(extra="forbid", strict=True)

    channel: str | None = Field(default=None, description="Channel ID plans are posted to.")
    approvers: list[str] = Field(
        default_factory=list, description="Slack user IDs who may approve."
    )
    approver_groups: list[str] = Field(
        default_factory=list, description="Slack user-group IDs whose members may approve."
    )
    team_id: str | None = Field(default=None, description="Only clicks from this workspace count.")
    approvals_required: int = Field(
        default=1, ge=1, le=100, description="Distinct approvals needed."
    )
    allow_self_approval: bool = Field(
        default=False, description="Whether the requester may approve their own plan."
    )
    plan_ttl: str = Field(default="24h", description="How long a posted plan can be approved.")
    api_url: str | None = Field(
        default=None, description="Slack Web API base URL (proxies, tests)."
    )

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
            raise ValueError(
                f"{value!r} is not an http:// or https:// URL with a host (and no user "
                "info), e.g. https://slack-proxy.example.org/api/"
            )
        return value

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        # Names are refused like approvers' names (runner.check_settings): a name can be
        # renamed or reused, and chat.postMessage answers for an ID, not for "#name".
        if value is not None and not CHANNEL_ID.match(value):
            raise ValueError(
                f"{value!r} is not a Slack channel ID (like C0123ABCD); the channel is given "
                "by ID, never by name (Slack shows it at the bottom of the channel's details)"
            )
        return value

    @field_validator("plan_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        parse_positive_duration(value)
        return value


def configured(settings: Settings) -> SlackSettings | None:
    """The config's ``[slack]`` section as core validated it; None when there is none."""
    return settings.front_end_settings(NAME, SlackSettings)


def slack_settings(settings: Settings) -> SlackSettings:
    """The ``[slack]`` section, or the defaults when the config has none."""
    return configured(settings) or SlackSettings()
