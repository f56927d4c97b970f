"""Starting the bot: reach Slack once before serving, and say in one line why not.

slack_sdk reports an unreachable API as a raw ``URLError`` (or ``TimeoutError``,
``ssl.SSLError``), and a refusal as a ``SlackApiError`` carrying Slack's error
code; bolt turns the latter into a ``BoltError`` with the whole response in it.
None of those is a message for the person starting the bot, so the calls made at
start go through ``start_step``, which turns each into a ``SlackUnavailable``:
one line naming the step, the URL and what to check, exit code 1.

Settings that are wrong before Slack is asked (a missing token, a channel name
instead of an ID) are ``ConfigError`` (exit 2) and are found earlier, in
``runner.check_settings`` and ``runner.run_bot``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from regprune.errors import RegpruneError

_REFUSED_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


class SlackUnavailable(RegpruneError):
    """Slack could not be reached, or answered an error, while the bot started (exit 1)."""


def _network_reason(error: BaseException) -> str:
    """What went wrong on the wire, in words, for the errors urllib raises."""
    reason: Any = error.reason if isinstance(error, URLError) else error
    if isinstance(reason, socket.gaierror):
        return "its host name does not resolve in DNS"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate was not accepted ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        return f"the TLS handshake failed ({reason.reason or reason})"
    if isinstance(reason, TimeoutError):
        return "it did not answer in time"
    if isinstance(reason, http.client.RemoteDisconnected | ConnectionResetError):
        return "it closed the connection without answering"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return " ".join(str(reason).split()) or type(reason).__name__


def _api_answer(step: str, url: str, error: SlackApiError) -> str:
    """Slack's (or something else's) answer to a start-up call, in one line."""
    response = error.response
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    if code.startswith("Received a response in a non-JSON format"):
        return (
            f"{step}: {url} answered HTTP {status} without JSON: not the Slack Web API "
            "(check [slack].api_url)"
        )
    if code in _REFUSED_TOKEN:
        which = "SLACK_APP_TOKEN" if step.startswith("apps.connections.open") else "SLACK_BOT_TOKEN"
        return (
            f"{step}: Slack refused the token ({code}): check {which} "
            "(a revoked app needs a reinstall and the new token)"
        )
    if code:
        return f"{step}: Slack answered {code}" + (f" (HTTP {status})" if status != 200 else "")
    return f"{step}: {url} answered HTTP {status}"


@contextmanager
def start_step(step: str, url: str) -> Iterator[None]:
    """Turn what a start-up call to Slack can raise into one ``SlackUnavailable`` line.

    ``step`` names the call (``auth.test``), ``url`` the API base it went to.
    """
    try:
        yield
    except SlackApiError as exc:
        raise SlackUnavailable(_api_answer(step, url, exc)) from None
    except BoltError as exc:  # bolt wraps a refused auth.test; its text holds no secret
        raise SlackUnavailable(f"{step}: Slack refused to start the bot: {exc}") from None
    except HTTPError as exc:  # rare: slack_sdk reads most HTTP errors as answers
        raise SlackUnavailable(f"{step}: {url} answered HTTP {exc.code}") from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        raise SlackUnavailable(
            f"cannot reach Slack at {url} for {step}: {_network_reason(exc)} "
            "(check the network, a proxy in HTTPS_PROXY, or [slack].api_url)"
        ) from None


def open_socket(handler: SocketModeHandler, api_url: str) -> None:
    """Connect Socket Mode: ``apps.connections.open`` with the app token, then its websocket.

    slack_sdk's built-in client logs a failed websocket connection and carries on
    reconnecting in the background, so a socket that is not up afterwards is
    reported here.  Raises ``SlackUnavailable``.
    """
    with start_step("apps.connections.open", api_url):
        handler.connect()
    if not handler.client.is_connected():
        where = urlsplit(handler.client.wss_uri or "").netloc or "the URL Slack gave"
        handler.close()
        raise SlackUnavailable(
            f"cannot open the Socket Mode connection to {where}: the websocket did not connect "
            "(check the network or proxy for outgoing websockets, or use --http)"
        )


def verify_bot_token(client: WebClient) -> dict[str, Any]:
    """Call ``auth.test`` once: Slack is reachable and takes the bot token.

    Returns Slack's answer (team, user, bot ids).  Raises ``SlackUnavailable``.
    """
    with start_step("auth.test", client.base_url):
        answer = client.auth_test()
    return dict(answer.data) if isinstance(answer.data, dict) else {}
