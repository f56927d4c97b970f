"""The Distribution API client: the few registry calls regprune needs, done carefully.

``RegistryClient`` is the ``distribution`` registry back end (see ``_backend.py``).
The HTTP underneath (pooling, auth, retries, deadlines, size caps, the credential
origin gate) is ``HttpSession``; digest checks are in ``_digests``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urljoin

import httpx

from ..errors import (
    AuthenticationFailed,
    DeletesDisabled,
    ManifestNotFound,
    RegistryError,
    UsageError,
)
from ..lifecycle import DeleteAnswer
from ..mediatypes import MANIFEST_ACCEPT, OCI_INDEX, ZERO_DIGEST
from . import _tag_removal
from ._answers import (
    MEDIA_TYPE_PATTERN,
    Descriptor,
    parse_catalog,
    parse_manifest,
    parse_referrers,
    parse_tag_list,
)
from ._credentials import Credentials, credentials_for
from ._digests import check_manifest_digest, hexdigest, is_digest
from ._digests import reference as _ref
from ._errors import error_code, error_summary
from ._origin import origin, parse_http_url, redact
from ._parallel import parallel_map
from ._pipeline import Answer
from ._session import HttpSession
from ._text import load_json, one_line
from ._version import VersionSniffer

if TYPE_CHECKING:
    from ..config import RegistrySettings

__all__ = ["Manifest", "RegistryClient"]

T = TypeVar("T")
R = TypeVar("R")

_MEDIA_TYPE = re.compile(MEDIA_TYPE_PATTERN)
# Bounds on one paginated list, far above any real registry (2.8 answers 100 per page).
MAX_PAGES = 100_000
MAX_LIST_LENGTH = 10_000_000
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry stores it, with its verified digest."""

    digest: str
    media_type: str
    content: bytes = field(repr=False)
    data: dict[str, Any] = field(repr=False, hash=False, compare=False)


