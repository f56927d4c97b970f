"""The HTTP side of ``regprune listen``: ``POST /events`` and ``POST /events/NAME``.

A `Listener` binds one address, starts a listening session per configured registry,
and answers each delivery only once its events are committed (through the
`GroupWriter`).  Status codes follow what Distribution does with them: it treats
2xx and 3xx as delivered and retries anything else, forever and in order, so

- 200: recorded (or nothing in it to record: blobs, regprune's own reads, or
  malformed events, which are logged and dropped, since a retry cannot fix them);
- 400: the body is not an envelope at all (never sent by a registry);
- 401: no or wrong bearer token; 404: no such registry; 503: the state DB failed:
  the registry keeps the events and retries, so nothing is lost.

Log lines go to stderr, one per problem; they never hold the token or the header.
"""

from __future__ import annotations

import contextlib
import hmac
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from ..patterns import compile_pattern
from ..state import State
from ..terminal_guard import guarded
from .events import EnvelopeError, parse_envelope
from .settings import ListenSettings
from .writer import GroupWriter, WriteFailed

MAX_BODY = 8 * 1024 * 1024
"""Largest envelope accepted; Distribution sends one event per envelope (~1 KiB)."""
SUMMARY_EVERY = 60.0
"""Seconds between summary lines (only when something happened)."""
FORGET_EVERY = timedelta(hours=1)
"""How often event ids older than the de-duplication window are dropped."""
DRAIN_WAIT = 5.0
"""Seconds a stopping listener waits for requests in flight to be answered."""
_SHOWN_DROPS = 5

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    """One ``listen:`` line on stderr, written in one call so threads never interleave.

    A terminal nobody reads drops the line (`regprune.terminal_guard`), and a stderr
    that went away loses it: a log line never holds up or fails an event.
    """
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with contextlib.suppress(OSError, ValueError):
        stream = guarded(sys.stderr)
        stream.write(f"{stamp} listen: {line}\n")
        stream.flush()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Counters:
    """What the listener saw, beyond what the writer stored."""

    deliveries: int = 0
    ignored: int = 0
    dropped: int = 0
    clamped: int = 0
    refused: int = 0  # 400, 401, 404, 411, 413
    failed: int = 0  # 503


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up a stop
    request_queue_size = 128  # socketserver's 5 resets connections under a burst
    listener: Listener


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms) and a delivery costs that instead of ~1 ms.
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        self.server.listener.handle_post(self)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] in ("/", "/healthz"):
            _answer(self, 200, "ok")
        else:
            _answer(self, 404, "not found")

    def log_message(self, format: str, *args: object) -> None:
        """Silence http.server's access log: the listener logs problems itself."""


def _answer(
    handler: BaseHTTPRequestHandler, status: int, text: str, *, close: bool = False
) -> None:
    body = (text + "\n").encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    if close:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()
    handler.wfile.write(body)


