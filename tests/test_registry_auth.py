"""Authentication logic of the registry client, with httpx.MockTransport registries.

The real-registry auth tests (htpasswd, token server) are in test_registry_client.py.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from regprune.errors import AuthenticationFailed, MissingScope, RegistryError, RegistryUnreachable
from regprune.registry import Credentials, RegistryClient, _auth
from regprune.registry._auth import Challenge, canonical_scope, merge_scopes, parse_challenges

URL = "https://registry.test"
REALM = "https://auth.test/token"
DIGEST = "sha256:" + "a" * 64


def test_parse_challenges_handles_quoted_commas() -> None:
    value = (
        f'Bearer realm="{REALM}",service="registry.test",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"'
    )
    assert parse_challenges([value, 'Basic realm="x \\"y\\""']) == [
        Challenge(
            "bearer",
            {
                "realm": REALM,
                "service": "registry.test",
                "scope": "repository:a/b:pull,push repository:c:pull",
                "error": "insufficient_scope",
            },
        ),
        Challenge("basic", {"realm": 'x "y"'}),
    ]


def test_merge_scopes_joins_actions_per_resource() -> None:
    assert merge_scopes("repository:a:pull", "repository:a:delete repository:b:pull", None) == [
        "repository:a:pull,delete",
        "repository:b:pull",
    ]
    assert merge_scopes("registry:catalog:*", "registry:catalog:*") == ["registry:catalog:*"]
    assert merge_scopes("") == []


@pytest.mark.parametrize(
    "scope",
    ["repository:app:push,pull", "repository:app:pull,push"],
)
def test_a_challenge_scope_reads_the_same_whatever_the_action_order(scope: str) -> None:
    # Distribution 2.x lists a challenge's actions in Go map order: one message for both.
    assert canonical_scope(scope) == "repository:app:pull,push"
    assert canonical_scope(f"{scope} registry:catalog:*") == (
        "repository:app:pull,push registry:catalog:*"
    )
    assert canonical_scope("repository:my:ns/app:delete,pull") == "repository:my:ns/app:pull,delete"


class FakeRegistry:
    """A registry and token server behind one MockTransport, recording what it saw."""

    def __init__(
        self,
        *,
        scheme: str = "bearer",
        users: dict[str, str] | None = None,
        grants: dict[str, list[str]] | None = None,
        token_answer: Callable[[int], dict[str, Any]] | None = None,
        token_delay: float = 0.0,
    ) -> None:
        self.scheme = scheme
        self.users = users if users is not None else {"alice": "pw"}
        self.grants = grants  # user -> scopes a token may carry; None: whatever is asked
        self.token_answer = token_answer or (lambda n: {"token": f"t{n}", "expires_in": 300})
        self.token_delay = token_delay
        self.tokens: dict[str, set[str]] = {}  # issued token -> scopes it carries
        self.token_queries: list[list[str]] = []
        self.registry_auth: list[str | None] = []
        self.revoked: set[str] = set()
        self.lock = threading.Lock()

    def user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return name if self.users.get(name) == password else "!bad"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            return self.token(request)
        header = request.headers.get("authorization")
        with self.lock:
            self.registry_auth.append(header)
        needed = self.scope_of(request)
        if self.scheme == "basic":
            if self.user(header) in self.users:
                return self.ok(request)
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        if header and header.startswith("Bearer "):
            token = header[7:]
            scopes = self.tokens.get(token)
            if scopes is None or token in self.revoked:
                return self.challenge(needed, "invalid_token")
            if needed and needed not in scopes:
                return self.challenge(needed, "insufficient_scope")
            return self.ok(request)
        return self.challenge(needed, None)

    def scope_of(self, request: httpx.Request) -> str:
        path = request.url.path
        if path == "/v2/":
            return ""
        if path == "/v2/_catalog":
            return "registry:catalog:*"
        name = path[4:].rsplit("/", 2)[0]
        return f"repository:{name}:{'delete' if request.method == 'DELETE' else 'pull'}"

    def challenge(self, scope: str, error: str | None) -> httpx.Response:
        value = f'Bearer realm="{REALM}",service="registry.test"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return httpx.Response(401, headers={"WWW-Authenticate": value})

    def ok(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(202)
        if request.url.path.endswith("/tags/list"):
            return httpx.Response(200, json={"tags": ["v1"]})
        return httpx.Response(200, json={}, headers={"Docker-Content-Digest": DIGEST})

    def token(self, request: httpx.Request) -> httpx.Response:
        if self.token_delay:
            time.sleep(self.token_delay)
        user = self.user(request.headers.get("authorization"))
        if user == "!bad":
            return httpx.Response(401, json={"details": "bad credentials"})
        assert request.url.params["service"] == "registry.test"
        asked = request.url.params.get_list("scope")
        granted = set()
        for scope in asked:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            for action in actions.split(","):
                single = f"{kind}:{name}:{action}"
                if self.grants is None or single in self.grants.get(user or "", []):
                    granted.add(single)
        with self.lock:
            self.token_queries.append(asked)
            answer = self.token_answer(len(self.token_queries))
            self.tokens[answer.get("token") or answer["access_token"]] = granted
        return httpx.Response(200, json=answer)


def client_for(
    fake: FakeRegistry, credentials: Credentials | None = None, **kw: Any
) -> RegistryClient:
    kw.setdefault("backoff", 0)
    return RegistryClient(URL, credentials=credentials, transport=httpx.MockTransport(fake), **kw)


ALICE = Credentials("alice", "pw")


def test_basic_is_sent_up_front_after_the_first_challenge() -> None:
    fake = FakeRegistry(scheme="basic")
    with client_for(fake, ALICE) as client:
        client.ping()
        assert client.tags("a") == ["v1"]
        assert client.head_manifest("a", "v1") == DIGEST
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert fake.registry_auth == [None, expected, expected, expected]


def test_bearer_token_is_fetched_once_per_scope_with_basic_credentials() -> None:
    fake = FakeRegistry()
    with client_for(fake, ALICE) as client:
        client.ping()
        for _ in range(3):
            assert client.head_manifest("a/b", "v1") == DIGEST
        assert client.tags("a/b") == ["v1"]
        assert client.delete_manifest("a/b", DIGEST) == "deleted"
        assert client.catalog() == []
    # No challenge after the first: the realm is known, tokens are fetched up front.
    assert fake.token_queries == [
        [],
        ["repository:a/b:pull"],
        ["repository:a/b:delete"],
        ["registry:catalog:*"],
    ]
    assert fake.registry_auth.count(None) == 1
    assert client.requests_by_method == {"GET": 2 + 1 + 1 + 4, "HEAD": 3, "DELETE": 1}


def test_the_challenge_scope_is_merged_with_what_the_operation_needs() -> None:
    fake = FakeRegistry()
    original = fake.challenge
    fake.challenge = lambda scope, error: original(  # type: ignore[method-assign]
        scope.replace(":delete", ":pull,push") if scope else scope, error
    )
    with client_for(fake, ALICE) as client:
        client.delete_manifest("a", DIGEST)
    assert fake.token_queries == [["repository:a:pull,push,delete"]]


def test_access_token_field_and_default_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(_auth, "time", SimpleNamespace(monotonic=lambda: now[0]))
    fake = FakeRegistry(token_answer=lambda n: {"access_token": f"t{n}"})  # no expires_in
    with client_for(fake, ALICE) as client:
        client.head_manifest("a", "v1")
        now[0] += 50  # still inside 60 s less the renewal margin
        client.head_manifest("a", "v1")
        assert len(fake.token_queries) == 1
        now[0] += 10
        client.head_manifest("a", "v1")
        assert len(fake.token_queries) == 2
    assert fake.registry_auth[-1] == "Bearer t2"


def test_threads_share_one_token() -> None:
    fake = FakeRegistry(token_delay=0.05)
    with client_for(fake, ALICE, concurrency=8) as client:
        digests = client.map(lambda _: client.head_manifest("a", "v1"), range(64))
    assert digests == [DIGEST] * 64
    assert len(fake.token_queries) == 1


def test_a_revoked_token_is_replaced_once() -> None:
    fake = FakeRegistry()
    with client_for(fake, ALICE) as client:
        client.head_manifest("a", "v1")
        fake.revoked.add("t1")  # e.g. the registry restarted with a new key
        assert client.head_manifest("a", "v1") == DIGEST
    assert fake.registry_auth[-2:] == ["Bearer t1", "Bearer t2"]


def test_a_token_the_registry_never_accepts_is_a_configuration_error() -> None:
    fake = FakeRegistry()
    fake.tokens = _NeverValid()  # type: ignore[assignment]
    with (
        client_for(fake, ALICE) as client,
        pytest.raises(AuthenticationFailed, match=r"rejects the tokens issued by .*invalid_token"),
    ):
        client.tags("a")


class _NeverValid(dict[str, set[str]]):
    def get(self, key: str, default: Any = None) -> Any:
        return None


def test_missing_delete_scope_names_scope_and_user() -> None:
    fake = FakeRegistry(grants={"alice": ["repository:a:pull"]})
    with client_for(fake, ALICE) as client:
        assert client.head_manifest("a", "v1") == DIGEST
        with pytest.raises(MissingScope) as raised:
            client.delete_manifest("a", DIGEST)
        with pytest.raises(MissingScope, match="repository:a:delete"):
            client.check_delete_allowed("a")
    assert str(raised.value) == (
        f"user 'alice' lacks the scope repository:a:delete on registry {URL}; "
        "grant it in the registry's access rules"
    )


def test_anonymous_without_access_is_told_to_log_in() -> None:
    fake = FakeRegistry(grants={})
    with (
        client_for(fake) as client,
        pytest.raises(AuthenticationFailed, match=r"set username and password .* docker login"),
    ):
        client.tags("a")
    assert fake.token_queries == [["repository:a:pull"]]


def test_token_server_rejecting_the_password() -> None:
    fake = FakeRegistry()
    with (
        client_for(fake, Credentials("alice", "wrong")) as client,
        pytest.raises(AuthenticationFailed) as raised,
    ):
        client.ping()
    assert str(raised.value) == (
        f"registry {URL} rejected the credentials for user 'alice' "
        f"(its token server {REALM} answered 401)"
    )


def test_unreachable_token_server() -> None:
    fake = FakeRegistry()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            raise httpx.ConnectError("refused", request=request)
        return fake(request)

    with RegistryClient(
        URL, transport=httpx.MockTransport(handler), retries=1, backoff=0
    ) as client:
        with pytest.raises(RegistryUnreachable, match=f"cannot reach token server {REALM}"):
            client.ping()
        assert client.request_count == 3  # registry once, token server twice


def test_credentials_are_not_sent_to_a_plain_http_realm() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            raise AssertionError("credentials went over plain http")
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token",service="s"'}
        )

    with (
        RegistryClient(URL, credentials=ALICE, transport=httpx.MockTransport(handler)) as client,
        pytest.raises(RegistryError, match="plain-http token server"),
    ):
        client.ping()


def test_401_without_a_usable_challenge() -> None:
    with (
        RegistryClient(URL, transport=httpx.MockTransport(lambda r: httpx.Response(401))) as client,
        pytest.raises(AuthenticationFailed, match="without a Basic or Bearer challenge"),
    ):
        client.ping()


def test_basic_challenge_without_credentials() -> None:
    fake = FakeRegistry(scheme="basic")
    with (
        client_for(fake) as client,
        pytest.raises(AuthenticationFailed, match="requires authentication"),
    ):
        client.ping()
    assert fake.registry_auth == [None]
