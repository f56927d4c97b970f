"""Many GETs to one registry origin, pipelined on a few keep-alive connections.

The scan's hot path: one manifest GET per tag, one config-blob GET per new image.
httpx costs about 1.5 ms of CPU per request, on threads sharing one GIL; here a
request costs a few tens of microseconds, so the registry, not the client, sets the
pace (docs/performance.md).  Only GETs come here, never a DELETE or a PUT: resending
a GET after a connection dropped is harmless, resending a DELETE is not.

The fetcher is deliberately humble.  It answers what went well on the fast path and
gives up (``None``) on anything else, so that the caller sends those requests again
through ``HttpSession`` with its retries, backoff, Retry-After, redirects, 401
challenges and error messages:

- a registry that closes a keep-alive connection (``Connection: close``, EOF, reset)
  gets the unanswered requests again on a new connection, as long as the previous
  one answered at least one: no loop on a registry that never answers;
- a 401, a 429 or a 5xx stops the whole batch (the registry wants a challenge
  answered or wants us to back off), as does a request not answered within
  ``timeout`` of being sent (the whole answer, however slowly it trickles);
- an answer over ``max_bytes`` or one this parser cannot frame closes the connection.

HTTP/1.1 answers come back in the order of the requests on a connection (RFC 9112
section 9.3.2); nothing in them names the request, so an intermediary that mixed up
a pipeline could not be detected here.  What an apply deletes does not rest on it:
each tag is re-resolved through httpx right before its delete.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Answer", "Endpoint", "fetch_pipelined", "safe_target"]

# A request target that needs no escaping and cannot smuggle a header (no space, CR, LF).
_SAFE_TARGET = re.compile(r"/[A-Za-z0-9._~:@/%+=&?,-]*\Z")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})")
_STOP_STATUSES = frozenset({401, 429})
_READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where the requests go: scheme, host and port, and the TLS context for https."""

    host: str
    port: int
    host_header: str
    tls: ssl.SSLContext | None = None


@dataclass(frozen=True)
class Answer:
    """One answer: status, headers (lower-case names, repeats joined by ", "), body."""

    status: int
    headers: dict[str, str]
    body: bytes


def safe_target(target: str) -> bool:
    """True when ``target`` can go into a request line as it is."""
    return _SAFE_TARGET.match(target) is not None


class _Stop(Exception):
    """Stop the whole batch: what is left goes to the careful path."""


class _Dropped(Exception):
    """The connection ended cleanly between or inside answers: send the rest again."""


class _Bad(Exception):
    """This connection cannot go on (bad framing, too large, timed out)."""


