"""A deadline for a whole HTTP request, not for each socket operation.

httpx (httpcore) applies its timeouts to every single connect, read and write: a
server that sends one byte every half second never trips a one-second read timeout
and can hold a request for as long as it likes. :class:`DeadlineBackend` is an
httpcore network backend whose streams clamp each operation's timeout to the time
left before the deadline of the request running in the calling thread, so connect,
TLS handshake, sending, headers and body together finish or fail by the deadline.

httpx's sync client does all its I/O in the calling thread, so a thread-local
deadline is exactly "the request this thread is sending" (redirects it follows
included).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

__all__ = ["DeadlineBackend", "install"]


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps httpcore's sync backend; :meth:`deadline` bounds the requests of one thread."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()
        self._local = threading.local()

    @contextlib.contextmanager
    def deadline(self, seconds: float | None) -> Iterator[None]:
        """Within this block, the calling thread's I/O must end ``seconds`` from now."""
        previous = getattr(self._local, "at", None)
        self._local.at = None if seconds is None else time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.at = previous

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The timeout for one operation: the smaller of its own and the time left."""
        at = getattr(self._local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            # Never settimeout(0): that would make the socket non-blocking, not expired.
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=self.clamp(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path,
            timeout=self.clamp(timeout, httpcore.ConnectTimeout),
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, backend: DeadlineBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # One clamp per write is enough: regprune sends no request bodies, and a request
        # head fits in the socket's send buffer, so a slow reader cannot stretch a write.
        self._inner.write(buffer, self._backend.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(
            ssl_context, server_hostname, self._backend.clamp(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def install(client: httpx.Client, backend: DeadlineBackend) -> None:
    """Make every transport of ``client`` (proxy mounts included) use ``backend``.

    httpx offers no public way to choose httpcore's network backend, so this sets the
    pools' attribute; it fails loudly if a future httpx moves it (a test holds that).
    """
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        if transport is None:
            continue
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            raise RuntimeError(
                f"cannot install the request deadline on {type(transport).__name__}: "
                "this httpx/httpcore version is not supported"
            )
        pool._network_backend = backend
