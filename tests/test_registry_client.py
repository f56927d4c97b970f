"""RegistryClient against a real Distribution 2.8.2 registry, and MockTransport for edge cases.

The registry fixture here is deliberately minimal and local to this file (the shared
``regprune.testing`` kit is written elsewhere): a config.yml under tmp_path, a free
loopback port, and a poll of /v2/ until it answers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from regprune.errors import (
    AuthenticationFailed,
    DeletesDisabled,
    ManifestNotFound,
    MissingScope,
    RegistryError,
    RegistryUnreachable,
    UsageError,
)
from regprune.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    ZERO_DIGEST,
)
from regprune.registry import Credentials, Manifest, RegistryClient
from regprune.testing import find_registry_binary
from regprune.testing.token_issuer import TokenIssuer

REGISTRY_BIN = find_registry_binary()  # fails loudly: CI installs the registry, nothing skips


def needs_registry(test):  # kept as a marker of which tests use a real registry
    return test

# `htpasswd -nbB -C 4 alice s3cret-pass`: bcrypt at the lowest cost keeps the registry fast,
# and a fixed line needs neither apache2-utils nor the bcrypt package.
HTPASSWD = "alice:$2y$04$yXQwbP0Cs5eaWhl3p49FueOFevofqZIIP1QxoLHetyXo2BFWxyO/S\n"


# --- a minimal local registry --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRegistry:
    """``docker-registry serve`` on a free loopback port with its storage under ``root``."""

    def __init__(self, root: Path, **options: Any) -> None:
        self.root = root
        self.port = free_port()
        self.tls = options.get("tls")
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(root / "data")},
                "delete": {"enabled": options.get("delete", True)},
            },
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }
        if self.tls:
            config["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        if options.get("maxentries"):
            config["catalog"] = {"maxentries": options["maxentries"]}
        if options.get("auth"):
            config["auth"] = options["auth"]
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "config.yml"
        self.config_path.write_text(json.dumps(config))  # JSON is YAML
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRegistry:
        assert REGISTRY_BIN is not None
        self.log = (self.root / "registry.log").open("wb")
        self.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config_path)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/v2/", verify=False, timeout=1)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"registry did not start: {(self.root / 'registry.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self.log.close()


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[..., LocalRegistry]]:
    started: list[LocalRegistry] = []

    def make(**options: Any) -> LocalRegistry:
        registry = LocalRegistry(tmp_path / f"registry{len(started)}", **options).start()
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Anonymous, deletes enabled; shared by the read tests of this module."""
    registry = LocalRegistry(tmp_path_factory.mktemp("open")).start()
    yield registry
    registry.stop()


# --- pushing content with plain httpx --------------------------------------------------------


