"""HTTP mode: bolt behind a small threaded WSGI server on ``/slack/events``.

bolt's own development server binds every interface; this one binds the host it
is given (127.0.0.1 by default) and can be shut down cleanly, which the tests and
the service manager both need.
"""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

EVENTS_PATH = "/slack/events"
log = logging.getLogger(__name__)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the logger at debug level, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class HttpServer:
    """Serves a bolt app at ``http://HOST:PORT/slack/events`` (port 0 picks a free one)."""

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 3000,
        path: str = EVENTS_PATH,
        *,
        poll_interval: float = 0.2,
    ) -> None:
        self.path = path
        self._server = make_server(
            host,
            port,
            SlackRequestHandler(app, path=path),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._thread: threading.Thread | None = None
        self.poll_interval = poll_interval

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The events URL, e.g. ``http://127.0.0.1:3000/slack/events``."""
        return f"http://{self.host}:{self.port}{self.path}"

    def serve_forever(self) -> None:
        """Serve until ``shutdown`` (or Ctrl-C in the caller)."""
        log.info("listening on %s", self.url)
        self._server.serve_forever(poll_interval=self.poll_interval)

    def start(self) -> HttpServer:
        """Serve in a daemon thread and return at once."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="regprune-slack-http", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
