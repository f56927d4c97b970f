"""HTTP to one registry origin: the transport every registry back end can build on.

One ``httpx.Client`` is shared by all threads (connection reuse matters far more than
anything else for scan speed); authentication headers are sent up front once the
registry's scheme is known; transient failures are retried with backoff; every
request is bounded in time and in answer size; credentials go to the registry's
own origin only.  What the answers mean is the job of the API on top
(``RegistryClient`` for the Distribution API).
"""

from __future__ import annotations

import email.utils
import functools
import math
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Self

import httpx

from .. import __version__
from ..bounded_read import CA_FILE_LIMIT, Refused, check_regular_file
from ..errors import ConfigError, RegistryError, UsageError
from ._auth import Authenticator
from ._credentials import Credentials
from ._deadline import DeadlineBackend, install
from ._errors import is_retryable, unreachable
from ._origin import origin, redact
from ._pipeline import Answer, Endpoint, fetch_pipelined, safe_target

__all__ = ["MAX_ANSWER_BYTES", "HttpSession"]

USER_AGENT = f"regprune/{__version__}"
MAX_RETRY_AFTER = 60.0
# No registry answer regprune reads comes near this (Distribution caps manifests at
# 4 MiB; a config blob is kilobytes): a bigger one is refused before it fills memory.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# Pipelined GETs (``get_many``): min(concurrency, this) connections.  A registry serves
# the requests of one connection one after the other, so the connections are what it
# works on at once; the queued ones only hide the round trips (docs/performance.md).
PIPELINE_CONNECTIONS = 4
PIPELINE_DEPTH = 16  # requests queued on each connection
PIPELINE_CHUNK = 1000  # requests per round of connections


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        if math.isnan(seconds):
            return None
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify against the system store (certifi if it is empty), plus ``ca_file`` when given.

    Cached: building a context costs ~100 ms here and an SSLContext is safe to share.
    """
    context = ssl.create_default_context()
    if not context.cert_store_stats()["x509_ca"]:
        import certifi  # an httpx dependency; for systems without a usable CA store

        context.load_verify_locations(certifi.where())
    if ca_file:
        try:
            # ssl would block on a FIFO and read /dev/zero for ever: a file, or nothing.
            check_regular_file(ca_file, CA_FILE_LIMIT, "point it at a PEM CA bundle")
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise ConfigError(
                f"ca_file {ca_file} does not exist; point it at a PEM CA bundle"
            ) from None
        except Refused as exc:
            raise ConfigError(f"ca_file {exc}") from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"ca_file {ca_file} is not a usable PEM CA bundle ({exc})") from None
    return context


class _NoCookies(httpx.Cookies):
    """A cookie jar that ignores Set-Cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _TooLarge(Exception):
    """An answer bigger than MAX_ANSWER_BYTES."""


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count:,} bytes"