class Pusher:
    """Pushes blobs and manifests with plain httpx (so the client under test is not involved)."""

    def __init__(self, url: str, headers: Callable[[str], dict[str, str]] | None = None, **kw: Any):
        self.url = url
        self.headers = headers or (lambda repo: {})
        self.http = httpx.Client(**kw)

    def blob(self, repo: str, data: bytes, media_type: str) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = self.http.post(f"{self.url}/v2/{repo}/blobs/uploads/", headers=self.headers(repo))
        assert started.status_code == 202, started.text
        location = httpx.URL(self.url).join(started.headers["location"])
        done = self.http.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={**self.headers(repo), "Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.http.put(
            f"{self.url}/v2/{repo}/manifests/{reference}",
            content=body,
            headers={**self.headers(repo), "Content-Type": media_type},
        )
        assert response.status_code == 201, response.text
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def image(self, repo: str, tag: str, *, oci: bool = False, seed: str = "") -> tuple[str, bytes]:
        """Push a one-layer image; returns (digest, manifest bytes)."""
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"seed": seed or tag}},
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode()
        layer_type = (
            "application/vnd.oci.image.layer.v1.tar+gzip"
            if oci
            else "application/vnd.docker.image.rootfs.diff.tar.gzip"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
            "config": self.blob(repo, config, OCI_CONFIG if oci else DOCKER_CONFIG),
            "layers": [self.blob(repo, f"layer {repo} {tag} {seed}".encode(), layer_type)],
        }
        # Indented on purpose: the digest is of these exact bytes, not of a re-serialisation.
        body = json.dumps(manifest, indent=3).encode()
        return self.manifest(repo, tag, body, manifest["mediaType"]), body

    def index(
        self, repo: str, tag: str, children: list[tuple[str, bytes]], *, oci: bool
    ) -> tuple[str, bytes]:
        child_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        media_type = OCI_INDEX if oci else DOCKER_MANIFEST_LIST
        index = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child_type,
                    "digest": digest,
                    "size": len(body),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
                for digest, body in children
            ],
        }
        body = json.dumps(index, indent=2).encode()
        return self.manifest(repo, tag, body, media_type), body

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def pushed(open_registry: LocalRegistry) -> dict[str, tuple[str, bytes]]:
    """One image of each manifest media type in repository ``media/types``."""
    pusher = Pusher(open_registry.url)
    docker = pusher.image("media/types", "docker")
    oci = pusher.image("media/types", "oci", oci=True)
    docker_list = pusher.index("media/types", "docker-list", [docker], oci=False)
    oci_index = pusher.index("media/types", "oci-index", [oci], oci=True)
    pusher.close()
    return {
        DOCKER_MANIFEST: docker,
        OCI_MANIFEST: oci,
        DOCKER_MANIFEST_LIST: docker_list,
        OCI_INDEX: oci_index,
    }


# --- real registry: reads ----------------------------------------------------------------------

TAG_OF = {
    DOCKER_MANIFEST: "docker",
    OCI_MANIFEST: "oci",
    DOCKER_MANIFEST_LIST: "docker-list",
    OCI_INDEX: "oci-index",
}


@needs_registry
@pytest.mark.parametrize("media_type", list(TAG_OF))
def test_every_manifest_media_type_comes_back_with_its_digest(
    open_registry: LocalRegistry, pushed: dict[str, tuple[str, bytes]], media_type: str
) -> None:
    digest, body = pushed[media_type]
    with RegistryClient(open_registry.url) as client:
        by_tag = client.get_manifest("media/types", TAG_OF[media_type])
        assert isinstance(by_tag, Manifest)
        assert (by_tag.digest, by_tag.media_type, by_tag.content) == (digest, media_type, body)
        assert by_tag.data["mediaType"] == media_type
        assert client.get_manifest("media/types", digest).content == body
        assert client.head_manifest("media/types", TAG_OF[media_type]) == digest
        assert client.head_manifest("media/types", digest) == digest


@needs_registry
def test_tags_blobs_and_missing_things(
    open_registry: LocalRegistry, pushed: dict[str, tuple[str, bytes]]
) -> None:
    with RegistryClient(open_registry.url) as client:
        client.ping()
        assert sorted(client.tags("media/types")) == sorted(TAG_OF.values())
        assert client.tags("no/such/repo") == []
        with pytest.raises(ManifestNotFound, match="media/types:nope not found"):
            client.get_manifest("media/types", "nope")
        assert client.head_manifest("media/types", "nope") is None
        assert client.head_manifest("media/types", ZERO_DIGEST) is None
        config = json.loads(pushed[DOCKER_MANIFEST][1])["config"]
        blob = client.get_blob("media/types", config["digest"])
        assert hashlib.sha256(blob).hexdigest() == config["digest"].removeprefix("sha256:")
        assert client.requests_by_method["HEAD"] == 2
        assert client.request_count == sum(client.requests_by_method.values())


@needs_registry
def test_map_shares_one_client_across_threads(
    open_registry: LocalRegistry, pushed: dict[str, tuple[str, bytes]]
) -> None:
    tags = list(TAG_OF.values()) * 25
    with RegistryClient(open_registry.url, concurrency=8) as client:
        digests = client.map(lambda tag: client.head_manifest("media/types", tag), tags)
        assert digests == [pushed[media_type][0] for media_type in TAG_OF] * 25
        assert client.request_count == len(tags)


