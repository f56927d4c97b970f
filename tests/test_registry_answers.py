"""Any registry answer gives a result or one clear registry error, never another exception.

A scripted registry on loopback (a real HTTP server) serves what hypothesis draws:
arbitrary JSON in place of any field of valid manifests, indexes, artifacts, config
blobs, tag lists and catalogs; arbitrary bytes; arbitrary header values. The scan
(real client, real SQLite state) must either return a consistent result or raise
``RegistryError``/``UsageError`` with a one-line message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regprune.errors import RegistryError, UsageError
from regprune.mediatypes import DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST
from regprune.registry import RegistryClient
from regprune.registry._answers import DIGEST_PATTERN, parse_image_config
from regprune.scan import Scanner
from regprune.state import State
from regprune.testing import FaultProxy

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


class ScriptedRegistry:
    """A loopback HTTP server answering each path (query ignored) as ``routes`` says."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool) -> None:
                path = urlsplit(self.path).path
                status, headers, body = registry.routes.get(
                    path, (404, {}, b'{"errors": [{"code": "NAME_UNKNOWN", "message": "no"}]}')
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def serve_manifest(self, reference: str, body: bytes, headers: dict[str, str]) -> None:
        self.routes[f"/v2/app/manifests/{reference}"] = (200, headers, body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedRegistry]:
    server = ScriptedRegistry()
    yield server
    server.close()


# --- strategies ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["sha256:" + "a" * 64, "sha256:../../x", OCI_MANIFEST, "a/b\nc", "\x1b[31m", ""]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside a JSON value."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found.extend(_paths(item, (*prefix, index)))
    return found


def mutate(data: st.DataObject, document: Any, label: str) -> Any:
    """``document`` with up to two fields replaced by arbitrary JSON or removed."""
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(0, 2), label=f"{label} mutations")):
        paths = _paths(document)
        if not paths:
            return data.draw(json_values, label=f"{label} replaced")
        path = data.draw(st.sampled_from(paths), label=f"{label} path")
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans(), label=f"{label} delete"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values, label=f"{label} value")
    return document


def image_documents(created: str = "2024-05-01T00:00:00Z") -> tuple[dict, bytes]:
    config = dumps({"created": created, "config": {"Labels": {"team": "a"}}})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": "sha256:" + "b" * 64,
                "size": 10,
            }
        ],
        "annotations": {"org.opencontainers.image.title": "x"},
    }
    return manifest, config


def build_world(data: st.DataObject, scripted: ScriptedRegistry) -> None:
    """Serve a repository ``app`` with an image, a multi-arch index and a signature,
    every document possibly mutated."""
    scripted.routes = {"/v2/": (200, {}, b"{}")}
    tags: list[str] = []

    child, child_config = image_documents()
    child = mutate(data, child, "child")
    child_body = dumps(child)
    child_config = dumps(mutate(data, json.loads(child_config), "config"))
    scripted.routes[f"/v2/app/blobs/{digest_of(child_config)}"] = (200, {}, child_config)
    if isinstance(child, dict) and isinstance(child.get("config"), dict):
        # Keep the config reachable under the digest the (possibly mutated) manifest names.
        named = child["config"].get("digest")
        if isinstance(named, str):
            scripted.routes[f"/v2/app/blobs/{named}"] = (200, {}, child_config)
    child_digest = digest_of(child_body)
    scripted.serve_manifest(child_digest, child_body, {"Docker-Content-Digest": child_digest})
    scripted.serve_manifest("v1", child_body, {"Docker-Content-Digest": child_digest})
    tags.append("v1")

    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": child_digest,
                "size": len(child_body),
                "platform": {"architecture": "amd64", "os": "linux"},
            },
        ],
    }
    index_body = dumps(mutate(data, index, "index"))
    scripted.serve_manifest("multi", index_body, {"Docker-Content-Digest": digest_of(index_body)})
    tags.append("multi")

    signature = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + "4" * 64,
            "size": 2,
        },
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child_body)},
    }
    signature_body = dumps(mutate(data, signature, "signature"))
    signature_headers = {"Docker-Content-Digest": digest_of(signature_body)}
    if data.draw(st.booleans(), label="odd headers"):
        signature_headers = {
            "Docker-Content-Digest": data.draw(
                st.sampled_from(
                    [digest_of(signature_body), "sha256:zz", "md5:abc", "sha256:" + "0" * 64]
                ),
                label="digest header",
            ),
            "Content-Type": data.draw(
                st.sampled_from(
                    [DOCKER_MANIFEST, "text/html", "application/json; charset=utf-8", "x/y;;", "@@"]
                ),
                label="content type",
            ),
        }
    scripted.serve_manifest("sig", signature_body, signature_headers)
    tags.append("sig")

    tag_list = mutate(data, {"name": "app", "tags": tags}, "tags")
    scripted.routes["/v2/app/tags/list"] = (200, {}, dumps(tag_list))
    catalog = mutate(data, {"repositories": ["app"]}, "catalog")
    scripted.routes["/v2/_catalog"] = (200, {}, dumps(catalog))