class Listener:
    """One ``regprune listen`` process: the HTTP server, the writer, the sessions."""

    def __init__(
        self,
        state: State,
        settings: ListenSettings,
        registries: Iterable[str],
        *,
        host: str | None = None,
        port: int | None = None,
        log: Log = stderr_log,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        """Bind the address (raises OSError, e.g. when the port is taken); nothing is
        recorded until `start`.  ``registries`` are the config names served on
        ``/events/NAME``; ``settings.registry`` is the one served on ``/events``."""
        if not settings.token or not settings.token.strip():
            raise ValueError("[listen] token is not set (or only whitespace)")
        self._token = f"Bearer {settings.token}".encode()
        self._settings = settings
        self._state = state
        self._registries = tuple(dict.fromkeys(registries))
        self._default = settings.registry
        self._ignore = [compile_pattern(p) for p in settings.ignore_agents]
        self._log = log
        self._clock = clock
        self._heartbeat = settings.heartbeat_delta.total_seconds()
        # Stored with each session: a plan made elsewhere judges coverage by them.
        self._session_settings = {
            "heartbeat": settings.heartbeat_delta,
            "max_gap": settings.max_gap_delta,
        }
        self.counters = Counters()
        self._counter_lock = threading.Lock()
        self._sessions: dict[str, int] = {}
        self._proven: set[str] = set()
        self._in_flight = 0
        self._flight = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._writer: GroupWriter | None = None
        self._server = _Server(
            (host or settings.host, settings.port if port is None else port), _Handler
        )
        self._server.listener = self

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start a session per registry, the writer, the heartbeat and the server."""
        usage = self._state.usage
        usage.sync_every_commit()
        now = self._clock()
        usage.forget_old_event_ids(now)
        for registry in self._registries:
            self._sessions[registry] = usage.start_session(registry, now, **self._session_settings)
        self._writer = GroupWriter(usage, self._clock, delivered=self._prove)
        for target, name in (
            (self._server.serve_forever, "listen-http"),
            (self._tick, "listen-heartbeat"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        host, port = self.address
        default = f", POST /events -> {self._default}" if self._default else ""
        self._log(
            f"listening on http://{host}:{port} for registries "
            f"{', '.join(self._registries) or '(none)'}{default}"
        )

    def stop(self) -> None:
        """Stop serving, answer what is in flight, end the sessions; idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        with self._flight:
            self._flight.wait_for(lambda: self._in_flight == 0, timeout=DRAIN_WAIT)
        self._server.server_close()
        if self._writer is not None:
            self._writer.close()
        now = self._clock()
        for session in self._sessions.values():
            with contextlib.suppress(Exception):
                self._state.usage.end_session(session, now)
        for thread in self._threads:
            thread.join(timeout=DRAIN_WAIT)
        self._summary(final=True)

    def run_until_signalled(self) -> None:
        """`start`, serve until SIGTERM or SIGINT, then `stop` (the CLI's way)."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop.wait(1.0):
                pass
            self._log("stopping")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- background --------------------------------------------------------------------

    def _prove(self, registry: str) -> None:
        """The first delivery for a registry proves its session (coverage starts)."""
        if registry in self._proven:
            return
        session = self._sessions.get(registry)
        if session is not None:
            self._state.usage.heard(session, self._clock(), event=True)
        self._proven.add(registry)

    def _tick(self) -> None:
        last_summary = time.monotonic()
        last_forget = self._clock()
        while not self._stopping.wait(self._heartbeat):
            now = self._clock()
            try:
                for session in self._sessions.values():
                    self._state.usage.heard(session, now)
                if now - last_forget >= FORGET_EVERY:
                    self._state.usage.forget_old_event_ids(now)
                    last_forget = now
            except Exception as exc:  # a busy or failing DB: say so, keep listening
                self._log(f"heartbeat not recorded: {exc}")
            if time.monotonic() - last_summary >= SUMMARY_EVERY:
                self._summary()
                last_summary = time.monotonic()

    _last_summary: tuple[int, ...] = ()

    def _summary(self, *, final: bool = False) -> None:
        totals = self._writer.snapshot() if self._writer is not None else None
        recorded = totals.recorded if totals else 0
        duplicates = totals.duplicates if totals else 0
        c = self.counters
        figures = (c.deliveries, recorded, duplicates, c.ignored, c.dropped, c.refused, c.failed)
        if figures == self._last_summary and not final:
            return
        self._last_summary = figures
        self._log(
            f"{'stopped: ' if final else ''}{c.deliveries} deliveries, {recorded} events "
            f"recorded, {duplicates} duplicates, {c.ignored} not use, {c.dropped} malformed, "
            f"{c.refused} refused, {c.failed} failed"
        )

    # -- requests ----------------------------------------------------------------------

    def handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one delivery (see the module docstring for the status codes)."""
        with self._flight:
            self._in_flight += 1
        try:
            self._handle(handler)
        finally:
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def _refuse(self, handler: BaseHTTPRequestHandler, status: int, text: str, line: str) -> None:
        with self._counter_lock:
            self.counters.refused += 1
        self._log(f"{handler.client_address[0]}: {status}: {line}")
        _answer(handler, status, text, close=status in (411, 413))

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        length_text = handler.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            self._refuse(
                handler,
                411,
                "Content-Length required",
                f"POST {_shown(path)} without Content-Length",
            )
            return
        length = int(length_text)
        if length > MAX_BODY:
            self._refuse(
                handler,
                413,
                "body too large",
                f"POST {_shown(path)}: body of {length} bytes is over {MAX_BODY}",
            )
            return
        body = handler.rfile.read(length)  # read even when refused: the connection stays usable
        given = (handler.headers.get("Authorization") or "").encode()
        if not hmac.compare_digest(given, self._token):
            why = "no Authorization header" if not given else "wrong bearer token"
            self._refuse(handler, 401, "unauthorized", f"POST {_shown(path)}: {why}")
            return
        registry = self._registry_of(path)
        if registry is None:
            if path == "/events":
                line = "POST /events: [listen] registry is not set; post to /events/NAME"
            else:
                line = f"POST {_shown(path)}: no such registry in the config"
            self._refuse(handler, 404, "no such registry", line)
            return
        received = self._clock()
        try:
            parsed = parse_envelope(body, received, self._ignore)
        except EnvelopeError as exc:
            self._refuse(handler, 400, "not a notification envelope", f"POST {_shown(path)}: {exc}")
            return
        for reason in parsed.dropped[:_SHOWN_DROPS]:
            self._log(f"{registry}: dropped malformed {reason}")
        if len(parsed.dropped) > _SHOWN_DROPS:
            self._log(
                f"{registry}: dropped {len(parsed.dropped) - _SHOWN_DROPS} more malformed events"
            )
        if parsed.clamped:
            self._log(
                f"{registry}: {len(parsed.clamped)} event(s) timestamped more than 5 minutes "
                f"ahead (registry clock?) recorded at the received time, first {parsed.clamped[0]!r}"
            )
        assert self._writer is not None
        try:
            self._writer.submit(registry, parsed.events)
        except WriteFailed as exc:
            with self._counter_lock:
                self.counters.failed += 1
            self._log(
                f"{registry}: {len(parsed.events)} event(s) not recorded, answered 503 (the registry retries): {exc}"
            )
            _answer(handler, 503, "not recorded, retry")
            return
        with self._counter_lock:
            c = self.counters
            c.deliveries += 1
            c.ignored += parsed.ignored
            c.dropped += len(parsed.dropped)
            c.clamped += len(parsed.clamped)
        _answer(handler, 200, "ok")

    def _registry_of(self, path: str) -> str | None:
        if path == "/events":
            return self._default if self._default in self._registries else None
        prefix = "/events/"
        if path.startswith(prefix) and path[len(prefix) :] in self._registries:
            return path[len(prefix) :]
        return None


def _shown(text: str, limit: int = 80) -> str:
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."