@needs_registry
def test_catalog_walks_pages_after_pagination_number_invalid(
    make_registry: Callable[..., LocalRegistry],
) -> None:
    # maxentries 2 makes 2.8.2 refuse n=1000 and serve 2 names a page: both paths, for real.
    registry = make_registry(maxentries=2)
    pusher = Pusher(registry.url)
    names = ["alpha", "beta/one", "beta/two", "gamma", "zeta/x/y"]
    for name in names:
        pusher.image(name, "latest")
    pusher.close()
    with RegistryClient(registry.url) as client:
        assert client.catalog() == names
        # one refused n=1000 request, then 3 pages of 2, 2 and 1
        assert client.requests_by_method == {"GET": 4}


@needs_registry
def test_delete_then_absent_and_preflight(make_registry: Callable[..., LocalRegistry]) -> None:
    registry = make_registry()
    pusher = Pusher(registry.url)
    digest, _ = pusher.image("apps/web", "v1")
    pusher.close()
    with RegistryClient(registry.url) as client:
        client.check_delete_allowed("apps/web")
        assert client.delete_manifest("apps/web", digest) == "deleted"
        assert client.head_manifest("apps/web", "v1") is None  # the tag went with it
        assert client.delete_manifest("apps/web", digest) == "absent"
        with pytest.raises(UsageError, match="deletes by digest, not by tag"):
            client.delete_manifest("apps/web", "v1")


@needs_registry
def test_deletes_disabled(make_registry: Callable[..., LocalRegistry]) -> None:
    registry = make_registry(delete=False)
    pusher = Pusher(registry.url)
    digest, _ = pusher.image("apps/web", "v1")
    pusher.close()
    expected = (
        f"registry {registry.url} has deletes disabled: set storage.delete.enabled: true or "
        "REGISTRY_STORAGE_DELETE_ENABLED=true and restart it"
    )
    with RegistryClient(registry.url) as client:
        with pytest.raises(DeletesDisabled) as raised:
            client.check_delete_allowed("apps/web")
        assert str(raised.value) == expected
        with pytest.raises(DeletesDisabled, match=r"storage\.delete\.enabled"):
            client.delete_manifest("apps/web", digest)
        assert client.head_manifest("apps/web", "v1") == digest


# --- real registry: connection and TLS failures -------------------------------------------------


def test_connection_refused_is_unreachable_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        RegistryClient(url, retries=2, backoff=0) as client,
        pytest.raises(RegistryUnreachable) as raised,
    ):
        client.ping()
    assert str(raised.value) == (
        f"cannot reach registry {url}: connection refused; check the url and that the registry "
        "is running"
    )
    assert client.request_count == 3


@needs_registry
def test_https_to_a_plain_http_registry_is_a_tls_error(open_registry: LocalRegistry) -> None:
    url = open_registry.url.replace("http://", "https://")
    with RegistryClient(url, backoff=0) as client:
        with pytest.raises(RegistryUnreachable, match=r"TLS handshake failed .*http:// url"):
            client.ping()
        assert client.request_count == 1  # TLS problems are not retried


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = build("regprune test CA", "regprune test CA", ca_key, ca_key, True)
    cert = build("127.0.0.1", "regprune test CA", key, ca_key, False)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@needs_registry
def test_tls_verification_needs_ca_file(
    make_registry: Callable[..., LocalRegistry], tmp_path: Path
) -> None:
    ca, cert, key = _tls_files(tmp_path)
    registry = make_registry(tls=(cert, key))
    with RegistryClient(registry.url) as client, pytest.raises(RegistryUnreachable) as raised:
        client.ping()
    message = str(raised.value)
    assert "TLS certificate verification failed" in message and "ca_file" in message
    assert client.request_count == 1
    with RegistryClient(registry.url, ca_file=str(ca)) as client:
        client.ping()
        assert client.tags("none") == []
    with pytest.raises(UsageError, match=r"ca_file .* does not exist"):
        RegistryClient(registry.url, ca_file=str(tmp_path / "missing.pem"))