def check_error(exc: BaseException) -> None:
    assert isinstance(exc, RegistryError | UsageError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert "\x1b" not in message, repr(message)


def scan(url: str) -> list:
    with RegistryClient(url, timeout=5, retries=0) as client, State(":memory:") as state:
        scanner = Scanner(client, state, "scripted", datetime.now(UTC))
        return scanner.scan(scanner.repositories(["*"]))


def check_result(scans: list) -> None:
    for result in scans:
        for image in result.images:
            for manifest in image.manifests:
                assert isinstance(manifest.size, int)
                assert all(isinstance(child, str) for child in manifest.children)
                assert all(isinstance(blob.size, int) and blob.size >= 0 for blob in manifest.blobs)
                assert manifest.created is None or isinstance(manifest.created, str)
                assert all(isinstance(v, str) for v in manifest.labels.values())
        for tag in result.tags:
            assert isinstance(tag, str)


# --- properties ---------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_any_mutated_registry_answer_gives_a_result_or_a_registry_error(scripted, data):
    build_world(data, scripted)
    try:
        scans = scan(scripted.url)
    except Exception as exc:  # the property is about which exceptions escape
        check_error(exc)
    else:
        check_result(scans)


@SETTINGS
@given(
    endpoint=st.sampled_from(["/v2/_catalog", "/v2/app/tags/list", "/v2/app/manifests/v1", "/v2/"]),
    status=st.sampled_from([200, 200, 200, 201, 202, 204, 301, 400, 401, 403, 404, 500, 503]),
    body=st.binary(max_size=200) | json_values.map(dumps),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "Content-Type",
                "Docker-Content-Digest",
                "Link",
                "Retry-After",
                "WWW-Authenticate",
                "Location",
            ]
        ),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
        max_size=3,
    ),
)
def test_arbitrary_bytes_and_headers_give_a_result_or_a_registry_error(
    scripted, endpoint, status, body, headers
):
    # A valid world, with one endpoint's answer replaced by what hypothesis drew.
    manifest, config = image_documents()
    manifest_body = dumps(manifest)
    scripted.routes = {
        "/v2/": (200, {}, b"{}"),
        "/v2/_catalog": (200, {}, b'{"repositories": ["app"]}'),
        "/v2/app/tags/list": (200, {}, b'{"name": "app", "tags": ["v1"]}'),
        "/v2/app/manifests/v1": (
            200,
            {"Docker-Content-Digest": digest_of(manifest_body)},
            manifest_body,
        ),
        f"/v2/app/blobs/{digest_of(config)}": (200, {}, config),
    }
    scripted.routes[endpoint] = (status, headers, body)
    try:
        with RegistryClient(scripted.url, timeout=5, retries=1, backoff=0) as client:
            client._sleep = lambda seconds: None  # Retry-After is honoured, not waited for
            client.ping()
            with State(":memory:") as state:
                scanner = Scanner(client, state, "scripted", datetime.now(UTC))
                scans = scanner.scan(scanner.repositories(["*"]))
    except Exception as exc:
        check_error(exc)
    else:
        check_result(scans)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(dumps))
def test_any_config_blob_gives_facts_or_none(body):
    created, labels = parse_image_config(body)
    assert created is None or (isinstance(created, str) and len(created) <= 64)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())


# --- named cases the review found, each a clear error ------------------------------------

GOOD, GOOD_CONFIG = image_documents()


