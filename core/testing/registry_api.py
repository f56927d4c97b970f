"""Read and change a test registry through the Registry HTTP API, without regprune's client.

:class:`RegistryApi` is the reading side of :class:`~regprune.testing.ImagePusher`
(which adds the pushing): resolve a tag, list tags and the catalog, check that a
manifest or blob exists, delete a manifest. It shares no code with regprune's own
registry client, so a test's view of the registry does not depend on the code
under test.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any, Self

import httpx

from ..mediatypes import MANIFEST_ACCEPT

__all__ = ["PushError", "RegistryApi"]


class PushError(RuntimeError):
    """The registry refused a request the pusher made; carries the response."""

    def __init__(self, message: str, response: httpx.Response) -> None:
        body = response.text[:500]
        super().__init__(
            f"{message}: {response.request.method} {response.request.url} -> "
            f"HTTP {response.status_code} {body}"
        )
        self.response = response
        self.status_code = response.status_code


class RegistryApi:
    """The registry at ``url``, through one shared ``httpx.Client`` (thread-safe).

    ``auth``, ``client``, ``verify`` and ``timeout`` are as for
    :class:`~regprune.testing.ImagePusher`.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        client: httpx.Client | None = None,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        timeout: float = 30.0,
    ) -> None:
        """Bind to a registry base URL such as ``http://127.0.0.1:5000``."""
        self.url = url.rstrip("/")
        self._auth = httpx.BasicAuth(*auth) if auth else None
        self._own_client = client is None
        if not isinstance(verify, bool | ssl.SSLContext):
            verify = ssl.create_default_context(cafile=os.fspath(verify))
        self._client = client or httpx.Client(
            trust_env=False,
            verify=verify,
            timeout=timeout,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )
        # digest -> a repository a blob was put in, as a cross-repository mount source
        # (filled by ImagePusher's pushes).
        self._sources: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- HTTP plumbing -------------------------------------------------------------

    def _request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        if self._auth is not None:
            kwargs.setdefault("auth", self._auth)
        return self._client.request(method, url, **kwargs)

    def _v2(self, repository: str, rest: str) -> str:
        return f"{self.url}/v2/{repository}/{rest}"

    def get_manifest(self, repository: str, reference: str) -> httpx.Response:
        """GET a manifest with the full Accept list; raises :class:`PushError` if not 200."""
        response = self._request(
            "GET",
            self._v2(repository, f"manifests/{reference}"),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code != 200:
            raise PushError(f"manifest {repository}:{reference} not readable", response)
        return response

    def _descriptor(self, repository: str, digest: str) -> dict[str, Any]:
        response = self._request(
            "HEAD", self._v2(repository, f"manifests/{digest}"), headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code != 200:
            raise PushError(f"subject {digest} not found in {repository}", response)
        return {
            "mediaType": response.headers["Content-Type"],
            "digest": digest,
            "size": int(response.headers["Content-Length"]),
        }

    def resolve(self, repository: str, tag: str) -> str | None:
        """The digest ``tag`` points to (HEAD with every manifest type accepted); None on 404."""
        response = self._request(
            "HEAD", self._v2(repository, f"manifests/{tag}"), headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PushError(f"cannot resolve {repository}:{tag}", response)
        return response.headers["Docker-Content-Digest"]

    def manifest_exists(self, repository: str, digest: str) -> bool:
        """Whether a manifest with ``digest`` is in ``repository``."""
        return self.resolve(repository, digest) is not None

    def blob_exists(self, repository: str, digest: str) -> bool:
        """Whether the registry answers 200 to HEAD on the blob."""
        response = self._request("HEAD", self._v2(repository, f"blobs/{digest}"))
        return response.status_code == 200

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (following ``Link`` pages); [] if it is unknown."""
        found: list[str] = []
        url: str | httpx.URL = self._v2(repository, "tags/list")
        while True:
            response = self._request("GET", url)
            if response.status_code == 404:
                return found
            if response.status_code != 200:
                raise PushError(f"cannot list tags of {repository}", response)
            found.extend(response.json().get("tags") or [])
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return found
            url = httpx.URL(self.url).join(next_link)

    def catalog(self, page_size: int = 1000) -> list[str]:
        """Every repository name in the registry (following ``Link`` pages)."""
        found: list[str] = []
        url: str | httpx.URL = f"{self.url}/v2/_catalog?n={page_size}"
        while True:
            response = self._request("GET", url)
            if response.status_code != 200:
                raise PushError("cannot list the catalog", response)
            found.extend(response.json().get("repositories") or [])
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return found
            url = httpx.URL(self.url).join(next_link)

    def delete(self, repository: str, digest: str) -> int:
        """DELETE a manifest by digest (removing every tag on it); return the HTTP status."""
        response = self._request("DELETE", self._v2(repository, f"manifests/{digest}"))
        return response.status_code

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client if this pusher made it."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