class _Connection:
    """One keep-alive connection with its own read buffer."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.tls is not None:
                sock = endpoint.tls.wrap_socket(sock, server_hostname=endpoint.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buffer = bytearray()
        self.closing = False  # the registry said Connection: close

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes, deadline: float) -> None:
        self.sock.settimeout(_left(deadline))
        self.sock.sendall(data)

    def fill(self, deadline: float) -> None:
        """Read more bytes, by the deadline; _Dropped on EOF."""
        self.sock.settimeout(_left(deadline))
        chunk = self.sock.recv(_READ_SIZE)
        if not chunk:
            raise _Dropped
        self.buffer += chunk

    def answer(self, deadline: float, max_bytes: int) -> Answer:
        """Read one whole answer (skipping 1xx), by the deadline."""
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            while head_end < 0:
                if len(self.buffer) > 64 * 1024:
                    raise _Bad("answer head too long")
                self.fill(deadline)
                head_end = self.buffer.find(b"\r\n\r\n")
            head = bytes(self.buffer[:head_end])
            del self.buffer[: head_end + 4]
            lines = head.split(b"\r\n")
            match = _STATUS_LINE.match(lines[0])
            if match is None:
                raise _Bad("not an HTTP/1.x answer")
            status = int(match.group(2))
            headers = _headers(lines[1:])
            if 100 <= status < 200:
                continue
            minor = match.group(1)
            tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
            self.closing = "close" in tokens or (minor == b"0" and "keep-alive" not in tokens)
            body = self._body(headers, deadline, max_bytes)
            return Answer(status, headers, body)

    def _body(self, headers: dict[str, str], deadline: float, max_bytes: int) -> bytes:
        encoding = headers.get("transfer-encoding", "").lower().strip()
        if encoding:
            if encoding != "chunked":
                raise _Bad(f"transfer-encoding {encoding}")
            return self._chunked(deadline, max_bytes)
        length_text = headers.get("content-length")
        if length_text is None:  # the body runs to the end of the connection
            self.closing = True
            while True:
                if len(self.buffer) > max_bytes:
                    raise _Bad("too large")
                try:
                    self.fill(deadline)
                except _Dropped:
                    body = bytes(self.buffer)
                    self.buffer.clear()
                    return body
        if not length_text.isdigit():  # also refuses "12, 12" and signs
            raise _Bad("bad content-length")
        length = int(length_text)
        if length > max_bytes:
            raise _Bad("too large")
        while len(self.buffer) < length:
            self.fill(deadline)
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    def _chunked(self, deadline: float, max_bytes: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line_end = self.buffer.find(b"\r\n")
            while line_end < 0:
                if len(self.buffer) > 4096:
                    raise _Bad("chunk size line too long")
                self.fill(deadline)
                line_end = self.buffer.find(b"\r\n")
            size_text = bytes(self.buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Bad("bad chunk size") from None
            del self.buffer[: line_end + 2]
            if size == 0:  # trailers, then an empty line
                while True:
                    end = self.buffer.find(b"\r\n")
                    while end < 0:
                        self.fill(deadline)
                        end = self.buffer.find(b"\r\n")
                    del self.buffer[: end + 2]
                    if end == 0:
                        return b"".join(parts)
            total += size
            if total > max_bytes:
                raise _Bad("too large")
            while len(self.buffer) < size + 2:
                self.fill(deadline)
            parts.append(bytes(self.buffer[:size]))
            del self.buffer[: size + 2]


def _headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise _Bad("malformed header line")  # obsolete folding or garbage
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        if key in headers:
            if key == "content-length" and headers[key] != text:
                raise _Bad("conflicting content-length")
            if key != "content-length":
                headers[key] = f"{headers[key]}, {text}"
            continue
        headers[key] = text
    return headers


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Bad("deadline passed")
    return left


class _Batch:
    """Shared state of one fetch: the work queue, the answers, the stop flag."""

    def __init__(self, count: int) -> None:
        self.answers: list[Answer | None] = [None] * count
        self._next = 0
        self._count = count
        self._lock = threading.Lock()
        self.stopped = False

    def take(self) -> int | None:
        with self._lock:
            if self.stopped or self._next >= self._count:
                return None
            index = self._next
            self._next += 1
            return index


def fetch_pipelined(
    endpoint: Endpoint,
    requests: Sequence[bytes],
    *,
    connections: int,
    depth: int,
    timeout: float,
    max_bytes: int,
    on_send: Callable[[int], None],
) -> list[Answer | None]:
    """Send ``requests`` (whole GET request heads) and return their answers in order;
    ``None`` for each one the caller must send again on its careful path.

    ``connections`` keep-alive connections run side by side, each with up to ``depth``
    requests in flight; each answer must be whole within ``timeout`` seconds of its
    request being sent.  ``on_send(n)`` is told of every request put on the wire
    (a request sent again counts again).
    """
    batch = _Batch(len(requests))
    workers = max(1, min(connections, len(requests)))
    threads = [
        threading.Thread(
            target=_run,
            args=(endpoint, requests, batch, max(1, depth), timeout, max_bytes, on_send),
            name=f"regprune-pipeline-{n}",
            daemon=True,
        )
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return batch.answers


def _run(
    endpoint: Endpoint,
    requests: Sequence[bytes],
    batch: _Batch,
    depth: int,
    timeout: float,
    max_bytes: int,
    on_send: Callable[[int], None],
) -> None:
    """One connection's loop: keep ``depth`` requests in flight, read answers in order."""
    resend: deque[int] = deque()  # taken, sent on a connection that dropped, unanswered
    while not batch.stopped:
        try:
            connection = _Connection(endpoint, timeout)
        except (OSError, ssl.SSLError):
            batch.stopped = True  # the careful path reports the connect error properly
            return
        try:
            answered = _pipeline(
                connection, requests, batch, resend, depth, timeout, max_bytes, on_send
            )
        except _Stop:
            batch.stopped = True
            return
        finally:
            connection.close()
        if not answered:  # None: nothing left to send; 0: do not loop on a mute registry
            return


def _pipeline(
    connection: _Connection,
    requests: Sequence[bytes],
    batch: _Batch,
    resend: deque[int],
    depth: int,
    timeout: float,
    max_bytes: int,
    on_send: Callable[[int], None],
) -> int | None:
    """Run one connection until the work is done (None) or it drops (answers read)."""
    in_flight: deque[tuple[int, float]] = deque()  # (index, deadline), in sending order
    answered = 0
    try:
        while True:
            # Top up the pipeline in one write.
            fresh: list[int] = []
            while len(in_flight) + len(fresh) < depth and not connection.closing:
                index = resend.popleft() if resend else batch.take()
                if index is None:
                    break
                fresh.append(index)
            if fresh:
                deadline = time.monotonic() + timeout
                in_flight.extend((index, deadline) for index in fresh)
                on_send(len(fresh))
                connection.send(b"".join(requests[index] for index in fresh), deadline)
            if not in_flight:
                return None
            index, deadline = in_flight[0]
            answer = connection.answer(deadline, max_bytes)
            in_flight.popleft()
            answered += 1
            batch.answers[index] = answer  # a stopping one too: the caller reads Retry-After
            if answer.status in _STOP_STATUSES or answer.status >= 500:
                raise _Stop
            if connection.closing:
                raise _Dropped
    except _Dropped:
        resend.extendleft(reversed([index for index, _ in in_flight]))
        return answered
    except (OSError, ssl.SSLError) as exc:
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            resend.extendleft(reversed([index for index, _ in in_flight]))
            return answered
        raise _Stop from None
    except _Bad:
        raise _Stop from None
