"""The app factory: a bolt ``App`` wired to the service, the listeners and the Web API client.

Request signature verification is bolt's default and is not configurable here:
every HTTP request must carry a valid ``X-Slack-Signature`` made with the signing
secret, and a timestamp less than five minutes old.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pluggy
from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from regprune.config import Settings
from regprune.errors import ConfigError

from .context import SERVICE_KEY
from .listeners import register_listeners
from .logs import BOLT_LOGGER
from .service import SlackService
from .settings import slack_settings
from .startup import start_step

DEFAULT_API_URL = WebClient.BASE_URL
_services: weakref.WeakKeyDictionary[App, SlackService] = weakref.WeakKeyDictionary()


class _DropClientTokenWarning(logging.Filter):
    """bolt warns that SLACK_BOT_TOKEN from the environment is unused when a client is given;
    here that is always the case (the client carries the same token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("As you gave `client` as well")


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger(BOLT_LOGGER)
    if not any(isinstance(f, _DropClientTokenWarning) for f in logger.filters):
        logger.addFilter(_DropClientTokenWarning())
    return logger


def make_client(token: str, api_url: str | None = None, *, timeout: int = 15) -> WebClient:
    """A Web API client for ``[slack].api_url`` (Slack's own URL by default)."""
    base = (api_url or DEFAULT_API_URL).rstrip("/") + "/"
    return WebClient(token=token, base_url=base, timeout=timeout)


def create_app(
    settings: Settings,
    state_path: str | Path,
    *,
    token: str | None = None,
    signing_secret: str | None = None,
    client: WebClient | None = None,
    service: SlackService | None = None,
    process_before_response: bool = False,
    token_verification_enabled: bool = True,
    socket_mode: bool = False,
    manager: pluggy.PluginManager | None = None,
    now: Callable[[], datetime] | None = None,
) -> App:
    """Build the bot: a bolt ``App`` whose listeners call a ``SlackService``.

    ``client`` defaults to a ``WebClient`` for ``token`` at ``[slack].api_url``;
    ``service`` defaults to a new ``SlackService`` over ``settings`` and the state DB
    at ``state_path``.  ``process_before_response=True`` runs each listener before the
    HTTP response is sent (deterministic tests); the long work (planning, apply, gc)
    always runs in the service's background workers.  In HTTP mode (the default)
    ``signing_secret`` is required: bolt verifies every request with it.
    """
    slack = slack_settings(settings)
    if not signing_secret and not socket_mode:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request with it"
        )
    if client is None:
        if not token:
            raise ConfigError("SLACK_BOT_TOKEN is not set: the bot needs its bot token (xoxb-…)")
        client = make_client(token, slack.api_url)
    if service is None:
        service = SlackService(settings, state_path, client, manager=manager, now=now)
    # bolt calls auth.test here; what that can raise becomes one line (startup.py).
    with start_step("auth.test", client.base_url):
        app = App(
            client=client,
            # Socket Mode requests arrive over the app-token websocket and are not signed.
            signing_secret=signing_secret or "",
            process_before_response=process_before_response,
            token_verification_enabled=token_verification_enabled,
            name="regprune",
            logger=_bolt_logger(),
        )

    @app.middleware
    def attach_service(context: BoltContext, next_: Callable[[], None]) -> None:
        context[SERVICE_KEY] = service
        next_()

    register_listeners(app)
    _services[app] = service
    return app


def service_of(app: App) -> SlackService:
    """The ``SlackService`` an app made by ``create_app`` uses."""
    return _services[app]