class HttpSession:
    """Thread-safe HTTP to one registry: pooled, authenticated, retried, bounded.

    ``retries`` is how many times a request is tried again after a connection error,
    a 429 or a 5xx (so ``retries=3`` means at most four attempts); the wait doubles
    from ``backoff`` seconds unless the registry sends ``Retry-After``.
    """

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        concurrency: int = 8,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        backoff: float = 0.2,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"invalid registry url {url!r}: use http://host:port or https://host")
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.request_count = 0
        self.requests_by_method: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._origin = origin(self.url)
        self._sleep: Callable[[float], None] = time.sleep  # tests replace it
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        self._http = httpx.Client(
            verify=_ssl_context(ca_file) if transport is None else True,
            timeout=httpx.Timeout(timeout),
            limits=limits,
            transport=transport,
            # identity: registry answers are small, and a compressed one could expand
            # far beyond MAX_ANSWER_BYTES after the size check.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            event_hooks={"request": [self._count]},
        )
        if isinstance(getattr(self._http, "_cookies", None), httpx.Cookies):
            # Registry APIs use no cookies, and parsing them costs ~25% of the CPU time of a
            # request in httpx 0.28, which is what bounds a threaded scan.
            self._http._cookies = _NoCookies()
        # `timeout` bounds each whole request (connect, send, headers, body), not each read:
        # a registry trickling bytes must not hold a scan or an apply's lock for ever.
        self._deadline = DeadlineBackend()
        if transport is None:
            install(self._http, self._deadline)
        self._auth = Authenticator(self.url, credentials, self._send_token)
        self._base_path = httpx.URL(self.url).raw_path.decode("ascii").rstrip("/")
        self._endpoint = self._direct_endpoint(ca_file) if transport is None else None

    def _direct_endpoint(self, ca_file: str | None) -> Endpoint | None:
        """Where pipelined GETs may go, or None when httpx must carry every request
        (an injected transport, or a proxy from the environment for this url)."""
        url = httpx.URL(self.url)
        if self._http._transport_for_url(url) is not self._http._transport:
            return None  # HTTP(S)_PROXY / ALL_PROXY applies: do not bypass it
        https = url.scheme == "https"
        return Endpoint(
            host=url.host,
            port=url.port or (443 if https else 80),
            host_header=url.netloc.decode("ascii"),
            tls=_ssl_context(ca_file) if https else None,
        )

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending -----------------------------------------------------------------------

    def _count(self, request: httpx.Request) -> None:
        # An event hook, so redirects and token requests are counted too.
        with self._count_lock:
            self.request_count += 1
            method = request.method
            self.requests_by_method[method] = self.requests_by_method.get(method, 0) + 1

    def _request(
        self,
        method: str,
        url: str,
        scope: str,
        headers: dict[str, str] | None = None,
        *,
        follow_redirects: bool = False,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send a registry request, authenticating (once) when challenged.  ``content`` is
        a body (only untag's throwaway manifest on 2.x sends one: PUT and POST)."""
        sent = self._auth.header(scope)
        response = self._send(method, url, headers, sent, follow_redirects, content=content)
        if response.status_code != 401:
            return response
        retry_with = self._auth.answer(response, scope, sent)
        response = self._send(method, url, headers, retry_with, follow_redirects, content=content)
        if response.status_code == 401:
            raise self._auth.failure(response, scope)
        return response

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        authorization: str | None,
        follow_redirects: bool,
        *,
        params: list[tuple[str, str]] | None = None,
        what: str = "registry",
        content: bytes | None = None,
    ) -> httpx.Response:
        """One request with retries on connection errors, 429 and 5xx (but not 501)."""
        if authorization is not None and origin(url) != self._origin:
            # The one gate every registry request passes: credentials stay at the registry.
            raise RegistryError(
                f"refusing to send the credentials for registry {self.url} to {redact(url)}, "
                "which is another origin"
            )
        if authorization is not None:
            headers = (
                {**headers, "Authorization": authorization}
                if headers
                else {"Authorization": authorization}
            )
        attempt = 0
        while True:
            try:
                with self._deadline.deadline(self.timeout):
                    response = self._read(
                        method, url, headers, params, follow_redirects, content
                    )
            except _TooLarge:
                raise RegistryError(
                    f"{what} {self.url if what == 'registry' else redact(url)} sent more than "
                    f"{_size(MAX_ANSWER_BYTES)} in answer to {method} "
                    f"{httpx.URL(url).path}; refusing it"
                ) from None
            except httpx.TransportError as exc:
                if attempt >= self.retries or not is_retryable(exc):
                    target = self.url if what == "registry" else redact(url)
                    raise unreachable(exc, target, what=what, timeout=self.timeout) from None
                delay = self.backoff * 2**attempt
            except httpx.RequestError as exc:  # e.g. too many redirects, undecodable body
                raise RegistryError(f"{method} {redact(url)} failed: {exc}") from None
            else:
                status = response.status_code
                if (status != 429 and status < 500) or status == 501 or attempt >= self.retries:
                    return response
                after = _retry_after(response.headers.get("retry-after"))
                delay = after if after is not None else self.backoff * 2**attempt
            attempt += 1
            self._sleep(min(delay, MAX_RETRY_AFTER))

    def _read(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        params: list[tuple[str, str]] | None,
        follow_redirects: bool,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send a request and read its body, refusing one over MAX_ANSWER_BYTES."""
        # A tuple: httpx types the list form invariantly, and list[tuple[str, str]] fails it.
        query = tuple(params) if params is not None else None
        request = self._http.build_request(
            method, url, headers=headers, params=query, content=content
        )
        response = self._http.send(request, stream=True, follow_redirects=follow_redirects)
        try:
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
                raise _TooLarge
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > MAX_ANSWER_BYTES:
                    raise _TooLarge
                chunks.append(chunk)
            # What Response.read() stores: .content, .json() and .text work as usual.
            response._content = b"".join(chunks)
        finally:
            response.close()
        return response

    def get_many(self, requests: list[tuple[str, str, dict[str, str]]]) -> list[Answer | None]:
        """GET many ``(url, scope, headers)`` of this registry, pipelined; the answers in
        order, ``None`` for each request to send again through ``_request`` (which
        retries, follows challenges and maps errors).  Only GETs: never a DELETE or PUT.

        Counted like any request.  All ``None`` when the fast path is off (an injected
        transport or a proxy) or a request cannot be pipelined as it is.
        """
        answers: list[Answer | None] = []
        # In chunks: each one's heads carry a token fetched for it (a scan can outlast a
        # token), and 100,000 request heads are not held at once.
        for start in range(0, len(requests), PIPELINE_CHUNK):
            answers.extend(self._get_chunk(requests[start : start + PIPELINE_CHUNK]))
            if any(a is None for a in answers[start:]):
                # Trouble: the rest goes the careful way too, without trying the pipeline.
                answers.extend([None] * (len(requests) - len(answers)))
                break
        return answers

    def _get_chunk(self, requests: list[tuple[str, str, dict[str, str]]]) -> list[Answer | None]:
        endpoint = self._endpoint
        answers: list[Answer | None] = [None] * len(requests)
        if endpoint is None or not requests:
            return answers
        heads: list[bytes] = []
        indexes: list[int] = []
        fields: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        for index, (url, scope, headers) in enumerate(requests):
            key = (scope, tuple(headers.items()))
            if key not in fields:  # the same few for a whole scan: built once each
                fields[key] = self._header_lines(endpoint, scope, headers)
            head = self._request_head(url, fields[key])
            if head is not None:  # else that one goes the careful way
                heads.append(head)
                indexes.append(index)
        connections = min(PIPELINE_CONNECTIONS, self.concurrency)
        fetched = fetch_pipelined(
            endpoint,
            heads,
            connections=connections,
            depth=PIPELINE_DEPTH,
            timeout=self.timeout,
            max_bytes=MAX_ANSWER_BYTES,
            on_send=self._count_gets,
        )
        for index, answer in zip(indexes, fetched, strict=True):
            answers[index] = answer
        busy = next((a for a in fetched if a and (a.status == 429 or a.status >= 500)), None)
        if busy is not None:
            # The registry asked us to slow down: wait as told before the careful path
            # sends those requests again.
            after = _retry_after(busy.headers.get("retry-after"))
            self._sleep(min(after if after is not None else self.backoff, MAX_RETRY_AFTER))
        return answers

    def _header_lines(self, endpoint: Endpoint, scope: str, headers: dict[str, str]) -> str | None:
        """The header lines of a pipelined GET needing ``scope``; None when a value
        holds a line break (it would add a header of its own)."""
        fields = {
            "Host": endpoint.host_header,
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            **headers,
        }
        authorization = self._auth.header(scope)
        if authorization is not None:
            fields["Authorization"] = authorization
        if any("\r" in v or "\n" in v for v in fields.values()):
            return None
        return "".join(f"{name}: {value}\r\n" for name, value in fields.items())

    def _request_head(self, url: str, lines: str | None) -> bytes | None:
        """A GET request head for a url of this registry; None when it cannot be sent as
        it is (another origin, a target that needs escaping, unsafe header lines)."""
        if lines is None or not url.startswith(self.url + "/"):
            return None  # also keeps the credentials at their own origin
        target = self._base_path + url[len(self.url) :]
        if not safe_target(target):
            return None
        return f"GET {target} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")

    def _count_gets(self, count: int) -> None:
        with self._count_lock:
            self.request_count += count
            self.requests_by_method["GET"] = self.requests_by_method.get("GET", 0) + count

    def _send_token(
        self, realm: str, params: list[tuple[str, str]], headers: dict[str, str]
    ) -> httpx.Response:
        return self._send("GET", realm, headers, None, False, params=params, what="token server")
