"""`[registry.NAME] timeout` bounds each whole request, even against a trickling peer.

httpx bounds each socket read; a server sending one byte every half second never trips
that. These tests trickle real registry and token-server answers through the test kit's
FaultProxy and check that the request fails with "timed out after 1s" within seconds.
"""

from __future__ import annotations

import time

import httpx
import pytest

from regprune.errors import RegistryUnreachable
from regprune.registry import Credentials, RegistryClient
from regprune.registry._deadline import DeadlineBackend, install
from regprune.testing import FaultProxy, ImagePusher, run_cli
from regprune.testing.token_issuer import TokenIssuer

from .test_cli_errors import assert_one_error_line, stored_plans

# Without the deadline each of these takes minutes (hundreds of bytes, 0.5 s apart);
# with it, one second plus scheduling. The bound is generous for a loaded 2-core box.
BOUND = 4.0


pytestmark = pytest.mark.usefixtures("isolated_cli")


@pytest.mark.parametrize("part", ["all", "body"])
def test_a_trickled_answer_times_out_after_the_timeout(pusher, fault_proxy, part):
    pusher.push_image("app", ["v1"])
    fault_proxy.trickle(interval=0.5, part=part, path=r"/manifests/")
    with RegistryClient(fault_proxy.url, timeout=1, retries=0) as client:
        client.ping()  # not trickled: the connection is up and pooled
        started = time.monotonic()
        with pytest.raises(RegistryUnreachable, match=r"timed out after 1s") as raised:
            client.get_manifest("app", "v1")
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < BOUND, elapsed
    assert str(raised.value) == (
        f"cannot reach registry {fault_proxy.url}: timed out after 1s; "
        "check the url and the network, or raise the timeout option"
    )


def test_each_retry_gets_its_own_deadline(pusher, fault_proxy):
    pusher.push_image("app", ["v1"])
    fault_proxy.trickle(interval=0.5, path=r"/tags/list", times=1)
    with RegistryClient(fault_proxy.url, timeout=1, retries=1, backoff=0) as client:
        assert client.tags("app") == ["v1"]  # the first attempt timed out, the retry did not
    assert [r.path for r in fault_proxy.requests].count("/v2/app/tags/list?n=1000") == 2


def test_a_trickled_delete_cannot_hold_apply(pusher, fault_proxy):
    image = pusher.push_image("app", ["v1"])
    fault_proxy.trickle(interval=0.5, method="DELETE")
    with RegistryClient(fault_proxy.url, timeout=1, retries=0) as client:
        started = time.monotonic()
        with pytest.raises(RegistryUnreachable, match="timed out after 1s"):
            client.delete_manifest("app", image.digest)
        assert time.monotonic() - started < BOUND


def test_plan_against_a_trickling_registry_ends_with_one_error_line(
    pusher, fault_proxy, tmp_path, capsys
):
    pusher.push_image("ci/app", ["build-1"])
    fault_proxy.trickle(interval=0.5)
    config = tmp_path / "regprune.toml"
    config.write_text(
        f'[registry.local]\nurl = "{fault_proxy.url}"\ntimeout = 1\nretries = 0\n\n'
        '[policy.ci]\nregistry = "local"\nrepositories = ["ci/*"]\n'
        'selectors = [{ use = "count", keep = 0 }]\n'
    )
    state = tmp_path / "state.db"
    started = time.monotonic()
    code, _, err = run_cli(capsys, "--config", str(config), "--state", str(state), "plan")
    elapsed = time.monotonic() - started
    assert_one_error_line(
        code, err, f"cannot reach registry {fault_proxy.url}", "timed out after 1s"
    )
    assert elapsed < BOUND, elapsed
    assert stored_plans(state) == []


def test_a_trickling_token_server_times_out(registry_factory):
    issuer = TokenIssuer({"admin": ("admin-pw", ["*"])}).start()
    try:
        with FaultProxy(issuer.url.removesuffix("/token")) as proxy:
            auth = {**issuer.registry_auth_config(), "realm": proxy.url + "/token"}
            registry = registry_factory(token_auth=auth)
            proxy.trickle(interval=0.5)
            credentials = Credentials("admin", "admin-pw")
            with RegistryClient(registry.url, credentials=credentials, timeout=1, retries=0) as c:
                started = time.monotonic()
                with pytest.raises(RegistryUnreachable) as raised:
                    c.ping()
                elapsed = time.monotonic() - started
            assert str(raised.value).startswith(
                f"cannot reach token server {proxy.url}/token: timed out after 1s"
            )
            assert elapsed < BOUND, elapsed
            proxy.clear()
            with RegistryClient(registry.url, credentials=credentials, timeout=1) as c:
                c.ping()  # the same setup works once the token server answers promptly
    finally:
        issuer.stop()


def test_the_deadline_does_not_slow_or_break_normal_requests(registry_server):
    with ImagePusher(registry_server.url) as pusher:
        pusher.push_image("app", [f"t{n}" for n in range(20)])
    with RegistryClient(registry_server.url, timeout=1, retries=0) as client:
        digests = client.map(lambda tag: client.head_manifest("app", tag), client.tags("app"))
    assert len(set(digests)) == 1


def test_install_fails_loudly_on_a_transport_it_cannot_wrap():
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client, pytest.raises(RuntimeError, match="deadline"):
        install(client, DeadlineBackend())


def test_installed_on_every_transport_of_a_real_client(monkeypatch):
    # Proxy mounts from HTTP(S)_PROXY get the deadline too.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with RegistryClient("https://registry.test") as client:
        pools = [client._http._transport._pool] + [
            mount._pool for mount in client._http._mounts.values() if mount is not None
        ]
        assert len(pools) >= 2
        assert all(pool._network_backend is client._deadline for pool in pools)