# --- real registry: basic auth (htpasswd) ------------------------------------------------------


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    root = tmp_path_factory.mktemp("htpasswd")
    (root / "htpasswd").write_text(HTPASSWD)
    auth = {"htpasswd": {"realm": "regprune-test", "path": str(root / "htpasswd")}}
    registry = LocalRegistry(root, auth=auth).start()
    yield registry
    registry.stop()


@needs_registry
def test_basic_auth_sends_credentials_after_the_first_challenge(
    htpasswd_registry: LocalRegistry,
) -> None:
    pusher = Pusher(htpasswd_registry.url, auth=("alice", "s3cret-pass"))
    digest, _ = pusher.image("team/app", "v1")
    pusher.close()
    credentials = Credentials("alice", "s3cret-pass")
    with RegistryClient(htpasswd_registry.url, credentials=credentials) as client:
        client.ping()
        assert client.request_count == 2  # anonymous, challenged, then with credentials
        assert client.tags("team/app") == ["v1"]
        assert client.head_manifest("team/app", "v1") == digest
        assert client.catalog() == ["team/app"]
        assert client.request_count == 5  # no more challenges: Basic is sent up front


@needs_registry
def test_basic_auth_wrong_password_and_no_credentials(htpasswd_registry: LocalRegistry) -> None:
    wrong = Credentials("alice", "wrong")
    with (
        RegistryClient(htpasswd_registry.url, credentials=wrong) as client,
        pytest.raises(AuthenticationFailed) as raised,
    ):
        client.tags("team/app")
    assert str(raised.value) == (
        f"registry {htpasswd_registry.url} rejected the credentials for user 'alice'"
    )
    with (
        RegistryClient(htpasswd_registry.url) as client,
        pytest.raises(AuthenticationFailed, match=r"set username and password .* docker login"),
    ):
        client.ping()


