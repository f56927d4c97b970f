"""The ``[listen]`` section of the config: the listener's settings model.

Registered with core as a front end's settings (see ``regprune.plugins.listen``),
so core validates the section and names key paths in its errors
(``listen.max_gap: ...``).  Only pydantic here: the CLI imports it at start-up.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import Settings
from ..config.models import Regex
from ..durations import parse_positive_duration

NAME = "listen"
"""The front end's name, and its top-level config section ``[listen]``."""

DEFAULT_PORT = 5002
DEFAULT_MAX_GAP = "10m"
DEFAULT_HEARTBEAT = "30s"


class ListenSettings(BaseModel):
    """``regprune listen``: the endpoint that records the registry's notifications."""

    model_config = ConfigDict(extra="forbid", strict=True)

    token: str | None = Field(
        default=None,
        description="Shared secret the registry sends as 'Authorization: Bearer TOKEN'; "
        'required to start, usually "${REGPRUNE_LISTEN_TOKEN}".',
    )
    registry: str | None = Field(
        default=None,
        description="Config name of the registry whose events arrive on POST /events "
        "(POST /events/NAME always records for [registry.NAME]).",
    )
    ignore_agents: list[Regex] = Field(
        default_factory=list,
        description="User agents (RE2 regexes, searched) whose pulls are not use: "
        "scanners, mirrors, health checks.  regprune's own reads are always ignored.",
    )
    host: str = Field(
        default="127.0.0.1", description="Address to bind; 0.0.0.0 for every interface."
    )
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="Port to bind.")
    max_gap: str = Field(
        default=DEFAULT_MAX_GAP,
        description="Listener downtime shorter than this does not break coverage "
        "(the registry keeps retrying delivery meanwhile).",
    )
    heartbeat: str = Field(
        default=DEFAULT_HEARTBEAT,
        description="How often the listener records that it is alive.",
    )

    @field_validator("token")
    @classmethod
    def _token_as_sent(cls, value: str | None) -> str | None:
        # HTTP drops spaces around a header's value: such a token would never match.
        if value is not None and value.strip() and value != value.strip():
            raise ValueError(
                "has spaces at its start or end, which never arrive in an HTTP header; "
                "remove them"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        # An empty host would bind every interface: the opposite of the default.
        if not value.strip():
            raise ValueError(
                "empty address (it would bind every interface); remove the key for "
                "127.0.0.1, or write the address, e.g. 0.0.0.0 for every interface"
            )
        return value

    @field_validator("max_gap", "heartbeat")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_positive_duration(value)
        return value

    @property
    def max_gap_delta(self) -> timedelta:
        """``max_gap`` as a timedelta (what `UsageStore.coverage` takes)."""
        return parse_positive_duration(self.max_gap)

    @property
    def heartbeat_delta(self) -> timedelta:
        """``heartbeat`` as a timedelta (what `UsageStore.coverage` takes)."""
        return parse_positive_duration(self.heartbeat)


def listen_settings(settings: Settings) -> ListenSettings:
    """The config's ``[listen]`` section as core validated it, or the defaults."""
    return settings.front_end_settings(NAME, ListenSettings) or ListenSettings()
