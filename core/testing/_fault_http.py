"""The wire side of :class:`~regprune.testing.FaultProxy`: one handler per connection.

``faults`` holds what a test calls (the proxy, its faults, what it saw); this module
holds how a request is served: read it, take the matching faults from the proxy,
forward it upstream, and answer (delayed, trickled, rewritten or reset).
"""

from __future__ import annotations

import contextlib
import http
import http.client
import re
import socket
import struct
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

if TYPE_CHECKING:
    from .faults import FaultProxy

# Hop-by-hop headers (RFC 9110 section 7.6.1) are the proxy's own business.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_UPSTREAM_TIMEOUT = 60.0


class SeenRequest(NamedTuple):
    """A request the proxy received: method, path with query, and its headers."""

    method: str
    path: str
    headers: httpx.Headers


@dataclass
class _Fault:
    kind: str
    method: str | None
    path: re.Pattern[str] | None
    remaining: int | None  # None: every matching request
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class _Reset(Exception):
    """Raised inside the handler to drop the connection without answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    # --- plumbing ----------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)
        if self._upstream is not None:
            self._upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read proxy.requests instead

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Reset:
            self._abort()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _abort(self) -> None:
        # SO_LINGER 0: close() sends a RST, as a crashed server or a middlebox would.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def __getattr__(self, name: str) -> Any:
        # http.server dispatches to do_<METHOD>: every method goes through _proxy.
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    # --- one request -------------------------------------------------------------------

    def _proxy(self) -> None:
        proxy = self.server.proxy
        method = self.command.upper()
        path = self.path
        headers = httpx.Headers(list(self.headers.items()))
        body = self._read_body()
        proxy._record(SeenRequest(method, path, headers))
        faults = proxy._take(method, path)

        for fault in faults:
            if fault.kind == "on_request":
                try:
                    fault.options["fn"](method, path)
                except Exception as exc:  # reported to the test through proxy.errors
                    proxy.errors.append(exc)
                    self._send(_error_answer(exc), method, None)
                    return
        wait = sum(fault.options["seconds"] for fault in faults if fault.kind == "delay")
        if wait and proxy._closing.wait(wait):
            raise _Reset
        terminal = next((f for f in faults if f.kind in ("reset", "respond")), None)
        if terminal is not None and terminal.kind == "reset":
            raise _Reset
        if terminal is not None:
            options = terminal.options
            answer = _Answer(options["status"], httpx.Headers(options["headers"]), options["body"])
        else:
            answer = self._forward(method, path, headers, body)
        for fault in faults:
            if fault.kind == "rewrite":
                try:
                    status, new_headers, new_body = fault.options["fn"](
                        answer.status, answer.headers, answer.body
                    )
                    answer = _Answer(int(status), httpx.Headers(new_headers), bytes(new_body))
                except Exception as exc:
                    proxy.errors.append(exc)
                    answer = _error_answer(exc)
                    break
        trickle = next((f for f in faults if f.kind == "trickle"), None)
        self._send(answer, method, trickle)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, method: str, path: str, headers: httpx.Headers, body: bytes) -> _Answer:
        proxy = self.server.proxy
        outgoing = [
            (name, value)
            for name, value in headers.multi_items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
        ]
        if body or method in ("POST", "PUT", "PATCH"):
            outgoing.append(("Content-Length", str(len(body))))
        for attempt in range(2):  # a pooled upstream connection may have been closed
            if self._upstream is None:
                self._upstream = proxy._connect_upstream()
            connection = self._upstream
            try:
                connection.putrequest(
                    method, proxy._upstream_prefix + path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in outgoing:
                    connection.putheader(name, value)
                connection.endheaders(body or None)
                response = connection.getresponse()
                content = response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._upstream = None
                if attempt == 0 and isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                ):
                    continue
                return _Answer(
                    502,
                    httpx.Headers({"Content-Type": "text/plain"}),
                    f"fault proxy: upstream failed: {exc}".encode(),
                )
            if response.will_close:
                connection.close()
                self._upstream = None
            return _Answer(response.status, httpx.Headers(response.getheaders()), content)
        raise AssertionError("unreachable")

    def _send(self, answer: _Answer, method: str, trickle: _Fault | None) -> None:
        headers = [
            (name, value)
            for name, value in answer.headers.multi_items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
        ]
        if method == "HEAD":
            length = answer.headers.get("content-length")
            if length is not None:
                headers.append(("Content-Length", length))
        elif answer.status >= 200 and answer.status not in (204, 304):
            headers.append(("Content-Length", str(len(answer.body))))
        if self.close_connection:
            headers.append(("Connection", "close"))
        reason = _reason(answer.status)
        head = f"HTTP/1.1 {answer.status} {reason}\r\n".encode("latin-1")
        head += b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in headers) + b"\r\n"
        body = b"" if method == "HEAD" else answer.body
        if trickle is None:
            self.wfile.write(head + body)
            self.wfile.flush()
            return
        interval = trickle.options["interval"]
        if trickle.options["part"] == "body":
            self.wfile.write(head)
            self.wfile.flush()
            data = body
        else:
            data = head + body
        closing = self.server.proxy._closing
        for index in range(len(data)):
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()
            if closing.wait(interval):
                raise _Reset


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_answer(exc: BaseException) -> _Answer:
    return _Answer(
        500,
        httpx.Headers({"Content-Type": "text/plain"}),
        f"fault proxy: hook failed: {type(exc).__name__}: {exc}".encode(),
    )
