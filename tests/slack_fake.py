"""Slack, played offline: a fake Web API server, and Slack's signed requests to the bot.

``FakeSlack`` is a threading HTTP server on loopback.  A ``WebClient`` whose
``base_url`` is ``FakeSlack.api_url`` talks to it; it records every call
(``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``usergroups.users.list``, the ``files.*`` upload steps, ``apps.connections.open``, and posts to
``response_url``s it hands out) and answers like Slack.  ``fail()`` injects
failures: 429 with ``Retry-After``, ``ok: false`` with an error code, or HTTP 500.

``SlackRequests`` plays Slack calling the bot: slash commands as flat form fields,
``block_actions`` as ``payload=<json>``, each signed like Slack signs them
(``v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

TEAM = "T0TEAM0001"
BOT_USER = "U0BOT00001"
CHANNEL = "C0PRUNE001"


@dataclass
class Call:
    """One request the fake received."""

    method: str  # "chat.postMessage", ..., or "response_url" / "upload"
    params: dict[str, Any]
    authorization: str | None
    path: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    """An injected failure: answer ``times`` matching calls of ``method`` with it."""

    method: str
    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    times: int = 1
    when: Callable[[dict[str, Any]], bool] | None = None
    hits: int = 0


class FakeSlack:
    """A fake Slack Web API on 127.0.0.1, recording every call."""

    def __init__(self, *, team: str = TEAM, groups: dict[str, list[str]] | None = None) -> None:
        self.team = team
        self.groups: dict[str, list[str]] = dict(groups or {})
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> latest
        self.failures: list[Failure] = []
        # Socket Mode's websocket: nothing listens there (port 1), so connecting fails.
        self.socket_url = "ws://127.0.0.1:1/link"
        self._top_posts: list[dict[str, Any]] = []  # plan messages, as first posted
        self._thread_posts: list[dict[str, Any]] = []  # replies in threads, files included
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = fake._dispatch(self.command, self.path, self.headers, raw)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``WebClient`` (and ``[slack].api_url``)."""
        return f"{self.base}/api/"

    def response_url(self, name: str = "r1") -> str:
        """A ``response_url`` for a payload; posts to it are recorded as ``response_url``."""
        return f"{self.base}/response/{name}"

    # -- injection and inspection ------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Failure:
        """Answer the next ``times`` matching calls of ``method`` with a failure.

        ``status=429`` (with ``retry_after`` seconds), ``status=500``, or
        ``error="..."`` (HTTP 200 with ``ok: false``).
        """
        failure = Failure(method, status, error, retry_after, times, when)
        with self._lock:
            self.failures.append(failure)
        return failure

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def thread(self, ts: str) -> list[str]:
        """Replies in the thread of message ``ts`` (successful posts only), each as its
        text followed by the text of its blocks."""
        with self._lock:
            return [rendered(m) for m in self._thread_posts if m.get("thread_ts") == ts]

    def ephemerals(self, user: str | None = None) -> list[str]:
        return [
            c.params.get("text", "")
            for c in self.of("chat.postEphemeral")
            if user is None or c.params.get("user") == user
        ]

    def responses(self) -> list[dict[str, Any]]:
        return [c.params for c in self.of("response_url")]

    def top_level_posts(self) -> list[dict[str, Any]]:
        """Successful channel posts that are not thread replies: the plan messages."""
        with self._lock:
            return [dict(m) for m in self._top_posts]

    def current(self, channel: str, ts: str) -> dict[str, Any]:
        """The message as it is now (after every ``chat.update``)."""
        with self._lock:
            return dict(self.messages[(channel, ts)])

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError("timed out waiting for the fake Slack")

    # -- the API -----------------------------------------------------------------

    def _params(self, verb: str, path: str, headers: Any, raw: bytes) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(urlsplit(path).query))
        ctype = (headers.get("Content-Type") or "").lower()
        if raw and "json" in ctype:
            params.update(json.loads(raw))
        elif raw and "form" in ctype:
            params.update(dict(parse_qsl(raw.decode())))
        for key in ("blocks", "attachments", "files"):
            if isinstance(params.get(key), str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        return params

    def _dispatch(
        self, verb: str, path: str, headers: Any, raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        route = urlsplit(path).path
        if route.startswith("/response/"):
            method = "response_url"
        elif route.startswith("/upload/"):
            method = "upload"
        elif route.startswith("/api/"):
            method = route.removeprefix("/api/")
        else:
            return 404, {}, {"ok": False, "error": "unknown_path"}
        params = (
            {"body": raw.decode(errors="replace")}
            if method == "upload"
            else self._params(verb, path, headers, raw)
        )
        with self._lock:
            self.calls.append(Call(method, params, headers.get("Authorization"), path))
            for failure in self.failures:
                if (
                    failure.method == method
                    and failure.hits < failure.times
                    and (failure.when is None or failure.when(params))
                ):
                    failure.hits += 1
                    return self._failed(failure)
            return self._answer(method, params)

    @staticmethod
    def _failed(failure: Failure) -> tuple[int, dict[str, str], Any]:
        if failure.status == 429:
            return (
                429,
                {"Retry-After": str(failure.retry_after or 1)},
                {"ok": False, "error": "ratelimited"},
            )
        if failure.status >= 500:
            return failure.status, {}, {"ok": False, "error": "internal_error"}
        return 200, {}, {"ok": False, "error": failure.error or "fatal_error"}

    def _next_ts(self) -> str:
        return f"{1700000000 + next(self._ts)}.000100"

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        ok: dict[str, str] = {}
        if method == "auth.test":
            return (
                200,
                ok,
                {
                    "ok": True,
                    "url": "https://fake.slack.test/",
                    "team": "Fake team",
                    "user": "regprune",
                    "team_id": self.team,
                    "user_id": BOT_USER,
                    "bot_id": "B0BOT00001",
                    "is_enterprise_install": False,
                },
            )
        if method == "chat.postMessage":
            channel = str(params.get("channel"))
            channel = CHANNEL if channel.startswith("#") else channel
            ts = self._next_ts()
            message = {**params, "channel": channel, "ts": ts}
            if params.get("thread_ts"):
                self._thread_posts.append(message)
            else:
                self._top_posts.append(message)
                self.messages[(channel, ts)] = message
            return 200, ok, {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            key = (str(params.get("channel")), str(params.get("ts")))
            if key not in self.messages:
                return 200, ok, {"ok": False, "error": "message_not_found"}
            self.messages[key] = {**params}
            return 200, ok, {"ok": True, "channel": key[0], "ts": key[1]}
        if method == "chat.postEphemeral":
            return 200, ok, {"ok": True, "message_ts": self._next_ts()}
        if method == "usergroups.users.list":
            group = str(params.get("usergroup"))
            if group not in self.groups:
                return 200, ok, {"ok": False, "error": "no_such_subteam"}
            return 200, ok, {"ok": True, "users": list(self.groups[group])}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):09d}"
            return (
                200,
                ok,
                {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id},
            )
        if method == "upload":
            return 200, ok, b"OK"
        if method == "files.completeUploadExternal":
            files = params.get("files") or []
            thread_ts = params.get("thread_ts")
            self._thread_posts.append(
                {
                    "thread_ts": thread_ts,
                    "text": f"[file] {params.get('initial_comment', '')}",
                    "files": files,
                }
            )
            return (
                200,
                ok,
                {
                    "ok": True,
                    "files": [{"id": f.get("id"), "title": f.get("title")} for f in files],
                },
            )
        if method == "response_url":
            return 200, ok, b"ok"
        if method == "apps.connections.open":
            return 200, ok, {"ok": True, "url": self.socket_url}
        return 200, ok, {"ok": True}

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rendered(message: dict[str, Any]) -> str:
    """A message's fallback text, then the text of each of its blocks, one per line."""
    parts = [str(message.get("text") or "")]
    for block in message.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(str(text.get("text", "")))
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "mrkdwn":
                parts.append(str(element.get("text", "")))
    return "\n".join(part for part in parts if part)


def sign(secret: str, timestamp: int, body: str) -> str:
    """Slack's request signature: ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackRequests:
    """Slack's side of the conversation: signed requests to the bot's ``/slack/events``."""

    def __init__(self, url: str, secret: str, fake: FakeSlack, *, team: str = TEAM) -> None:
        self.url = url
        self.secret = secret
        self.fake = fake
        self.team = team
        self.http = httpx.Client(trust_env=False, timeout=30)
        self._n = itertools.count(1)

    def close(self) -> None:
        self.http.close()

    def post(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST a form-encoded body, signed (or with the given signature)."""
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": signature or sign(secret or self.secret, stamp, body),
        }
        return self.http.post(self.url, content=body.encode(), headers=headers)

    def command_body(self, text: str, *, user: str, team: str | None = None) -> str:
        n = next(self._n)
        return urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": team or self.team,
                "team_domain": "fake",
                "channel_id": CHANNEL,
                "channel_name": "prune",
                "user_id": user,
                "user_name": f"name-of-{user}",
                "command": "/regprune",
                "text": text,
                "api_app_id": "A0APP00001",
                "response_url": self.fake.response_url(f"cmd{n}"),
                "trigger_id": f"trigger.{n}",
            }
        )

    def command(self, text: str, *, user: str, team: str | None = None) -> httpx.Response:
        """``/regprune <text>`` typed by ``user``."""
        return self.post(self.command_body(text, user=user, team=team))

    def click_body(
        self,
        action_id: str,
        value: str,
        *,
        user: str,
        channel: str,
        ts: str,
        team: str | None = None,
        user_team: str | None = None,
        username: str | None = None,
    ) -> str:
        n = next(self._n)
        payload = {
            "type": "block_actions",
            "team": {"id": team or self.team, "domain": "fake"},
            "user": {
                "id": user,
                "username": username or f"name-of-{user}",
                "name": username or f"name-of-{user}",
                "team_id": user_team or team or self.team,
            },
            "api_app_id": "A0APP00001",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"trigger.{n}",
            "channel": {"id": channel, "name": "prune"},
            "message": {"type": "message", "ts": ts, "text": "regprune plan"},
            "response_url": self.fake.response_url(f"act{n}"),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "regprune_decision",
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return urlencode({"payload": json.dumps(payload)})

    def click(self, action_id: str, value: str, **kwargs: Any) -> httpx.Response:
        """A button click (``block_actions``) on message ``ts`` in ``channel``."""
        return self.post(self.click_body(action_id, value, **kwargs))
