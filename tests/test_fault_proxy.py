"""The fault-injecting proxy of the test kit, against a real registry."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from regprune.mediatypes import MANIFEST_ACCEPT
from regprune.testing import FaultProxy, ImagePusher, RegistryServer, run_policy


@pytest.fixture
def client(fault_proxy: FaultProxy):
    with httpx.Client(base_url=fault_proxy.url, trust_env=False, timeout=10) as http:
        yield http


def test_forwards_pushes_and_pulls_verbatim(registry_server: RegistryServer, fault_proxy, client):
    # Pushing through the proxy needs the registry's upload Location to come back as sent.
    with ImagePusher(fault_proxy.url) as pusher:
        image = pusher.push_image("team/app", ["v1", "v2"])
    direct = httpx.get(
        f"{registry_server.url}/v2/team/app/manifests/v1",
        headers={"Accept": MANIFEST_ACCEPT},
        trust_env=False,
    )
    proxied = client.get("/v2/team/app/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
    assert proxied.status_code == 200
    assert proxied.content == direct.content
    assert proxied.headers["docker-content-digest"] == image.digest
    assert proxied.headers["content-type"] == direct.headers["content-type"]
    head = client.head("/v2/team/app/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == direct.headers["content-length"]
    methods = {request.method for request in fault_proxy.requests}
    assert {"POST", "PUT", "GET", "HEAD"} <= methods


def test_link_headers_are_forwarded_verbatim(pusher, registry_server, fault_proxy, client):
    for name in ("a", "b", "c"):
        pusher.push_image(name, ["v1"])
    direct = httpx.get(f"{registry_server.url}/v2/_catalog?n=1", trust_env=False)
    proxied = client.get("/v2/_catalog?n=1")
    assert proxied.headers["link"] == direct.headers["link"]
    assert proxied.json() == direct.json() == {"repositories": ["a"]}


def test_keep_alive_reuses_one_connection(fault_proxy, client):
    for _ in range(5):
        assert client.get("/v2/").status_code == 200
    assert fault_proxy.connections_accepted == 1
    assert [request.path for request in fault_proxy.requests] == ["/v2/"] * 5


def test_records_request_headers(fault_proxy, client):
    client.get("/v2/_catalog?n=5", headers={"Authorization": "Basic abc"})
    method, path, headers = fault_proxy.requests[-1]
    assert (method, path) == ("GET", "/v2/_catalog?n=5")
    assert headers["authorization"] == "Basic abc"


def test_respond_with_retry_after_for_the_first_n_matches(fault_proxy, client):
    fault_proxy.respond(503, headers={"Retry-After": "7"}, body=b"busy", path=r"_catalog", times=2)
    first, second, third = (client.get("/v2/_catalog") for _ in range(3))
    assert (first.status_code, first.headers["retry-after"], first.content) == (503, "7", b"busy")
    assert second.status_code == 503
    assert third.status_code == 200 and "repositories" in third.json()
    assert client.get("/v2/").status_code == 200  # never matched


def test_method_filter(fault_proxy, client):
    fault_proxy.respond(429, method="head", times=None)
    assert client.head("/v2/").status_code == 429
    assert client.get("/v2/").status_code == 200
    assert client.head("/v2/").status_code == 429


def test_reset_closes_without_answer_then_recovers(fault_proxy, client):
    fault_proxy.reset(path=r"^/v2/$")
    with pytest.raises(httpx.TransportError):
        client.get("/v2/")
    assert client.get("/v2/").status_code == 200


def test_delay_slows_only_matching_requests(pusher, fault_proxy, client):
    image = pusher.push_image("app", ["v1"])
    fault_proxy.delay(0.5)  # DELETE of manifests by default
    started = time.monotonic()
    assert client.get("/v2/").status_code == 200
    fast = time.monotonic() - started
    started = time.monotonic()
    assert client.delete(f"/v2/app/manifests/{image.digest}").status_code == 202
    slow = time.monotonic() - started
    assert slow >= 0.5 > fast


def test_trickle_sends_one_byte_at_a_time(fault_proxy):
    fault_proxy.trickle(interval=0.05)
    host, port = fault_proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        chunks = [sock.recv(1024) for _ in range(4)]
    assert [len(chunk) for chunk in chunks] == [1, 1, 1, 1]
    assert b"".join(chunks) == b"HTTP"


def test_trickle_body_only(fault_proxy, client):
    fault_proxy.respond(200, headers={"Content-Type": "text/plain"}, body=b"abcd", path=r"^/v2/$")
    fault_proxy.trickle(interval=0.1, part="body", path=r"^/v2/$", times=1)
    started = time.monotonic()
    response = client.get("/v2/")
    assert response.content == b"abcd"
    assert time.monotonic() - started >= 0.3  # four bytes, three intervals between them


def test_rewrite_changes_the_upstream_answer(pusher, fault_proxy, client):
    pusher.push_image("app", ["v1"])

    def swap(status, headers, body):
        data = json.loads(body)
        data["tags"] = [7, None]
        headers["X-Rewritten"] = "yes"
        return 200, headers, json.dumps(data).encode()

    fault_proxy.rewrite(swap, path=r"/tags/list")
    response = client.get("/v2/app/tags/list")
    assert response.json() == {"name": "app", "tags": [7, None]}
    assert response.headers["x-rewritten"] == "yes"
    assert int(response.headers["content-length"]) == len(response.content)
    fault_proxy.clear()
    assert client.get("/v2/app/tags/list").json()["tags"] == ["v1"]


def test_on_request_runs_before_forwarding(pusher, fault_proxy, client):
    pusher.push_image("app", ["v1"])
    seen = []

    def push_a_tag(method, path):
        seen.append((method, path))
        pusher.push_image("app", ["v2"])  # a tag pushed while regprune is asking

    fault_proxy.on_request(push_a_tag, method="GET", path=r"/tags/list", times=1)
    assert client.get("/v2/app/tags/list").json()["tags"] == ["v1", "v2"]
    assert seen == [("GET", "/v2/app/tags/list")]


def test_a_failing_hook_answers_500_and_is_recorded(fault_proxy, client):
    def boom(method, path):
        raise RuntimeError("nope")

    fault_proxy.on_request(boom, times=1)
    response = client.get("/v2/")
    assert response.status_code == 500 and b"RuntimeError: nope" in response.content
    assert [str(error) for error in fault_proxy.errors] == ["nope"]


def test_close_ends_trickling_answers_promptly(registry_server):
    proxy = FaultProxy(registry_server.url).start()
    proxy.trickle(interval=10)
    errors = []

    def fetch():
        try:
            httpx.get(proxy.url + "/v2/", timeout=30, trust_env=False)
        except httpx.TransportError as exc:
            errors.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    proxy.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and errors
    assert time.monotonic() - started < 5


def test_rejects_bad_arguments(registry_server):
    with pytest.raises(ValueError, match="upstream"):
        FaultProxy("127.0.0.1:5000")
    with FaultProxy(registry_server.url) as proxy:
        with pytest.raises(ValueError, match="times"):
            proxy.reset(times=0)
        with pytest.raises(ValueError, match="part"):
            proxy.trickle(part="headers")


def test_the_documented_example_plans_through_a_flaky_registry(registry_server, pusher, tmp_path):
    pusher.push_image("app", ["v1"])
    with FaultProxy(registry_server.url) as proxy:
        proxy.respond(503, headers={"Retry-After": "0"}, path=r"/tags/list", times=2)
        plan = run_policy(
            proxy.url, {"selectors": [{"use": "count", "keep": 0}]}, state_dir=tmp_path
        )
    assert {item.tags[0] for item in plan.delete} == {"v1"}
    assert [r.path for r in proxy.requests].count("/v2/app/tags/list?n=1000") == 3
