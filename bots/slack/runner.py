"""``regprune bot slack``: check the config (fail closed), then run the bot until stopped.

Socket Mode by default (``SLACK_APP_TOKEN``; no public URL needed), or HTTP mode on
``HOST:PORT/slack/events`` (``SLACK_SIGNING_SECRET``).  ``SLACK_BOT_TOKEN`` always.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from regprune.config import Settings
from regprune.errors import ConfigError

from .background import Background, Schedules, check_schedules
from .logs import configure_logging, libraries_running
from .plugin import slack_approvals
from .redact import Redactor
from .settings import SlackSettings, configured

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,}$")


def check_settings(
    settings: Settings, approvals: Collection[str] | None = None
) -> SlackSettings:
    """Refuse to start on a config that would let the wrong people approve, or nobody.

    Approvers are Slack IDs, never names.  With a Slack-approved policy and no
    approvers at all, the bot does not start (fail closed).  ``approvals`` are the
    approval methods decided in Slack (default: found through the plugins).
    """
    if approvals is None:
        approvals = slack_approvals()
    slack = configured(settings)
    if slack is None:
        raise ConfigError(
            "no [slack] section in the config: the bot needs channel and approvers (see docs/slack.md)"
        )
    if not slack.channel:
        raise ConfigError(
            "slack.channel: required key is missing (the channel ID plans are posted to)"
        )
    for index, user in enumerate(slack.approvers):
        if not USER_ID.match(user):
            raise ConfigError(
                f"slack.approvers.{index}: {user!r} is not a Slack user ID (like U012AB3CD); "
                "approvers are listed by ID, never by name"
            )
    for index, group in enumerate(slack.approver_groups):
        if not GROUP_ID.match(group):
            raise ConfigError(
                f"slack.approver_groups.{index}: {group!r} is not a Slack user-group ID (like S0614TZR7)"
            )
    if slack.team_id and not TEAM_ID.match(slack.team_id):
        raise ConfigError(
            f"slack.team_id: {slack.team_id!r} is not a Slack team ID (like T012AB3C4)"
        )
    approved_in_slack = sorted(n for n, p in settings.policy.items() if p.approval in approvals)
    if approved_in_slack and not slack.approvers and not slack.approver_groups:
        first = approved_in_slack[0]
        raise ConfigError(
            f"slack.approvers: no approvers configured while policy {first} has "
            f'approval = "{settings.policy[first].approval}"; the bot refuses to start (fail '
            "closed): list user IDs in "
            "[slack].approvers or user-group IDs in [slack].approver_groups"
        )
    if not slack.approver_groups and slack.approvals_required > len(set(slack.approvers)):
        raise ConfigError(
            f"slack.approvals_required: {slack.approvals_required} approvals can never be reached "
            f"with {len(set(slack.approvers))} approver(s) listed"
        )
    check_schedules(settings, approvals)
    return slack


def _env(environ: Mapping[str, str], name: str, what: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: the bot needs {what}")
    return value


def run_bot(
    settings: Settings,
    state_path: str | Path,
    *,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = 3000,
    poll_interval: float = 15.0,
    environ: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> None:
    """Run the bot until interrupted.

    Config and token problems raise ``ConfigError`` (exit 2) before Slack is asked;
    Slack unreachable or refusing at start raises ``SlackUnavailable`` (exit 1), one
    line each.  ``verbose`` shows slack_sdk's and slack_bolt's own log lines.
    """
    env = os.environ if environ is None else environ
    approvals = slack_approvals()
    slack = check_settings(settings, approvals)
    bot_token = _env(env, "SLACK_BOT_TOKEN", "its bot token (xoxb-…)")
    if http:
        signing_secret: str | None = _env(
            env, "SLACK_SIGNING_SECRET", "the app's signing secret in HTTP mode"
        )
        app_token = None
    else:
        signing_secret = env.get("SLACK_SIGNING_SECRET") or None
        app_token = _env(
            env, "SLACK_APP_TOKEN", "an app-level token (xapp-…) in Socket Mode, or use --http"
        )
    redactor = Redactor([bot_token, app_token, signing_secret])
    configure_logging(redactor, verbose=verbose)

    # slack_bolt is imported here, not at CLI start-up.
    from .app import create_app, make_client
    from .server import HttpServer
    from .service import SlackService
    from .startup import open_socket, verify_bot_token

    client = make_client(bot_token, slack.api_url)
    # One call before anything else starts: an unreachable Slack or a refused token is
    # one line now, not a retry storm in the log and a traceback later.
    verify_bot_token(client)
    service = SlackService(settings, state_path, client, redactor=redactor)
    app = create_app(
        settings,
        state_path,
        client=client,
        service=service,
        signing_secret=signing_secret,
        socket_mode=not http,
    )
    background = Background(
        service,
        interval=poll_interval,
        schedules=Schedules(check_schedules(settings, service.approvals), service.now()),
    )
    server: HttpServer | None = None
    socket: SocketModeHandler | None = None
    try:
        if http:
            server = HttpServer(app, host=host, port=port)
        else:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            socket = SocketModeHandler(app, app_token)
            open_socket(socket, client.base_url)
        libraries_running(verbose)
        background.start()
        if server is not None:
            log.info("regprune Slack bot (HTTP mode) on %s", server.url)
            server.serve_forever()
        else:
            log.info("regprune Slack bot (Socket Mode) connected")
            threading.Event().wait()  # the socket's own threads serve until Ctrl-C
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        background.stop()
        if server is not None:
            server.shutdown()
        if socket is not None:
            socket.close()
        service.close()