def _with(path: tuple[Any, ...], value: Any) -> dict:
    document = copy.deepcopy(GOOD)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(
            _with(("config",), "sha256:abc"),
            "config: expected an object, got a string",
            id="config-not-object",
        ),
        pytest.param(
            _with(("config", "size"), "12"),
            "config.size: expected an integer, got a string",
            id="size-string",
        ),
        pytest.param(
            _with(("config", "size"), True),
            "config.size: expected an integer, got a boolean",
            id="size-bool",
        ),
        pytest.param(
            _with(("config", "size"), -1),
            "config.size: -1 is negative",
            id="size-negative",
        ),
        pytest.param(
            _with(("layers",), {"digest": "x"}),
            "layers: expected a list, got an object",
            id="layers-object",
        ),
        pytest.param(
            _with(("layers", 0, "digest"), "sha256:../../etc"),
            "layers.0.digest: 'sha256:../../etc' is not a digest",
            id="layer-digest",
        ),
        pytest.param(
            _with(("annotations",), {"a": 1}),
            "annotations.a: expected a string, got an integer",
            id="annotation-int",
        ),
        pytest.param(
            _with(("subject",), ["x"]), "subject: expected an object, got a list", id="subject-list"
        ),
        pytest.param(
            _with(("mediaType",), 7),
            "mediaType: expected a string, got an integer",
            id="mediatype-int",
        ),
        pytest.param(
            {"manifests": [{"digest": 5}]},
            "manifests.0.digest: expected a string, got an integer",
            id="child-digest-int",
        ),
        pytest.param(
            {"manifests": "all"}, "manifests: expected a list, got a string", id="manifests-string"
        ),
        pytest.param(["not", "an", "object"], "is not a JSON object", id="manifest-list"),
    ],
)
def test_malformed_manifests_are_named_registry_errors(scripted, manifest, expected):
    body = dumps(manifest)
    scripted.routes = {
        "/v2/app/tags/list": (200, {}, b'{"tags": ["v1"]}'),
        "/v2/app/manifests/v1": (200, {"Docker-Content-Digest": digest_of(body)}, body),
        f"/v2/app/blobs/{digest_of(GOOD_CONFIG)}": (200, {}, GOOD_CONFIG),
    }
    with (
        RegistryClient(scripted.url, retries=0) as client,
        State(":memory:") as state,
        pytest.raises(RegistryError) as raised,
    ):
        Scanner(client, state, "scripted", datetime.now(UTC)).scan(["app"])
    message = str(raised.value)
    assert message.startswith(f"registry {scripted.url} sent a manifest for app:v1 that is"), (
        message
    )
    assert expected in message
    check_error(raised.value)


@pytest.mark.parametrize(
    ("route", "body", "expected"),
    [
        ("/v2/app/tags/list", b'{"tags": [1, 2]}', "tags.0: expected a string, got an integer"),
        ("/v2/app/tags/list", b'{"tags": "v1"}', "tags: expected a list, got a string"),
        ("/v2/app/tags/list", b'{"tags": ["../x"]}', "tags.0: '../x' is not a valid tag"),
        ("/v2/app/tags/list", b"[" * 100_000, "is not JSON"),
        (
            "/v2/_catalog",
            b'{"repositories": [{"name": "a"}]}',
            "repositories.0: expected a string, got an object",
        ),
        (
            "/v2/_catalog",
            b'{"repositories": ["UPPER/case"]}',
            "repositories.0: 'UPPER/case' is not a valid repository name",
        ),
        ("/v2/_catalog", b"\xff\xfe garbage", "is not JSON"),
    ],
)
def test_malformed_lists_are_named_registry_errors(scripted, route, body, expected):
    scripted.routes = {
        "/v2/_catalog": (200, {}, b'{"repositories": ["app"]}'),
        route: (200, {}, body),
    }
    with RegistryClient(scripted.url, retries=0) as client, State(":memory:") as state:
        scanner = Scanner(client, state, "scripted", datetime.now(UTC))
        with pytest.raises(RegistryError) as raised:
            scanner.scan(scanner.repositories(["*"]))
    assert expected in str(raised.value)
    check_error(raised.value)


def test_a_head_digest_header_is_validated(scripted):
    scripted.routes = {"/v2/app/manifests/v1": (200, {"Docker-Content-Digest": "sha256:nope"}, b"")}
    with RegistryClient(scripted.url, retries=0) as client, pytest.raises(RegistryError) as raised:
        client.head_manifest("app", "v1")
    assert "invalid Docker-Content-Digest 'sha256:nope' for app:v1" in str(raised.value)


def test_an_oversized_answer_is_refused(scripted, monkeypatch):
    monkeypatch.setattr("regprune.registry._session.MAX_ANSWER_BYTES", 1000)
    scripted.routes = {"/v2/app/tags/list": (200, {}, b'{"tags": [' + b'"a",' * 400 + b'"b"]}')}
    with RegistryClient(scripted.url, retries=0) as client, pytest.raises(RegistryError) as raised:
        client.tags("app")
    assert str(raised.value) == (
        f"registry {scripted.url} sent more than 1,000 bytes in answer to GET /v2/app/tags/list; "
        "refusing it"
    )


