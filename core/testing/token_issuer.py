"""A tiny Docker token server for tests: the ``auth.token`` side of a Distribution registry.

It speaks the token protocol of the Distribution spec (``GET realm?service=..&scope=..``
with optional basic credentials) and signs RS256 JWTs whose header carries the
self-signed certificate in ``x5c``; the registry trusts that certificate through
``auth.token.rootcertbundle`` (see :meth:`TokenIssuer.registry_auth_config`).

Each user has a password and a list of allowed actions (``pull``, ``push``, ``delete``,
``catalog`` for ``registry:catalog:*``, or ``*`` for everything).  A token grants the
intersection of what was asked for and what the user may do, like real token servers,
so a pull-only user asking for ``repository:x:delete`` gets a token without it.

Usage::

    issuer = TokenIssuer({"alice": ("secret", ["pull", "delete"])})
    issuer.start()
    config["auth"] = {"token": issuer.registry_auth_config()}
    ...
    issuer.stop()
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["TokenIssuer"]

_CATALOG_SCOPE = ("registry", "catalog")


class TokenIssuer:
    """A loopback token server signing RS256 JWTs a Distribution registry accepts."""

    def __init__(
        self,
        users: dict[str, tuple[str, list[str]]],
        *,
        anonymous_actions: list[str] | None = None,
        service: str = "regprune-test-registry",
        issuer: str = "regprune-test-issuer",
        expires_in: int | None = 300,
        token_field: str = "token",
        directory: str | Path | None = None,
    ) -> None:
        """Users map a name to ``(password, allowed_actions)``.

        ``anonymous_actions`` is what a request without credentials may get (None: such
        requests get a token granting nothing, as Docker Hub does).  ``expires_in`` None
        leaves it out of the answer, ``token_field`` may be ``"access_token"``.  The root
        certificate is written to ``directory`` (a temporary one by default).
        """
        self.users = dict(users)
        self.anonymous_actions = anonymous_actions
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.token_field = token_field
        self._own_directory = directory is None
        self._directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="tokens-"))
        self._lock = threading.Lock()
        self.token_requests = 0
        # (user or None, requested scopes, granted access) per token request, for assertions.
        self.log: list[tuple[str | None, list[str], list[dict[str, Any]]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._key, self._cert_der = _make_key_and_cert()
        self.root_cert_path = self._directory / "token-root.pem"
        self.root_cert_path.write_bytes(_pem(self._cert_der))

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> TokenIssuer:
        """Serve on a free loopback port in a daemon thread."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the temporary directory (if it made one)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._own_directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the registry and the tests need ----------------------------------------

    @property
    def url(self) -> str:
        """The realm: the URL tokens are requested from."""
        if self._server is None:
            raise RuntimeError("TokenIssuer.start() has not been called")
        host, port = self._server.socket.getsockname()[:2]  # an IPv4 (host, port) pair
        return f"http://{host}:{port}/token"

    def registry_auth_config(self) -> dict[str, str]:
        """The registry's ``auth.token`` section (put it under ``auth: {token: ...}``)."""
        return {
            "realm": self.url,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.root_cert_path),
        }

    def make_token(self, subject: str, access: list[dict[str, Any]], *, lifetime: int = 300) -> str:
        """Sign a token by hand (e.g. to give a test an expired or odd one)."""
        import jwt  # test-only dependency, imported late so importing this module is cheap

        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        x5c = [base64.b64encode(self._cert_der).decode()]
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": x5c})

    # --- request handling ------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.token_requests += 1
        parsed = urlsplit(request.path)
        if parsed.path != "/token":
            _reply(request, 404, {"error": "not found"})
            return
        query = parse_qs(parsed.query)
        if query.get("service", [""])[0] != self.service:
            _reply(request, 400, {"error": "unknown service"})
            return
        user, allowed = self._authenticate(request.headers.get("Authorization"))
        if allowed is None:
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
            _reply(request, 401, body, {"WWW-Authenticate": 'Basic realm="token"'})
            return
        scopes = [scope for value in query.get("scope", []) for scope in value.split(" ") if scope]
        access = _grant(scopes, allowed)
        with self._lock:
            self.log.append((user, scopes, access))
        token = self.make_token(user or "", access, lifetime=self.expires_in or 60)
        answer: dict[str, Any] = {self.token_field: token}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        _reply(request, 200, answer)

    def _authenticate(self, header: str | None) -> tuple[str | None, list[str] | None]:
        """(user, allowed actions); allowed None means reject with 401."""
        if not header:
            return None, list(self.anonymous_actions or [])
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, None
        entry = self.users.get(user)
        if entry is None or entry[0] != password:
            return user, None
        return user, list(entry[1])


def _grant(scopes: Iterable[str], allowed: list[str]) -> list[dict[str, Any]]:
    """The access claim: each requested scope cut down to what the user may do."""
    everything = "*" in allowed
    access: list[dict[str, Any]] = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        wanted = [action for action in actions.split(",") if action]
        if (kind, name) == _CATALOG_SCOPE:
            granted = wanted if everything or "catalog" in allowed else []
        else:
            granted = [action for action in wanted if everything or action in allowed]
        if granted:
            access.append({"type": kind, "name": name, "actions": granted})
    return access


def _reply(
    request: BaseHTTPRequestHandler,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def _make_key_and_cert() -> tuple[Any, bytes]:
    """An RSA key and a self-signed certificate for it (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from .prerequisites import self_signed_certificate

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regprune test token issuer")])
    cert = self_signed_certificate(key, name, dt.timedelta(days=1), dt.timedelta(days=30))
    return key, cert.public_bytes(serialization.Encoding.DER)


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    ).encode()
