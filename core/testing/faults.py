"""A fault-injecting HTTP proxy on loopback, to put in front of a real registry.

:class:`FaultProxy` forwards every request to an upstream (a real registry, a token
server, any HTTP server) and hands the answer back verbatim, unless a fault matches
the request: latency, an answer trickled one byte at a time, a connection closed
without an answer, a synthetic answer (503, 429 with ``Retry-After``), an answer
rewritten by a function, or a callback run before forwarding::

    with FaultProxy(registry_server.url) as proxy:
        proxy.respond(503, headers={"Retry-After": "1"}, path=r"/tags/list", times=2)
        proxy.delay(2.0, method="DELETE", path=r"/manifests/")
        ...  # point regprune at proxy.url
        assert [r.method for r in proxy.requests].count("DELETE") == 1

It is threaded and speaks HTTP/1.1 with keep-alive. Headers go both ways as they
are, including ``Host`` (so the registry builds upload ``Location`` URLs that point
back at the proxy) and the upstream's own ``Location``, ``Link`` and
``WWW-Authenticate``; only hop-by-hop headers are dropped.
"""

from __future__ import annotations

import contextlib
import http
import http.client
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

__all__ = ["FaultProxy", "SeenRequest"]

# A rewrite function: (status, headers, body) -> (status, headers, body).
Rewriter = Callable[[int, httpx.Headers, bytes], tuple[int, Any, bytes]]
RequestHook = Callable[[str, str], object]
HeaderInput = Mapping[str, str] | Sequence[tuple[str, str]] | httpx.Headers | None

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


class FaultProxy:
    """A loopback HTTP proxy in front of ``upstream`` that injects faults on request.

    Faults match on ``method`` (any when None) and on ``path``, a regular expression
    searched in the request path with its query string (any when None). ``times=N``
    applies a fault to the first N matching requests only; ``times=None`` to all.
    When several faults match one request, every matching ``on_request`` callback
    runs, every matching ``delay`` adds up, the first matching ``reset`` or
    ``respond`` answers instead of the upstream, every matching ``rewrite`` applies
    in the order they were added, and a matching ``trickle`` sends the result.
    """

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http:// or https:// url, not {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._upstream_prefix = parts.path.rstrip("/")
        self._ssl_context = upstream_ssl_context
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._requests: list[SeenRequest] = []
        self.connections_accepted = 0  # client connections opened so far (keep-alive checks)
        self.errors: list[BaseException] = []  # exceptions raised by hooks and rewriters
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None
        bound_host, bound_port = self._server.socket.getsockname()[:2]  # IPv4 (host, port)
        self.url = f"http://{bound_host}:{bound_port}"

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start serving in a background thread (``with FaultProxy(...)`` does it)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fault-proxy-{self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close every open client connection."""
        self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url!r} -> {self.upstream!r})"

    # --- faults ------------------------------------------------------------------------

    def delay(
        self,
        seconds: float,
        method: str | None = "DELETE",
        path: str | None = r"/manifests/",
        times: int | None = None,
    ) -> None:
        """Wait ``seconds`` before forwarding matching requests (slowed deletes by default)."""
        self._add("delay", method, path, times, seconds=float(seconds))

    def trickle(
        self,
        interval: float = 0.5,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
        *,
        part: str = "all",
    ) -> None:
        """Send matching answers one byte every ``interval`` seconds.

        ``part="all"`` trickles the status line and headers too; ``part="body"`` sends
        the head at once and trickles the body.
        """
        if part not in ("all", "body"):
            raise ValueError(f"part must be 'all' or 'body', not {part!r}")
        self._add("trickle", method, path, times, interval=float(interval), part=part)

    def reset(
        self, method: str | None = None, path: str | None = None, times: int | None = 1
    ) -> None:
        """Close the connection of matching requests without answering (a TCP reset)."""
        self._add("reset", method, path, times)

    def respond(
        self,
        status: int,
        headers: HeaderInput = None,
        body: bytes | str = b"",
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer matching requests with this status, headers and body instead of forwarding."""
        content = body.encode() if isinstance(body, str) else bytes(body)
        self._add(
            "respond",
            method,
            path,
            times,
            status=status,
            headers=httpx.Headers(headers),
            body=content,
        )

    def rewrite(
        self,
        fn: Rewriter,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> None:
        """Pass matching upstream answers through ``fn(status, headers, body)``.

        ``headers`` is a mutable ``httpx.Headers``; ``fn`` returns ``(status, headers,
        body)`` with headers as ``httpx.Headers``, a dict or a list of pairs.
        ``Content-Length`` is set to the length of the returned body (except for HEAD).
        """
        self._add("rewrite", method, path, times, fn=fn)

    def on_request(
        self,
        fn: RequestHook,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> None:
        """Call ``fn(method, path)`` before a matching request is forwarded."""
        self._add("on_request", method, path, times, fn=fn)

    def clear(self) -> None:
        """Drop every fault; requests are forwarded untouched from now on."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[SeenRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._requests.clear()

    # --- internals ---------------------------------------------------------------------

    def _add(
        self, kind: str, method: str | None, path: str | None, times: int | None, **options: Any
    ) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), not {times}")
        fault = _Fault(
            kind=kind,
            method=method.upper() if method else None,
            path=re.compile(path) if path is not None else None,
            remaining=times,
            options=options,
        )
        with self._lock:
            self._faults.append(fault)

    def _take(self, method: str, path: str) -> list[_Fault]:
        """The faults this request triggers, counting it against their ``times``."""
        with self._lock:
            taken = []
            for fault in self._faults:
                if fault.remaining == 0 or not fault.matches(method, path):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                taken.append(fault)
            self._faults = [fault for fault in self._faults if fault.remaining != 0]
            return taken

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
                self.connections_accepted += 1
            else:
                self._connections.discard(connection)

    def _connect_upstream(self) -> http.client.HTTPConnection:
        if self._upstream_scheme == "https":
            return http.client.HTTPSConnection(
                self._upstream_host,
                self._upstream_port,
                timeout=_UPSTREAM_TIMEOUT,
                context=self._ssl_context,
            )
        return http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=_UPSTREAM_TIMEOUT
        )


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