# --- real registry: token auth ------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalRegistry, TokenIssuer, str]]:
    issuer = TokenIssuer(
        {
            "admin": ("admin-pw", ["*"]),
            "reader": ("reader-pw", ["pull"]),
            "deleter": ("deleter-pw", ["pull", "delete"]),
        }
    ).start()
    registry = LocalRegistry(
        tmp_path_factory.mktemp("token"), auth={"token": issuer.registry_auth_config()}
    ).start()

    def push_token(repo: str) -> dict[str, str]:
        access = [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
        return {"Authorization": "Bearer " + issuer.make_token("pusher", access)}

    pusher = Pusher(registry.url, headers=push_token)
    digest, _ = pusher.image("app/one", "v1")
    pusher.image("app/two", "v1")
    pusher.close()
    yield registry, issuer, digest
    registry.stop()
    issuer.stop()


@needs_registry
def test_token_auth_reads_and_reuses_one_token_per_scope(
    token_setup: tuple[LocalRegistry, TokenIssuer, str],
) -> None:
    registry, issuer, digest = token_setup
    before = issuer.token_requests
    with RegistryClient(registry.url, credentials=Credentials("admin", "admin-pw")) as client:
        client.ping()
        results = client.map(lambda _: client.head_manifest("app/one", "v1"), range(40))
        assert results == [digest] * 40
        assert client.tags("app/one") == ["v1"]
        assert client.catalog() == ["app/one", "app/two"]
        # one token for /v2/, one for repository:app/one:pull, one for the catalog
        assert issuer.token_requests - before == 3
        # 2 for ping, 41 reads, at most 8 threads challenged once, 1 catalog + 1 challenge, 3 tokens
        assert client.request_count <= 2 + 41 + 8 + 2 + 3
    scopes = [scopes for user, scopes, _ in issuer.log[-3:]]
    assert scopes == [[], ["repository:app/one:pull"], ["registry:catalog:*"]]


@needs_registry
def test_token_auth_delete_needs_the_delete_action(
    token_setup: tuple[LocalRegistry, TokenIssuer, str], tmp_path: Path
) -> None:
    registry, issuer, _ = token_setup
    with RegistryClient(registry.url, credentials=Credentials("reader", "reader-pw")) as client:
        assert client.tags("app/two") == ["v1"]
        digest = client.head_manifest("app/two", "v1")
        assert digest is not None
        expected = (
            f"user 'reader' lacks the scope repository:app/two:delete on registry {registry.url}; "
            "grant it in the registry's access rules"
        )
        with pytest.raises(MissingScope) as raised:
            client.check_delete_allowed("app/two")
        assert str(raised.value) == expected
        with pytest.raises(MissingScope, match="repository:app/two:delete"):
            client.delete_manifest("app/two", digest)
        with pytest.raises(MissingScope, match="registry:catalog:"):
            client.catalog()
    # Distribution 2.8.2 asks for exactly `delete` on DELETE: a pull+delete user may delete.
    with RegistryClient(registry.url, credentials=Credentials("deleter", "deleter-pw")) as client:
        client.check_delete_allowed("app/two")
        assert client.delete_manifest("app/two", digest) == "deleted"
        assert client.delete_manifest("app/two", digest) == "absent"
    requested = [scopes for user, scopes, _ in issuer.log if user == "deleter"]
    assert ["repository:app/two:delete"] in requested


@needs_registry
def test_token_auth_bad_password_and_anonymous(
    token_setup: tuple[LocalRegistry, TokenIssuer, str],
) -> None:
    registry, _, _ = token_setup
    with (
        RegistryClient(registry.url, credentials=Credentials("admin", "nope")) as client,
        pytest.raises(AuthenticationFailed) as raised,
    ):
        client.ping()
    assert str(raised.value).startswith(
        f"registry {registry.url} rejected the credentials for user 'admin'"
    )
    with RegistryClient(registry.url) as client:
        client.ping()  # /v2/ needs no scope: an anonymous token is enough
        with pytest.raises(
            AuthenticationFailed, match="requires authentication for repository:app/one:pull"
        ):
            client.tags("app/one")


# --- MockTransport: manifests and digests -------------------------------------------------------

URL = "https://registry.test"
BODY = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> RegistryClient:
    kw.setdefault("backoff", 0)
    return RegistryClient(URL, transport=httpx.MockTransport(handler), **kw)


def manifest_response(body: bytes = BODY, **headers: str) -> httpx.Response:
    return httpx.Response(200, content=body, headers=headers)


def test_get_manifest_sends_accept_and_user_agent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return manifest_response(**{"Docker-Content-Digest": DIGEST, "Content-Type": OCI_MANIFEST})

    with mock_client(handler) as client:
        manifest = client.get_manifest("a/b", "v1")
    assert manifest == Manifest(DIGEST, OCI_MANIFEST, BODY, {})  # data is not compared
    assert manifest.data["mediaType"] == OCI_MANIFEST
    assert seen[0].url.path == "/v2/a/b/manifests/v1"
    assert seen[0].headers["accept"] == MANIFEST_ACCEPT
    assert seen[0].headers["user-agent"].startswith("regprune/")


def test_digest_header_that_does_not_match_the_body_is_refused() -> None:
    other = "sha256:" + "f" * 64
    with (
        mock_client(lambda r: manifest_response(**{"Docker-Content-Digest": other})) as client,
        pytest.raises(RegistryError, match="does not match its digest") as raised,
    ):
        client.get_manifest("a", "v1")
    assert raised.value.code == "DIGEST_INVALID"


def test_manifest_for_a_digest_must_have_that_digest() -> None:
    asked = "sha256:" + "1" * 64
    with (
        mock_client(lambda r: manifest_response()) as client,
        pytest.raises(RegistryError, match=f"answered a@{asked} with a manifest of digest"),
    ):
        client.get_manifest("a", asked)


def test_missing_digest_header_and_generic_content_type_fall_back_to_the_body() -> None:
    with mock_client(lambda r: manifest_response(**{"Content-Type": "application/json"})) as client:
        manifest = client.get_manifest("a", "v1")
    assert (manifest.digest, manifest.media_type) == (DIGEST, OCI_MANIFEST)


def test_head_without_digest_header_falls_back_to_get() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(200)
        return manifest_response()

    with mock_client(handler) as client:
        assert client.head_manifest("a", "v1") == DIGEST
        assert client.requests_by_method == {"HEAD": 1, "GET": 1}


def test_blob_follows_redirect_and_is_verified() -> None:
    data = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "registry.test":
            return httpx.Response(307, headers={"Location": "https://storage.test/blob?sig=1"})
        return httpx.Response(200, content=data)

    with mock_client(handler) as client:
        assert client.get_blob("a", digest) == data
        assert client.request_count == 2
        with pytest.raises(RegistryError, match="does not match its digest"):
            client.get_blob("a", "sha256:" + "2" * 64)


# --- MockTransport: pagination ------------------------------------------------------------------


def test_tags_follow_link_headers() -> None:
    pages = {
        "/v2/a/b/tags/list?n=1000": (["1", "2"], '</v2/a/b/tags/list?last=2&n=1000>; rel="next"'),
        "/v2/a/b/tags/list?last=2&n=1000": (
            ["3"],
            f'<{URL}/v2/a/b/tags/list?last=3&n=1000>; rel="next"',
        ),
        "/v2/a/b/tags/list?last=3&n=1000": (None, None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        tags, link = pages[request.url.raw_path.decode()]
        return httpx.Response(
            200, json={"name": "a/b", "tags": tags}, headers={"Link": link} if link else {}
        )

    with mock_client(handler) as client:
        assert client.tags("a/b") == ["1", "2", "3"]
        assert client.request_count == 3


def test_tags_of_unknown_repository_or_null_are_empty() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "missing" in request.url.path:
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
        return httpx.Response(200, json={"name": "empty", "tags": None})

    with mock_client(handler) as client:
        assert client.tags("missing") == []
        assert client.tags("empty") == []


def test_catalog_falls_back_when_n_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params
        if query.get("n") == "1000":
            error = {"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number"}
            return httpx.Response(400, json={"errors": [error]})
        if "last" not in query:
            link = '</v2/_catalog?last=b&n=100>; rel="next"'
            return httpx.Response(200, json={"repositories": ["a", "b"]}, headers={"Link": link})
        return httpx.Response(200, json={"repositories": ["c"]})

    with mock_client(handler) as client:
        assert client.catalog() == ["a", "b", "c"]
        assert client.request_count == 3


def test_a_repeating_link_does_not_loop_forever() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        link = '</v2/_catalog?n=1000>; rel="next"'
        return httpx.Response(200, json={"repositories": ["a"]}, headers={"Link": link})

    with mock_client(handler) as client:
        assert client.catalog() == ["a"]


# --- MockTransport: retries ---------------------------------------------------------------------


def scripted(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def test_retry_after_seconds_and_http_date_are_honoured_and_capped() -> None:
    later = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True)
    handler = scripted(
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(429, headers={"Retry-After": later}),
        httpx.Response(503, headers={"Retry-After": "3600"}),
        httpx.Response(200, json={"tags": ["x"]}),
    )
    sleeps: list[float] = []
    with mock_client(handler, retries=3) as client:
        client._sleep = sleeps.append
        assert client.tags("a") == ["x"]
    assert sleeps[0] == 2.0
    assert 25 < sleeps[1] <= 30
    assert sleeps[2] == 60.0


def test_5xx_backoff_doubles_and_gives_up_after_retries() -> None:
    handler = scripted(*[httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE"}]})] * 4)
    sleeps: list[float] = []
    with mock_client(handler, retries=3, backoff=0.5) as client:
        client._sleep = sleeps.append
        with pytest.raises(
            RegistryError, match=r"answered 503 to GET /v2/a/tags/list.* after 4 attempts"
        ) as raised:
            client.tags("a")
        assert client.request_count == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert raised.value.status == 503


def test_501_and_4xx_are_not_retried() -> None:
    with mock_client(scripted(httpx.Response(501)), retries=3) as client:
        with pytest.raises(RegistryError, match="answered 501"):
            client.tags("a")
        assert client.request_count == 1


def test_connection_errors_are_retried() -> None:
    handler = scripted(httpx.ConnectError("boom"), httpx.ReadTimeout("slow"), manifest_response())
    with mock_client(handler, retries=2) as client:
        assert client.get_manifest("a", "v1").digest == DIGEST
        assert client.requests_by_method == {"GET": 3}


def test_unknown_host_is_unreachable_without_retrying() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("dns") from socket.gaierror(-2, "Name or service not known")

    with mock_client(handler, retries=3) as client, pytest.raises(RegistryUnreachable) as raised:
        client.ping()
    assert str(raised.value) == (
        f"cannot reach registry {URL}: cannot resolve the host name (Name or service not known); "
        "check the url and DNS"
    )
    assert client.request_count == 1


def test_catalog_not_offered() -> None:
    handler = scripted(httpx.Response(404, json={"errors": [{"code": "NOT_FOUND"}]}))
    with mock_client(handler) as client, pytest.raises(RegistryError, match="catalog API"):
        client.catalog()


def test_timeouts_are_unreachable_once_retries_run_out() -> None:
    with (
        mock_client(scripted(httpx.ReadTimeout("slow")), retries=0, timeout=5) as client,
        pytest.raises(RegistryUnreachable, match=r"timed out after 5s; .*raise the timeout"),
    ):
        client.ping()


# --- MockTransport: deletes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (202, "deleted"),
        (404, "absent"),
        (405, DeletesDisabled),
        (403, AuthenticationFailed),
        (500, RegistryError),
    ],
)
def test_delete_outcomes(status: int, outcome: str | type[Exception]) -> None:
    handler = scripted(httpx.Response(status, json={"errors": [{"code": "X", "message": "m"}]}))
    with mock_client(handler, retries=0) as client:
        if isinstance(outcome, str):
            assert client.delete_manifest("a", DIGEST) == outcome
        else:
            # 403 without credentials asks for credentials; with them it is MissingScope.
            with pytest.raises(outcome):
                client.delete_manifest("a", DIGEST)


def test_delete_403_with_credentials_is_missing_scope() -> None:
    handler = scripted(httpx.Response(403))
    with (
        mock_client(handler, credentials=Credentials("bob", "pw")) as client,
        pytest.raises(MissingScope, match="user 'bob' lacks the scope repository:a:delete"),
    ):
        client.delete_manifest("a", DIGEST)


def test_check_delete_allowed_uses_the_zero_digest() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(400 if len(seen) == 1 else 404)

    with mock_client(handler) as client:
        client.check_delete_allowed("a/b")
        client.check_delete_allowed("a/b")
    assert seen == [f"DELETE /v2/a/b/manifests/{ZERO_DIGEST}"] * 2


# --- map ----------------------------------------------------------------------------------------


def test_map_keeps_order_and_uses_threads() -> None:
    threads: set[int] = set()
    barrier = threading.Barrier(4, timeout=5)

    def work(item: int) -> int:
        threads.add(threading.get_ident())
        if item < 4:
            barrier.wait()  # proves 4 run at once
        return item * 2

    with mock_client(scripted(), concurrency=4) as client:
        assert client.map(work, range(20)) == [item * 2 for item in range(20)]
    assert len(threads) == 4


def test_map_reraises_the_first_failure() -> None:
    def work(item: int) -> int:
        if item in (3, 7):
            raise ValueError(f"bad {item}")
        return item

    with mock_client(scripted(), concurrency=2) as client:
        with pytest.raises(ValueError, match="bad 3"):
            client.map(work, range(10))
        assert client.map(work, []) == []
        assert client.map(work, [1]) == [1]


def test_from_settings_uses_the_registry_section(tmp_path: Path) -> None:
    from regprune.config import RegistrySettings

    settings = RegistrySettings(
        url="http://127.0.0.1:5000/",
        username="u",
        password="p",
        concurrency=3,
        retries=1,
        timeout=7,
        docker_config=str(tmp_path / "none.json"),
    )
    with RegistryClient.from_settings(settings) as client:
        assert (client.url, client.concurrency, client.retries, client.timeout) == (
            "http://127.0.0.1:5000",
            3,
            1,
            7,
        )
        assert client.credentials == Credentials("u", "p")
    with pytest.raises(UsageError, match="invalid registry url"):
        RegistryClient("registry.example.org")