class RegistryClient(HttpSession):
    """A thread-safe client for one Distribution (Docker/OCI) registry: the
    ``distribution`` back end.  Arguments are ``HttpSession``'s, plus ``referrers_api``:
    None (ask the registry the first time), False (never ask: Distribution 2.x).
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
        referrers_api: bool | None = None,
    ) -> None:
        super().__init__(
            url,
            credentials=credentials,
            ca_file=ca_file,
            timeout=timeout,
            concurrency=concurrency,
            retries=retries,
            transport=transport,
            backoff=backoff,
        )
        # What the registry said of the referrers API: None until it answered once.
        self.referrers_api = referrers_api
        self._referrers_probe = threading.Lock()

    @functools.cached_property
    def _v2(self) -> str:
        return self.url + "/v2/"

    @functools.cached_property
    def _version_sniffer(self) -> VersionSniffer:
        return VersionSniffer()

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
            # Distribution 2.x has no referrers API: a configured version 2 skips the probe.
            referrers_api=False if settings.version == 2 else None,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # --- API ---------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers ``/v2/`` and accepts our credentials."""
        response = self._request("GET", self._v2, "")
        if response.status_code == 404:
            raise RegistryError(
                f"{self.url} has no registry API at /v2/; check the url", status=404
            )
        self._check(response, "")
        self._version_sniffer.observe(response.headers.get("content-type"), "GET /v2/")

    def detect_version(self) -> tuple[Literal[2, 3] | None, str]:
        """What the registry's answers say of its major version: ``(2 | 3 | None, evidence)``.

        The Content-Type of the first catalog, tag list or ``/v2/`` answer already read
        (see ``_version.py``); ``GET /v2/`` when none was read yet.  Sends no DELETE.
        """
        seen = self._version_sniffer.seen
        if seen is None:
            self.ping()
            seen = self._version_sniffer.seen
        return seen if seen is not None else (None, "GET /v2/ told nothing")

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
        return self.tags_or_none(repository) or []

    def tags_or_none(self, repository: str) -> list[str] | None:
        """Every tag of a repository; None when the registry does not know it (its tag
        list answers 404, NAME_UNKNOWN): how a literal repository name is checked
        without the catalog, which may need a scope the policy's repositories do not."""
        scope = f"repository:{repository}:pull"
        url = f"{self._v2}{repository}/tags/list"
        missing: list[bool] = []
        names = self._paginate(url, "tags", scope, page_size=1000, missing=missing)
        if names is None:
            names = self._paginate(url, "tags", scope, page_size=None, missing=missing)
        return None if missing else (names or [])

    def _manifest_request(self, method: str, repository: str, reference: str) -> httpx.Response:
        """A GET or HEAD of a manifest by tag or digest, unchecked (404 is the caller's)."""
        return self._request(
            method,
            f"{self._v2}{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": MANIFEST_ACCEPT},
        )

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest, verifying its digest against the body."""
        response = self._manifest_request("GET", repository, reference)
        if response.status_code == 404:
            raise self._not_found(response, repository, reference)
        self._check(response, f"repository:{repository}:pull")
        return self._manifest(repository, reference, response.content, response.headers)

    def get_manifests(self, references: Sequence[tuple[str, str]]) -> list[Manifest | None]:
        """``get_manifest`` for many ``(repository, tag or digest)``, in order; None for
        each that does not exist.  The scan's hot path: the GETs are pipelined on a few
        keep-alive connections, and whatever does not go well there goes through
        ``get_manifest`` (so errors, retries and checks are the same).  The first
        error is raised, as ``map`` does.
        """
        answers = self.get_many(
            [
                (
                    f"{self._v2}{repository}/manifests/{reference}",
                    f"repository:{repository}:pull",
                    {"Accept": MANIFEST_ACCEPT},
                )
                for repository, reference in references
            ]
        )
        return self._gather(
            references,
            answers,
            lambda ref, answer: self._manifest(*ref, answer.body, answer.headers),
            self._manifest_or_none,
        )

    def _gather(
        self,
        references: Sequence[tuple[str, str]],
        answers: Sequence[Answer | None],
        parse: Callable[[tuple[str, str], Answer], R],
        careful: Callable[[tuple[str, str]], R | None],
    ) -> list[R | None]:
        """Results of a pipelined batch: ``parse`` each 200, None for each 404, and
        ``careful`` (the one-request method, on ``concurrency`` threads) for the rest."""
        results: list[R | None] = []
        again: list[int] = []
        for index, (reference, answer) in enumerate(zip(references, answers, strict=True)):
            if answer is not None and answer.status == 200:
                results.append(parse(reference, answer))
            else:
                results.append(None)
                if answer is None or answer.status != 404:
                    again.append(index)
        redone = self.map(careful, [references[i] for i in again])
        for index, result in zip(again, redone, strict=True):
            results[index] = result
        return results

    def _manifest_or_none(self, reference: tuple[str, str]) -> Manifest | None:
        try:
            return self.get_manifest(*reference)
        except ManifestNotFound:
            return None

    def _manifest(
        self, repository: str, reference: str, content: bytes, headers: Mapping[str, str]
    ) -> Manifest:
        """A manifest from a 200 answer: JSON, its media type, and its verified digest."""
        what = f"registry {self.url} sent a manifest for {_ref(repository, reference)} that"
        try:
            data = load_json(content)
        except ValueError:
            raise RegistryError(f"{what} is not JSON", code="MANIFEST_INVALID") from None
        document = parse_manifest(data, what)
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type in _GENERIC_TYPES or not _MEDIA_TYPE.match(content_type):
            content_type = ""  # a proxy's generic or garbled type says nothing
        media_type = content_type or document.mediaType or ""
        digest = self._manifest_digest(
            headers.get("docker-content-digest"), repository, reference, content, media_type
        )
        return Manifest(digest=digest, media_type=media_type, content=content, data=data)

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to, or None if it does not exist."""
        response = self._manifest_request("HEAD", repository, reference)
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
        response = self._request(
            "GET",
            self._blob_url(repository, digest),
            f"repository:{repository}:pull",
            follow_redirects=True,
        )
        self._check(response, f"repository:{repository}:pull")
        return self._verified_blob(repository, digest, response.content)

    def get_blobs(self, references: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """``get_blob`` for many ``(repository, digest)``, in order; None for each the
        registry does not have (404).  Pipelined like ``get_manifests``; a redirect to
        storage, and anything else that does not go well, goes through ``get_blob``.
        """
        urls = [self._blob_url(repository, digest) for repository, digest in references]
        answers = self.get_many(
            [
                (url, f"repository:{repository}:pull", {})
                for url, (repository, _) in zip(urls, references, strict=True)
            ]
        )
        return self._gather(
            references,
            answers,
            lambda ref, answer: self._verified_blob(*ref, answer.body),
            self._blob_or_none,
        )

    def _blob_or_none(self, reference: tuple[str, str]) -> bytes | None:
        try:
            return self.get_blob(*reference)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            return None

    def _blob_url(self, repository: str, digest: str) -> str:
        if not is_digest(digest):
            raise UsageError(f"invalid blob digest {digest!r}")
        return f"{self._v2}{repository}/blobs/{digest}"

    def _verified_blob(self, repository: str, digest: str, content: bytes) -> bytes:
        algorithm = digest.partition(":")[0]
        if hexdigest(algorithm, content) != digest:
            raise RegistryError(
                f"blob {repository}@{digest} from registry {self.url} does not match its "
                "digest; the registry storage may be corrupt",
                code="DIGEST_INVALID",
            )
        return content

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """Manifests whose ``subject`` is ``digest`` (OCI distribution-spec 1.1 referrers
        API), or None when the registry does not serve the API.

        A plain 404 (no route: Distribution 2.x and 3.1) means "not served", and then
        this client never asks again.  A 404 with a registry error (NAME_UNKNOWN) means
        served, nothing there.  Pages (``Link``) are followed like tag lists.  When
        ``artifact_type`` is given and the registry did not apply the filter (no
        ``OCI-Filters-Applied: artifactType``), it is applied here.
        """
        if not is_digest(digest):
            raise UsageError(f"invalid subject digest {digest!r}")
        if self.referrers_api is False:
            return None
        if self.referrers_api is None:
            # The first question is asked once, whatever the number of threads asking.
            with self._referrers_probe:
                if self.referrers_api is None:
                    return self._referrers(repository, digest, artifact_type)
        if self.referrers_api is False:
            return None
        return self._referrers(repository, digest, artifact_type)

    def _referrers(
        self, repository: str, digest: str, artifact_type: str | None
    ) -> list[Descriptor] | None:
        scope = f"repository:{repository}:pull"
        url = f"{self._v2}{repository}/referrers/{digest}"
        next_url: str | None = url + (
            f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
        )
        seen: set[str] = set()
        found: list[Descriptor] = []
        filtered = True
        while next_url and next_url not in seen:
            seen.add(next_url)
            response = self._request("GET", next_url, scope, {"Accept": OCI_INDEX})
            if response.status_code == 404:
                if error_code(response) is None and not found:
                    self.referrers_api = False  # no such route: not served
                    return None
                self.referrers_api = True
                return found
            self._check(response, scope)
            self.referrers_api = True
            what = f"registry {self.url} answered {redact(next_url)} with a referrers list that"
            try:
                data = load_json(response.content)
            except ValueError:
                raise RegistryError(f"{what} is not JSON", code="MANIFEST_INVALID") from None
            found.extend(parse_referrers(data, what))
            applied = response.headers.get("oci-filters-applied", "")
            filtered = filtered and "artifacttype" in applied.lower().replace(" ", "").split(",")
            if len(seen) >= MAX_PAGES or len(found) > MAX_LIST_LENGTH:
                raise RegistryError(
                    f"registry {self.url} lists more than {MAX_LIST_LENGTH:,} referrers in "
                    f"{len(seen):,} pages for {redact(url)}; refusing to go on"
                )
            next_url = self._next_page(response, url)
        if artifact_type and not filtered:
            found = [d for d in found if d.artifactType == artifact_type]
        unique = {d.digest: d for d in found if d.digest != digest}  # a page repeating one
        return list(unique.values())

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

    def delete_tag(self, repository: str, tag: str) -> str:
        """Remove one tag, its manifest staying (Distribution 3.x only; see
        ``_tag_removal``): ``"deleted"`` or ``"absent"``."""
        return _tag_removal.delete_tag(self, repository, tag)

    def untag_by_overwrite(
        self, repository: str, tag: str, *, started: Callable[[str], None] | None = None
    ) -> str:
        """Remove one tag on Distribution 2.x through a throwaway manifest (see
        ``_tag_removal``); ``started(digest)`` is told the throwaway's digest first."""
        return _tag_removal.untag_by_overwrite(self, repository, tag, started=started)

    def check_push_allowed(self, repository: str) -> None:
        """Raise ``MissingScope`` if a push to ``repository`` would be refused (untag on
        2.x needs it); starts a blob upload and cancels it, changing nothing."""
        _tag_removal.check_push_allowed(self, repository)

    def check_delete_allowed(self, repository: str) -> None:
        """Raise DeletesDisabled or MissingScope if deleting would fail; deletes nothing.

        It deletes the all-zero digest, which no manifest has: 404 (or 400) means the
        registry would have deleted a real one.
        """
        response = self._delete(repository, ZERO_DIGEST)
        if response.status_code in (400, 404) or response.is_success:
            return
        self._check(response, f"repository:{repository}:delete")

    def preflight(self, repositories: Iterable[str]) -> None:
        """Before an apply deletes anything: ``check_delete_allowed`` for each repository."""
        for repository in sorted(set(repositories)):
            self.check_delete_allowed(repository)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]`` on ``concurrency`` threads, in input order.

        The first failure (in input order among those that failed) is re-raised and
        work not yet started is cancelled.
        """
        return parallel_map(fn, items, self.concurrency)

    # --- internals ---------------------------------------------------------------------

    def _delete(self, repository: str, digest: str) -> httpx.Response:
        return self._request(
            "DELETE",
            f"{self._v2}{repository}/manifests/{digest}",
            f"repository:{repository}:delete",  # what Distribution asks for on DELETE
        )

    def _paginate(
        self,
        url: str,
        key: str,
        scope: str,
        *,
        page_size: int | None,
        missing: list[bool] | None = None,
    ) -> list[str] | None:
        """Walk a Link-paginated list; None when the registry refuses ``page_size``.

        With ``missing`` given, a 404 is no error: ``[]``, and ``missing`` gets a True.
        """
        next_url: str | None = f"{url}?n={page_size}" if page_size else url
        seen: set[str] = set()
        names: list[str] = []
        while next_url and next_url not in seen:  # a registry repeating a Link must not loop us
            seen.add(next_url)
            response = self._request("GET", next_url, scope)
            if response.status_code == 404 and missing is not None:
                missing.append(True)
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
            self._version_sniffer.observe(
                response.headers.get("content-type"),
                "GET /v2/<name>/tags/list" if key == "tags" else "GET /v2/_catalog",
            )
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
        header: str | None,
        repository: str,
        reference: str,
        content: bytes,
        media_type: str,
    ) -> str:
        try:
            return check_manifest_digest(
                self.url, header, repository, reference, content, media_type
            )
        except ValueError as exc:
            raise RegistryError(str(exc), code="DIGEST_INVALID") from None

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


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
