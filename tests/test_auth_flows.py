"""The whole plan → apply flow through basic and bearer-token auth on a real registry."""

from __future__ import annotations

import httpx
import pytest

from regprune.errors import AuthenticationFailed, MissingScope
from regprune.testing import ImagePusher
from regprune.testing.token_issuer import TokenIssuer

from .support import YES, days_ago, engine_for

POLICY = {"repositories": ["ci/app"], "selectors": [{"use": "age", "older_than": "7d"}]}


@pytest.fixture
def token_registry(registry_factory):
    issuer = TokenIssuer(
        {
            "reader": ("reader-pw", ["pull"]),
            "cleaner": ("cleaner-pw", ["pull", "delete", "catalog"]),
        }
    ).start()
    server = registry_factory(token_auth=issuer.registry_auth_config())
    token = issuer.make_token(
        "pusher", [{"type": "repository", "name": "ci/app", "actions": ["pull", "push"]}]
    )
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    pusher = ImagePusher(server.url, client=client)
    yield server, pusher
    pusher.close()
    issuer.stop()


def test_token_without_delete_scope_is_refused_before_anything_is_deleted(token_registry, tmp_path):
    server, pusher = token_registry
    image = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    engine = engine_for(server.url, tmp_path, {"ci": POLICY}, username="reader", password="reader-pw")
    plan = engine.plan("ci")
    assert [item.digest for item in plan.delete] == [image.digest]

    with pytest.raises(MissingScope, match=r"repository:ci/app:delete"):
        engine.apply(plan.id, context=YES)

    assert pusher.resolve("ci/app", "build-1") == image.digest


def test_token_with_delete_scope_prunes(token_registry, tmp_path):
    server, pusher = token_registry
    old = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    new = pusher.push_image("ci/app", ["build-2"])
    policy = {**POLICY, "repositories": ["ci/*"]}  # a glob: needs registry:catalog:*
    engine = engine_for(server.url, tmp_path, {"ci": policy}, username="cleaner", password="cleaner-pw")

    result = engine.apply(engine.plan("ci").id, context=YES)

    assert result.status == "done"
    assert pusher.resolve("ci/app", "build-1") is None
    assert pusher.resolve("ci/app", "build-2") == new.digest
    assert [o.item.digest for o in result.of("deleted")] == [old.digest]


def test_basic_auth_flow_and_wrong_password(registry_factory, tmp_path):
    server = registry_factory(htpasswd={"ci": "s3cret"})
    pusher = ImagePusher(server.url, auth=("ci", "s3cret"))
    pusher.push_image("ci/app", ["build-1"], created=days_ago(30))

    wrong = engine_for(server.url, tmp_path / "wrong", {"ci": POLICY}, username="ci", password="nope")
    with pytest.raises(AuthenticationFailed, match="rejected the credentials for user 'ci'"):
        wrong.plan("ci")
    assert wrong.state.plans.find() == []

    engine = engine_for(server.url, tmp_path, {"ci": POLICY}, username="ci", password="s3cret")
    assert engine.apply(engine.plan("ci").id, context=YES).status == "done"
    assert pusher.resolve("ci/app", "build-1") is None
