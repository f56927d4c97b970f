"""The registry client: the few Distribution API calls regprune needs, done carefully.

One ``httpx.Client`` is shared by all threads (connection reuse matters far more than
anything else for scan speed); authentication headers are sent up front once the
registry's scheme is known; transient failures are retried with backoff.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin

import httpx

from .. import __version__
from ..errors import (
    AuthenticationFailed,
    ConfigError,
    DeletesDisabled,
    ManifestNotFound,
    RegistryError,
    UsageError,
)
from ..lifecycle import DeleteAnswer
from ..mediatypes import MANIFEST_ACCEPT, ZERO_DIGEST
from ._answers import MEDIA_TYPE_PATTERN, parse_catalog, parse_manifest, parse_tag_list
from ._auth import Authenticator
from ._credentials import Credentials, credentials_for
from ._deadline import DeadlineBackend, install
from ._errors import error_code, error_summary, is_retryable, unreachable
from ._origin import origin, parse_http_url, redact
from ._text import load_json, one_line

if TYPE_CHECKING:
    from ..config import RegistrySettings

__all__ = ["Manifest", "RegistryClient"]

T = TypeVar("T")
R = TypeVar("R")

USER_AGENT = f"regprune/{__version__}"
MAX_RETRY_AFTER = 60.0
# No registry answer regprune reads comes near this (Distribution caps manifests at
# 4 MiB; a config blob is kilobytes): a bigger one is refused before it fills memory.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_MEDIA_TYPE = re.compile(MEDIA_TYPE_PATTERN)
# Bounds on one paginated list, far above any real registry (2.8 answers 100 per page).
MAX_PAGES = 100_000
MAX_LIST_LENGTH = 10_000_000
# Signed schema 1 manifests are digested without their signatures: the body cannot be checked.
_SCHEMA1 = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    }
)
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry stores it, with its verified digest."""

    digest: str
    media_type: str
    content: bytes = field(repr=False)
    data: dict[str, Any] = field(repr=False, hash=False, compare=False)


