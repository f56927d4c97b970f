"""Credentials go only to the configured registry (docs/operations.md, "Where credentials go").

A second loopback HTTP server records everything it receives: a pagination Link, a
blob redirect or a token realm pointing at it must never bring it the registry's
credentials. Real registries (htpasswd and token auth) sit behind the FaultProxy,
which plants the hostile headers.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from regprune.errors import RegistryError
from regprune.registry import Credentials, RegistryClient
from regprune.testing import FaultProxy, ImagePusher
from regprune.testing.token_issuer import TokenIssuer

USER, PASSWORD = "ci", "s3cret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CREDENTIALS = Credentials(USER, PASSWORD)
# Linux routes all of 127.0.0.0/8 to loopback: a second host without DNS.
OTHER_HOST = "127.0.0.2"


class Recorder:
    """An HTTP server that records each request and answers with ``answer(path)``."""

    def __init__(self, answer: Callable[[str], tuple[int, bytes]], host: str = OTHER_HOST):
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append(("GET", self.path, dict(self.headers.items())))
                status, body = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def authorizations(self) -> list[str]:
        return [h.get("Authorization", "") for _, _, h in self.seen if h.get("Authorization")]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def basic_registry(registry_factory) -> Iterator[tuple[FaultProxy, ImagePusher]]:
    server = registry_factory(htpasswd={USER: PASSWORD})
    with FaultProxy(server.url) as proxy, ImagePusher(server.url, auth=(USER, PASSWORD)) as pusher:
        yield proxy, pusher


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    recorder = Recorder(lambda path: (200, b'{"tags": ["planted"], "repositories": ["planted"]}'))
    yield recorder
    recorder.close()


def _add_link(
    target: str,
) -> Callable[[int, httpx.Headers, bytes], tuple[int, httpx.Headers, bytes]]:
    def rewrite(status: int, headers: httpx.Headers, body: bytes):
        if status == 200:  # not on the 401 that precedes the authenticated retry
            headers["Link"] = f'<{target}>; rel="next"'
        return status, headers, body

    return rewrite


@pytest.mark.parametrize("what", ["tags", "catalog"])
def test_a_pagination_link_to_another_origin_is_refused(basic_registry, elsewhere, what):
    proxy, pusher = basic_registry
    pusher.push_image("app", ["v1"])
    path = r"/tags/list" if what == "tags" else r"/_catalog"
    proxy.rewrite(_add_link(f"{elsewhere.url}/v2/app/tags/list?last=v1"), path=path)
    with (
        RegistryClient(proxy.url, credentials=CREDENTIALS) as client,
        pytest.raises(RegistryError, match="Link to another origin") as raised,
    ):
        client.tags("app") if what == "tags" else client.catalog()
    assert elsewhere.seen == []
    message = str(raised.value)
    assert "\n" not in message and PASSWORD not in message
    assert f"({elsewhere.url}/v2/app/tags/list?last=v1); refusing to follow it" in message


def test_a_link_on_another_port_of_the_same_host_is_another_origin(basic_registry):
    proxy, pusher = basic_registry
    pusher.push_image("app", ["v1"])
    recorder = Recorder(lambda path: (200, b'{"tags": []}'), host="127.0.0.1")
    try:
        proxy.rewrite(_add_link(f"{recorder.url}/v2/app/tags/list"), path=r"/tags/list")
        with (
            RegistryClient(proxy.url, credentials=CREDENTIALS) as client,
            pytest.raises(RegistryError, match="another origin"),
        ):
            client.tags("app")
        assert recorder.seen == []
    finally:
        recorder.close()


def test_a_link_with_user_info_is_not_printed_with_it(basic_registry):
    proxy, pusher = basic_registry
    pusher.push_image("app", ["v1"])
    proxy.rewrite(_add_link("http://mallory:hunter2@127.0.0.2:1/v2/x"), path=r"/tags/list")
    with (
        RegistryClient(proxy.url, credentials=CREDENTIALS) as client,
        pytest.raises(RegistryError) as raised,
    ):
        client.tags("app")
    assert "hunter2" not in str(raised.value) and "mallory" not in str(raised.value)


def test_an_absolute_link_to_the_registry_itself_is_followed(basic_registry):
    proxy, pusher = basic_registry
    pusher.push_image("app", ["v1"])
    pusher.push_image("other", ["v1"])

    # Page one is the first repository; its Link is absolute, on the registry's own origin.
    def first_page(status: int, headers: httpx.Headers, body: bytes):
        if status != 200:
            return status, headers, body
        headers["Link"] = f'<{proxy.url}/v2/_catalog?last=app&n=1000>; rel="next"'
        return status, headers, b'{"repositories": ["app"]}'

    proxy.rewrite(first_page, path=r"/_catalog\?n=1000$")
    with RegistryClient(proxy.url, credentials=CREDENTIALS) as client:
        assert client.catalog() == ["app", "other"]
    second = [r for r in proxy.requests if "last=app" in r.path]
    assert second and second[0].headers["authorization"] == BASIC


def test_a_blob_redirect_to_another_origin_carries_no_credentials(basic_registry):
    proxy, pusher = basic_registry
    image = pusher.push_image("app", ["v1"])
    config_digest = pusher.get_manifest("app", "v1").json()["config"]["digest"]
    config = pusher._request("GET", f"{pusher.url}/v2/app/blobs/{config_digest}").content
    storage = Recorder(lambda path: (200, config))  # plays S3 behind a storage redirect
    try:
        proxy.respond(
            307, headers={"Location": f"{storage.url}/blob?sig=x"}, path=r"/blobs/", times=None
        )
        with RegistryClient(proxy.url, credentials=CREDENTIALS) as client:
            assert client.get_manifest("app", "v1").digest == image.digest
            assert client.get_blob("app", config_digest) == config
        blob_requests = [r for r in proxy.requests if "/blobs/" in r.path]
        assert blob_requests[-1].headers["authorization"] == BASIC  # the registry got them
        assert [path for _, path, _ in storage.seen] == ["/blob?sig=x"]
        assert storage.authorizations() == []  # httpx dropped them on the cross-origin hop
    finally:
        storage.close()


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    token_issuer = TokenIssuer({USER: (PASSWORD, ["*"])}, anonymous_actions=["pull"]).start()
    yield token_issuer
    token_issuer.stop()


def test_basic_credentials_never_go_to_a_plain_http_realm_on_another_host(registry_factory, issuer):
    with FaultProxy(issuer.url.removesuffix("/token"), host=OTHER_HOST) as realm:
        registry = registry_factory(
            token_auth={**issuer.registry_auth_config(), "realm": realm.url + "/token"}
        )
        with (
            RegistryClient(registry.url, credentials=CREDENTIALS) as client,
            pytest.raises(RegistryError, match="plain-http token server") as raised,
        ):
            client.ping()
        assert realm.requests == []
        assert PASSWORD not in str(raised.value)
        # Anonymous access may still ask that token server: there is nothing to leak.
        with RegistryClient(registry.url) as client:
            client.ping()
        assert [r.headers.get("authorization") for r in realm.requests] == [None]


def test_a_plain_http_realm_on_the_registry_host_gets_credentials(registry_factory, issuer):
    # The usual self-hosted setup: registry and token server on one host, plain http.
    registry = registry_factory(token_auth=issuer.registry_auth_config())
    with RegistryClient(registry.url, credentials=CREDENTIALS) as client:
        client.ping()
    assert issuer.log[-1][0] == USER


def test_no_authorization_leaves_for_another_origin_even_internally():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with RegistryClient("https://registry.test", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(
            RegistryError, match=r"to https://elsewhere\.test/v2/, which is another"
        ):
            client._send("GET", "https://elsewhere.test/v2/", None, BASIC, False)
        with pytest.raises(RegistryError, match="another origin"):
            client._send("GET", "http://registry.test/v2/", None, BASIC, False)  # downgrade
        client._send("GET", "https://registry.test:443/v2/", None, BASIC, False)
    assert [r.url.host for r in seen] == ["registry.test"]
