"""A registry that serves the OCI 1.1 referrers API: a real HTTP server on loopback in
front of a real Distribution registry (3.1.1 and 2.8.2 serve no referrers route).

Every request is forwarded to the registry as is, except
``GET /v2/<name>/referrers/<digest>``, which is answered from the registry's own
storage directory the way Distribution's main branch does it (``ReferenceEnumerator``):
every manifest revision the repository holds (``_manifests/revisions/sha256/<hex>/link``)
is read from its blob, and those whose ``subject`` is the digest are listed as
descriptors (``artifactType``, else the config's media type) in an OCI image index.
``?artifactType=`` filters (and the answer says ``OCI-Filters-Applied``); with
``page_size`` the list is paged with ``Link: <...>; rel="next"``, which
Distribution does not do but the spec allows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from regprune.testing import RegistryServer

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class ReferrersProxy:
    """``url`` serves the registry behind it plus the referrers API; ``referrer_requests``
    counts the referrers GETs it answered."""

    def __init__(
        self,
        registry: RegistryServer,
        *,
        page_size: int | None = None,
        apply_filter: bool = True,
        upstream: str | None = None,
    ) -> None:
        """``upstream``: where to forward (default the registry; e.g. a FaultProxy in
        front of it), while referrers are still read from the registry's storage."""
        self.registry = registry
        self.page_size = page_size
        self.apply_filter = apply_filter
        self.referrer_requests: list[str] = []
        # digest -> extra descriptors listed for it (a registry that lies, for tests).
        self.extra: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=upstream or registry.url, timeout=30.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ReferrersProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def __enter__(self) -> ReferrersProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the referrers API, from storage ---------------------------------------------

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        """Descriptors of the repository's manifests whose subject is ``digest``."""
        found = [
            descriptor
            for manifest_digest, body in self._revisions(repository)
            if (descriptor := _descriptor_if_referrer(manifest_digest, body, digest))
        ]
        return sorted(found, key=lambda d: d["digest"]) + self.extra.get(digest, [])

    def _revisions(self, repository: str) -> Iterator[tuple[str, bytes]]:
        v2 = self.registry.storage_path / "docker" / "registry" / "v2"
        revisions = v2 / "repositories" / repository / "_manifests" / "revisions" / "sha256"
        if not revisions.is_dir():
            return
        for link in sorted(revisions.glob("*/link")):
            digest = link.read_text().strip()
            hex_part = digest.partition(":")[2]
            data = v2 / "blobs" / "sha256" / hex_part[:2] / hex_part / "data"
            if data.is_file():
                yield digest, data.read_bytes()

    def _answer(
        self, repository: str, digest: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.referrer_requests.append(digest)
        if not (Path(self.registry.repositories_path) / repository).is_dir():
            body = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]}
            return 404, {"Content-Type": "application/json"}, json.dumps(body).encode()
        descriptors = self.referrers(repository, digest)
        headers = {"Content-Type": OCI_INDEX}
        wanted = query.get("artifactType", [None])[0]
        if wanted and self.apply_filter:
            descriptors = [d for d in descriptors if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        if self.page_size:
            start = int(query.get("page", ["0"])[0])
            page = descriptors[start : start + self.page_size]
            if start + self.page_size < len(descriptors):
                more = f"page={start + self.page_size}"
                if wanted:
                    more += f"&artifactType={quote(wanted, safe='')}"
                headers["Link"] = f'</v2/{repository}/referrers/{digest}?{more}>; rel="next"'
            descriptors = page
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return 200, headers, json.dumps(index).encode()

    # -- the wire ---------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                referrer = _referrers_route(parts.path) if self.command == "GET" else None
                if referrer is not None:
                    status, headers, content = proxy._answer(*referrer, parse_qs(parts.query))
                else:
                    response = proxy._upstream.request(
                        self.command,
                        self.path,
                        content=body,
                        headers={
                            k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                        },
                    )
                    status, content = response.status_code, response.content
                    headers = {
                        k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    headers.pop("content-encoding", None)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        return Handler


def _referrers_route(path: str) -> tuple[str, str] | None:
    """``(repository, digest)`` of a ``/v2/<name>/referrers/<digest>`` path, else None."""
    if not path.startswith("/v2/") or "/referrers/" not in path:
        return None
    name, _, digest = path[len("/v2/") :].rpartition("/referrers/")
    return (name, digest) if name and digest else None


def _descriptor_if_referrer(digest: str, body: bytes, subject: str) -> dict[str, Any] | None:
    try:
        manifest = json.loads(body)
    except ValueError:
        return None
    if not isinstance(manifest, dict) or (manifest.get("subject") or {}).get("digest") != subject:
        return None
    descriptor: dict[str, Any] = {
        "mediaType": manifest.get("mediaType"),
        "digest": digest,
        "size": len(body),
    }
    artifact_type = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if manifest.get("annotations"):
        descriptor["annotations"] = manifest["annotations"]
    return descriptor