_DIGEST = re.compile(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


def is_digest(reference: str) -> bool:
    """Whether a reference is a digest (``sha256:<hex>``) rather than a tag."""
    return _DIGEST.match(reference) is not None


def _hexdigest(algorithm: str, content: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


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
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise ConfigError(
                f"ca_file {ca_file} does not exist; point it at a PEM CA bundle"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"ca_file {ca_file} is not a usable PEM CA bundle ({exc})") from None
    return context


class _NoCookies(httpx.Cookies):
    """A cookie jar that ignores Set-Cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class RegistryClient:
    """A thread-safe client for one Distribution (Docker/OCI) registry.

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
        self._v2 = self.url + "/v2/"
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

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryClient:
        """A client configured from a ``[registry.NAME]`` section."""
        return cls(
            settings.url,
            credentials=credentials_for(settings),
            ca_file=settings.ca_file,
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            retries=settings.retries,
        )

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    # --- API ---------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers ``/v2/`` and accepts our credentials."""
        response = self._request("GET", self._v2, "")
        if response.status_code == 404:
            raise RegistryError(
                f"{self.url} has no registry API at /v2/; check the url", status=404
            )
        self._check(response, "")

    def catalog(self) -> list[str]:
        """Every repository name (needs the ``registry:catalog:*`` scope with token auth)."""
        scope = "registry:catalog:*"
        url = self._v2 + "_catalog"
        try:
            names = self._paginate(url, "repositories", scope, page_size=1000)
            if names is None:
                # 2.8.x refuses n above catalog.maxentries: walk with the registry's page size.
                names = self._paginate(url, "repositories", scope, page_size=None)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            raise RegistryError(
                f"registry {self.url} does not offer the catalog API (/v2/_catalog answered 404); "
                "name the repositories explicitly instead of with globs",
                status=404,
                code=exc.code,
            ) from None
        return names or []

    def tags(self, repository: str) -> list[str]:
        """Every tag of a repository; [] when the repository does not exist."""
        scope = f"repository:{repository}:pull"
        url = f"{self._v2}{repository}/tags/list"
        names = self._paginate(url, "tags", scope, page_size=1000, missing_ok=True)
        if names is None:
            names = self._paginate(url, "tags", scope, page_size=None, missing_ok=True)
        return names or []

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest, verifying its digest against the body."""
        response = self._request(
            "GET",
            f"{self._v2}{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code == 404:
            raise self._not_found(response, repository, reference)
        self._check(response, f"repository:{repository}:pull")
        content = response.content
        what = f"registry {self.url} sent a manifest for {_ref(repository, reference)} that"
        try:
            data = load_json(content)
        except ValueError:
            raise RegistryError(f"{what} is not JSON", code="MANIFEST_INVALID") from None
        document = parse_manifest(data, what)
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        if content_type in _GENERIC_TYPES or not _MEDIA_TYPE.match(content_type):
            content_type = ""  # a proxy's generic or garbled type says nothing
        media_type = content_type or document.mediaType or ""
        digest = self._manifest_digest(response, repository, reference, content, media_type)
        return Manifest(digest=digest, media_type=media_type, content=content, data=data)

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to, or None if it does not exist."""
        response = self._request(
            "HEAD",
            f"{self._v2}{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code == 404:
            return None
        self._check(response, f"repository:{repository}:pull")
        digest = response.headers.get("docker-content-digest")
        if digest:
            if not is_digest(digest):
                raise RegistryError(
                    f"registry {self.url} sent an invalid Docker-Content-Digest "
                    f"{one_line(digest, 80)!r} for {_ref(repository, reference)}",
                    code="DIGEST_INVALID",
                )
            if is_digest(reference) and digest != reference:
                raise RegistryError(
                    f"registry {self.url} answered {repository}@{reference} with digest {digest}",
                    code="DIGEST_INVALID",
                )
            return digest
        # Some proxies drop the header on HEAD: fall back to a verified GET.
        try:
            return self.get_manifest(repository, reference).digest
        except ManifestNotFound:
            return None

    def get_blob(self, repository: str, digest: str) -> bytes:
        """Fetch a blob (following redirects to storage) and verify its digest."""
        if not is_digest(digest):
            raise UsageError(f"invalid blob digest {digest!r}")
        response = self._request(
            "GET",
            f"{self._v2}{repository}/blobs/{digest}",
            f"repository:{repository}:pull",
            follow_redirects=True,
        )
        self._check(response, f"repository:{repository}:pull")
        content = response.content
        algorithm = digest.partition(":")[0]
        if _hexdigest(algorithm, content) != digest:
            raise RegistryError(
                f"blob {repository}@{digest} from registry {self.url} does not match its "
                "digest; the registry storage may be corrupt",
                code="DIGEST_INVALID",
            )
        return content

    def delete_manifest(self, repository: str, digest: str) -> str:
        """Delete a manifest (and every tag pointing to it): ``"deleted"`` or ``"absent"``."""
        if not is_digest(digest):
            raise UsageError(
                f"cannot delete {repository}:{digest}: the registry deletes by digest, not by tag"
            )
        response = self._delete(repository, digest)
        if response.status_code == 202:
            return DeleteAnswer.DELETED
        if response.status_code == 404:
            return DeleteAnswer.ABSENT
        self._check(response, f"repository:{repository}:delete")
        # Any other 2xx: Distribution always says 202, but a 200/204 also means done.
        return DeleteAnswer.DELETED

    def check_delete_allowed(self, repository: str) -> None:
        """Raise DeletesDisabled or MissingScope if deleting would fail; deletes nothing.

        It deletes the all-zero digest, which no manifest has: 404 (or 400) means the
        registry would have deleted a real one.
        """
        response = self._delete(repository, ZERO_DIGEST)
        if response.status_code in (400, 404) or response.is_success:
            return
        self._check(response, f"repository:{repository}:delete")

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]`` on ``concurrency`` threads, in input order.

        The first failure (in input order among those that failed) is re-raised and
        work not yet started is cancelled.
        """
        work = list(items)
        if len(work) <= 1 or self.concurrency == 1:
            return [fn(item) for item in work]
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(work)), thread_name_prefix="regprune"
        ) as pool:
            futures = [pool.submit(fn, item) for item in work]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and not future.cancelled():
                    error = future.exception()
                    if error is not None:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise error
            return [future.result() for future in futures]

    # --- internals ---------------------------------------------------------------------

    def _count(self, request: httpx.Request) -> None:
        # An event hook, so redirects and token requests are counted too.
        with self._count_lock:
            self.request_count += 1
            method = request.method
            self.requests_by_method[method] = self.requests_by_method.get(method, 0) + 1

    def _delete(self, repository: str, digest: str) -> httpx.Response:
        return self._request(
            "DELETE",
            f"{self._v2}{repository}/manifests/{digest}",
            f"repository:{repository}:delete",  # what Distribution asks for on DELETE
        )

    def _request(
        self,
        method: str,
        url: str,
        scope: str,
        headers: dict[str, str] | None = None,
        *,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send a registry request, authenticating (once) when challenged."""
        sent = self._auth.header(scope)
        response = self._send(method, url, headers, sent, follow_redirects)
        if response.status_code != 401:
            return response
        retry_with = self._auth.answer(response, scope, sent)
        response = self._send(method, url, headers, retry_with, follow_redirects)
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
                    response = self._read(method, url, headers, params, follow_redirects)
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
    ) -> httpx.Response:
        """Send a request and read its body, refusing one over MAX_ANSWER_BYTES."""
        request = self._http.build_request(method, url, headers=headers, params=params)
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

    def _send_token(
        self, realm: str, params: list[tuple[str, str]], headers: dict[str, str]
    ) -> httpx.Response:
        return self._send("GET", realm, headers, None, False, params=params, what="token server")

    def _paginate(
        self,
        url: str,
        key: str,
        scope: str,
        *,
        page_size: int | None,
        missing_ok: bool = False,
    ) -> list[str] | None:
        """Walk a Link-paginated list; None when the registry refuses ``page_size``."""
        next_url: str | None = f"{url}?n={page_size}" if page_size else url
        seen: set[str] = set()
        names: list[str] = []
        while next_url and next_url not in seen:  # a registry repeating a Link must not loop us
            seen.add(next_url)
            response = self._request("GET", next_url, scope)
            if response.status_code == 404 and missing_ok:
                return []
            if (
                response.status_code == 400
                and page_size
                and error_code(response) == "PAGINATION_NUMBER_INVALID"
            ):
                return None
            self._check(response, scope)
            what = f"registry {self.url} answered {redact(next_url)} with a {key} list that"
            try:
                data = load_json(response.content)
            except ValueError:
                raise RegistryError(f"{what} is not JSON") from None
            page = parse_tag_list(data, what) if key == "tags" else parse_catalog(data, what)
            names.extend(page)
            if len(seen) >= MAX_PAGES or len(names) > MAX_LIST_LENGTH:
                raise RegistryError(
                    f"registry {self.url} lists more than {MAX_LIST_LENGTH:,} {key} in "
                    f"{len(seen):,} pages for {redact(url)}; refusing to go on (a registry "
                    "that paginates for ever?)"
                )
            next_url = self._next_page(response, url)
        return list(dict.fromkeys(names))  # a name repeated across pages counts once

    def _next_page(self, response: httpx.Response, url: str) -> str | None:
        """The URL of the next page from a ``Link: <...>; rel="next"`` header, or None.

        A Link to another origin is refused: following it would send the registry's
        credentials elsewhere (and read a list the registry did not give).
        """
        try:
            link = response.links.get("next", {}).get("url")
        except (ValueError, TypeError, AttributeError):  # an unparseable Link header
            link = None
        if not link:
            return None
        target = parse_http_url(urljoin(str(response.url), link.strip()))
        if target is None:
            raise RegistryError(
                f"registry {self.url} answered {redact(url)} with an invalid pagination Link "
                f"{_shorten(link)!r}"
            )
        if origin(target) != self._origin:
            raise RegistryError(
                f"registry {self.url} paginates {redact(url)} with a Link to another origin "
                f"({redact(target)}); refusing to follow it, as regprune talks to and sends "
                "credentials to the configured registry only (check the registry's http.host)"
            )
        return str(target)

    def _manifest_digest(
        self,
        response: httpx.Response,
        repository: str,
        reference: str,
        content: bytes,
        media_type: str,
    ) -> str:
        header = response.headers.get("docker-content-digest")
        if header and not is_digest(header):
            raise RegistryError(
                f"registry {self.url} sent an invalid Docker-Content-Digest "
                f"{one_line(header, 80)!r} for "
                f"{_ref(repository, reference)}",
                code="DIGEST_INVALID",
            )
        algorithm = (header or (reference if is_digest(reference) else "sha256:")).partition(":")[0]
        computed = _hexdigest(algorithm, content)
        digest = header or computed
        if computed != digest and media_type not in _SCHEMA1:
            raise RegistryError(
                f"manifest {_ref(repository, reference)} from registry {self.url} does not match "
                f"its digest {digest} (body hashes to {computed}); a proxy may be rewriting it",
                code="DIGEST_INVALID",
            )
        if is_digest(reference) and digest != reference:
            raise RegistryError(
                f"registry {self.url} answered {repository}@{reference} with a manifest of "
                f"digest {digest}",
                code="DIGEST_INVALID",
            )
        return digest

    def _not_found(
        self, response: httpx.Response, repository: str, reference: str
    ) -> ManifestNotFound:
        return ManifestNotFound(
            f"manifest {_ref(repository, reference)} not found on registry {self.url}",
            status=404,
            code=error_code(response) or "MANIFEST_UNKNOWN",
        )

    def _check(self, response: httpx.Response, scope: str) -> None:
        """Raise the right error for an unsuccessful response."""
        status = response.status_code
        if response.is_success:
            return
        code = error_code(response)
        request = response.request
        if status == 405 and request.method == "DELETE":
            raise DeletesDisabled(
                f"registry {self.url} has deletes disabled: set storage.delete.enabled: true or "
                "REGISTRY_STORAGE_DELETE_ENABLED=true and restart it"
            )
        if status == 403:
            raise self._auth.missing_scope(scope)
        if status == 401:  # only reached if a retry with fresh auth was not attempted
            raise AuthenticationFailed(f"registry {self.url} refused access for {scope}")
        path = request.url.raw_path.decode("ascii", "replace")
        tries = f" after {self.retries + 1} attempts" if status == 429 or status >= 500 else ""
        raise RegistryError(
            f"registry {self.url} answered {status} to {request.method} {path}{tries}: "
            f"{error_summary(response)}",
            status=status,
            code=code,
        )


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count:,} bytes"


class _TooLarge(Exception):
    """An answer bigger than MAX_ANSWER_BYTES."""


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ref(repository: str, reference: str) -> str:
    return f"{repository}@{reference}" if is_digest(reference) else f"{repository}:{reference}"