def test_error_bodies_are_summarised_in_one_line(scripted):
    body = json.dumps({"errors": [{"code": "DENIED", "message": "line one\nline two\x1b[2J"}]})
    scripted.routes = {"/v2/app/tags/list": (418, {}, body.encode())}
    with RegistryClient(scripted.url, retries=0) as client, pytest.raises(RegistryError) as raised:
        client.tags("app")
    assert str(raised.value).endswith("DENIED: line one line two [2J")
    check_error(raised.value)


def test_digest_pattern_is_the_clients():
    from regprune.registry._digests import _DIGEST

    assert _DIGEST.pattern == DIGEST_PATTERN


# --- the command line: one error line, never "unexpected" ---------------------------------


@pytest.fixture
def isolated_cli(tmp_path, monkeypatch):
    for name in ("REGPRUNE_CONFIG", "REGPRUNE_STATE", "REGPRUNE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGPRUNE_LOAD_PLUGINS", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.chdir(tmp_path)


def _rewrite_json(change):
    """A FaultProxy rewrite: apply ``change`` to a JSON body and keep its digest header true."""

    def rewrite(status, headers, body):
        if status != 200 or not body:
            return status, headers, body
        new_body = dumps(change(json.loads(body)))
        if "docker-content-digest" in headers:
            headers["Docker-Content-Digest"] = digest_of(new_body)
        return status, headers, new_body

    return rewrite


CLI_CASES = [
    pytest.param(
        r"/manifests/",
        lambda m: {**m, "config": "sha256:" + "a" * 64},
        "config: expected an object, got a string",
        id="config-not-object",
    ),
    pytest.param(
        r"/manifests/",
        lambda m: {**m, "layers": [{**m["layers"][0], "size": "1024"}]},
        "layers.0.size: expected an integer, got a string",
        id="size-not-integer",
    ),
    pytest.param(
        r"/tags/list",
        lambda t: {**t, "tags": [1, {"x": 2}]},
        "tags.0: expected a string, got an integer",
        id="tags-not-strings",
    ),
    pytest.param(
        r"/_catalog",
        lambda c: {"repositories": {"ci/app": True}},
        "repositories: expected a list, got an object",
        id="catalog-not-a-list",
    ),
]


@pytest.mark.parametrize(("path", "change", "expected"), CLI_CASES)
def test_plan_against_a_malformed_registry_prints_one_error_line(
    pusher, fault_proxy, tmp_path, capsys, isolated_cli, path, change, expected
):
    from regprune.cli import run

    pusher.push_image("ci/app", ["build-1"])
    fault_proxy.rewrite(_rewrite_json(change), method="GET", path=path)
    config = tmp_path / "regprune.toml"
    config.write_text(
        f'[registry.local]\nurl = "{fault_proxy.url}"\nretries = 0\n\n'
        '[policy.ci]\nregistry = "local"\nrepositories = ["ci/*"]\n'
        'selectors = [{ use = "count", keep = 0 }]\n'
    )
    capsys.readouterr()
    code = run(["--config", str(config), "--state", str(tmp_path / "state.db"), "plan"])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: registry ") and expected in lines[0], lines[0]
    assert "unexpected" not in err and "Traceback" not in err
    assert code != 0


def test_plan_with_a_malformed_token_answer_prints_one_error_line(
    registry_factory, tmp_path, capsys, isolated_cli
):
    from regprune.cli import run
    from regprune.testing.token_issuer import TokenIssuer

    issuer = TokenIssuer({"ci": ("pw", ["*"])}).start()
    try:
        with FaultProxy(issuer.url.removesuffix("/token")) as realm:
            auth = {**issuer.registry_auth_config(), "realm": realm.url + "/token"}
            registry = registry_factory(token_auth=auth)
            realm.rewrite(_rewrite_json(lambda answer: {**answer, "token": ["not", "text"]}))
            config = tmp_path / "regprune.toml"
            config.write_text(
                f'[registry.local]\nurl = "{registry.url}"\nusername = "ci"\npassword = "pw"\n\n'
                '[policy.ci]\nregistry = "local"\nrepositories = ["ci/app"]\n'
                'selectors = [{ use = "count", keep = 0 }]\n'
            )
            capsys.readouterr()
            code = run(["--config", str(config), "--state", str(tmp_path / "state.db"), "plan"])
    finally:
        issuer.stop()
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: token server {realm.url}/token sent an answer that is invalid: "
        "token: expected a string, got a list"
    ]
    assert code != 0
