"""``regprune bot slack`` when Slack cannot be reached or refuses: one ``error:`` line on
stderr and exit 1 (exit 2 for settings wrong before Slack is asked), no traceback and
none of slack_sdk's or slack_bolt's own log lines unless ``--verbose``.

Real network errors, made on loopback: a closed port, a ``.invalid`` host name (RFC 6761:
never resolves), TLS spoken to a plain HTTP server, a server that accepts and never
answers, and the fake Slack answering errors.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from regprune.bots.slack.app import make_client
from regprune.bots.slack.startup import SlackUnavailable, verify_bot_token
from regprune.errors import ConfigError

from .slack_fake import FakeSlack
from .test_slack_units import settings, write_config

TOKEN = "xoxb-5-6-startup-test-token"
APP_TOKEN = "xapp-5-6-startup-test-app-token"
SECRET = "startup-test-signing-secret"
CLOSED = "http://127.0.0.1:1/api/"  # port 1: nothing listens on loopback
LIBRARY_MARKS = ("slack_sdk", "slack_bolt", "regprune.bots.slack.bolt", "Bolt app")


def bot(tmp_path: Path, api_url: str, *flags: str, channel: str = "C0PRUNE001") -> tuple[int, str]:
    """Run the real command in a fresh process; its exit code and stderr."""
    config = write_config(
        tmp_path,
        f'[slack]\nchannel = "{channel}"\napprovers = ["U0APPROVE1"]\napi_url = "{api_url}"\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(SLACK_BOT_TOKEN=TOKEN, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=SECRET)
    env.pop("REGPRUNE_DEBUG", None)
    verbose = ["--verbose"] if "--verbose" in flags else []
    rest = [flag for flag in flags if flag != "--verbose"]
    command = [sys.executable, "-m", "regprune", *verbose, "--config", str(config)]
    command += ["--state", str(tmp_path / "state.db"), "bot", "slack", *rest]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert TOKEN not in done.stderr + done.stdout and APP_TOKEN not in done.stderr
    return done.returncode, done.stderr


def one_line(code: int, err: str, *expected: str, exit_code: int = 1) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("error: ") and code == exit_code, (code, line)
    assert "unexpected" not in line and "a bug in regprune" not in line and "Traceback" not in err
    assert not any(mark in err for mark in LIBRARY_MARKS), err
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    return line


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.mark.parametrize("mode", [["--http", "--port", "0"], []], ids=["http", "socket-mode"])
def test_a_closed_port_is_one_line_and_exit_1(tmp_path: Path, mode: list[str]) -> None:
    code, err = bot(tmp_path, CLOSED, *mode)
    one_line(code, err, f"cannot reach Slack at {CLOSED} for auth.test", "connection was refused")


def test_a_host_name_that_does_not_resolve_is_one_line(tmp_path: Path) -> None:
    code, err = bot(tmp_path, "http://slack-api.invalid/api/", "--http", "--port", "0")
    one_line(code, err, "slack-api.invalid", "does not resolve in DNS")


def test_tls_to_a_server_that_does_not_speak_it_is_one_line(
    tmp_path: Path, fake: FakeSlack
) -> None:
    code, err = bot(tmp_path, fake.api_url.replace("http://", "https://"), "--http", "--port", "0")
    one_line(code, err, "cannot reach Slack", "TLS handshake failed")
    assert fake.calls == []


def test_slack_refusing_the_bot_token_is_one_line(tmp_path: Path, fake: FakeSlack) -> None:
    fake.fail("auth.test", error="invalid_auth")
    code, err = bot(tmp_path, fake.api_url, "--http", "--port", "0")
    one_line(code, err, "auth.test: Slack refused the token (invalid_auth)", "SLACK_BOT_TOKEN")
    assert [c.method for c in fake.calls] == ["auth.test"]


def test_slack_refusing_the_app_token_is_one_line(tmp_path: Path, fake: FakeSlack) -> None:
    fake.fail("apps.connections.open", error="invalid_auth")
    code, err = bot(tmp_path, fake.api_url)
    one_line(code, err, "apps.connections.open: Slack refused the token", "SLACK_APP_TOKEN")


def test_a_socket_mode_websocket_that_does_not_connect_is_one_line(
    tmp_path: Path, fake: FakeSlack
) -> None:
    code, err = bot(tmp_path, fake.api_url)  # the fake hands out a websocket URL on port 1
    one_line(code, err, "cannot open the Socket Mode connection to 127.0.0.1:1")
    assert "apps.connections.open" in [c.method for c in fake.calls]


def test_slack_server_errors_are_one_line(tmp_path: Path, fake: FakeSlack) -> None:
    fake.fail("auth.test", status=500, times=5)
    code, err = bot(tmp_path, fake.api_url, "--http", "--port", "0")
    one_line(code, err, "auth.test:", "HTTP 500")


class _NotSlack(BaseHTTPRequestHandler):
    """Answers every request 404 with an HTML body, like a web server that is not Slack."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = b"<html>not found</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_an_api_url_that_is_not_slack_is_one_line(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotSlack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/"
        code, err = bot(tmp_path, url, "--http", "--port", "0")
    finally:
        server.shutdown()
        server.server_close()
    one_line(code, err, f"{url} answered HTTP 404 without JSON", "[slack].api_url")


def test_verbose_shows_the_libraries_own_lines_and_still_ends_in_one_error(
    tmp_path: Path,
) -> None:
    code, err = bot(tmp_path, CLOSED, "--verbose", "--http", "--port", "0")
    lines = err.splitlines()
    assert code == 1 and len(lines) > 1
    assert any("slack_sdk" in line for line in lines[:-1]), err
    assert lines[-1].startswith("error: cannot reach Slack") and "Traceback" not in err


def test_a_server_that_never_answers_is_a_timeout_in_one_line() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # connections complete in the kernel; nothing is ever read or sent
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/"
        with pytest.raises(SlackUnavailable) as caught:
            verify_bot_token(make_client(TOKEN, url, timeout=1))
    finally:
        listener.close()
    message = caught.value.message
    assert caught.value.exit_code == 1 and "\n" not in message
    assert message.startswith(f"cannot reach Slack at {url} for auth.test: it did not answer")


# -- channel names: refused when the config is read (exit 2) -----------------------------------


@pytest.mark.parametrize("name", ["#registry", "registry", "C0PRUNE 1", "c0prune001"])
def test_a_channel_name_is_refused_with_one_line_saying_to_use_the_id(
    tmp_path: Path, name: str
) -> None:
    code, err = bot(tmp_path, CLOSED, "--http", "--port", "0", channel=name)
    line = one_line(code, err, "slack.channel:", "is not a Slack channel ID", exit_code=2)
    assert "never by name" in line


def test_the_channel_is_checked_with_the_config_for_every_command() -> None:
    with pytest.raises(ConfigError, match=r"slack\.channel: '#registry' is not a Slack channel"):
        settings({"channel": "#registry", "approvers": ["U0APPROVE1"]})
    for channel in ("C0PRUNE001", "G0PRIVATE1", "D0DIRECT01"):
        assert settings({"channel": channel, "approvers": ["U0APPROVE1"]}) is not None
