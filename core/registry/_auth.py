"""Registry authentication: anonymous, Basic, and Bearer tokens from a token server.

The mode is learned from the registry's first ``401`` challenge.  Afterwards every
request carries the right header up front (Basic credentials, or a cached token for
the request's scope) so a scan costs one HTTP request per call, not three.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from ..errors import AuthenticationFailed, MissingScope, RegistryError
from ._answers import parse_token
from ._credentials import Credentials
from ._origin import basic_allowed_to_realm, parse_http_url, redact
from ._text import load_json, one_line

__all__ = ["Authenticator", "Challenge", "merge_scopes", "parse_challenges"]

DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default when expires_in is absent

# One token-server call: (url, query params, extra headers) -> response.
TokenSender = Callable[[str, list[tuple[str, str]], dict[str, str]], httpx.Response]

_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: a lower-cased scheme and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (one challenge per value)."""
    challenges = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        if not scheme:
            continue
        params = {
            match.group(1).lower(): (
                re.sub(r"\\(.)", r"\1", match.group(2))
                if match.group(2) is not None
                else match.group(3)
            )
            for match in _PARAM.finditer(rest)
        }
        challenges.append(Challenge(scheme.lower(), params))
    return challenges


def merge_scopes(*scopes: str | None) -> list[str]:
    """Merge space-separated scope strings, joining the actions asked for each resource.

    ``merge_scopes("repository:a:pull", "repository:a:delete")`` is
    ``["repository:a:pull,delete"]``.
    """
    resources: dict[tuple[str, str], list[str]] = {}
    for text in scopes:
        for scope in (text or "").split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = resources.setdefault((kind, name), [])
            wanted.extend(
                action for action in actions.split(",") if action and action not in wanted
            )
    return [f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in resources.items()]


class Authenticator:
    """Chooses and caches the Authorization header for each request scope (thread safe)."""

    def __init__(
        self, registry_url: str, credentials: Credentials | None, send_token: TokenSender
    ) -> None:
        self.registry_url = registry_url
        self.credentials = credentials
        self._send_token = send_token
        self._basic: str | None = None
        if credentials is not None:
            raw = f"{credentials.username}:{credentials.password}".encode()
            self._basic = "Basic " + base64.b64encode(raw).decode("ascii")
        self.mode: str | None = None  # None (anonymous so far), "basic" or "bearer"
        self.realm: str | None = None
        self.service: str | None = None
        # scope -> (header, monotonic expiry).  Read without the lock (a dict lookup is
        # atomic); the lock only serialises fetching so threads share one token.
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    # --- hot path ----------------------------------------------------------------------

    def header(self, scope: str) -> str | None:
        """The Authorization header to send up front for a request needing ``scope``."""
        mode = self.mode
        if mode is None:
            return None
        if mode == "basic":
            return self._basic
        cached = self._tokens.get(scope)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return self._token_for(scope, [scope] if scope else [], stale=None)

    # --- challenges --------------------------------------------------------------------

    def answer(self, response: httpx.Response, scope: str, sent: str | None) -> str:
        """After a 401: the header to retry with, or raise when retrying cannot help."""
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None and bearer.params.get("realm"):
            realm = bearer.params["realm"]
            if parse_http_url(realm) is None:
                raise RegistryError(
                    f"registry {self.registry_url} names an invalid token server "
                    f"{redact(realm)[:120]!r}; its auth.token.realm must be an http(s) url"
                )
            self.realm = realm
            self.service = bearer.params.get("service")
            self.mode = "bearer"
            # The registry may name more than the operation needs; ask for both.
            wanted = merge_scopes(bearer.params.get("scope"), scope)
            return self._token_for(scope, wanted, stale=sent)
        if any(c.scheme == "basic" for c in challenges):
            if self._basic is None:
                raise self._needs_credentials(scope)
            if sent == self._basic:
                raise self._rejected()
            self.mode = "basic"
            return self._basic
        raise AuthenticationFailed(
            f"registry {self.registry_url} answered 401 without a Basic or Bearer challenge; "
            "check that the url points at the registry and not at a proxy's login page"
        )

    def failure(self, response: httpx.Response, scope: str) -> Exception:
        """The error for a 401 that persists with fresh credentials or token."""
        if self.mode != "bearer":
            return self._rejected() if self._basic else self._needs_credentials(scope)
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), Challenge("bearer"))
        error = one_line(bearer.params.get("error", ""), 80)
        if error == "insufficient_scope" or not error:
            asked = canonical_scope(one_line(bearer.params.get("scope") or "", 200))
            return self.missing_scope(asked or scope)
        return AuthenticationFailed(
            f"registry {self.registry_url} rejects the tokens issued by {redact(self.realm or '')} ({error}); "
            "check the registry's auth.token issuer, service and rootcertbundle"
        )

    def missing_scope(self, scope: str) -> Exception:
        """The error for a valid identity that may not do ``scope``."""
        if self.credentials is None:
            return self._needs_credentials(scope)
        if not scope:
            return AuthenticationFailed(
                f"registry {self.registry_url} refuses access to user "
                f"'{self.credentials.username}'; check the user's permissions on the registry"
            )
        return MissingScope(
            f"user '{self.credentials.username}' lacks the scope {scope} on registry "
            f"{self.registry_url}; grant it in the registry's access rules"
        )

    def _needs_credentials(self, scope: str) -> AuthenticationFailed:
        what = f" for {scope}" if scope else ""
        return AuthenticationFailed(
            f"registry {self.registry_url} requires authentication{what}; set username and "
            "password for it in the regprune config, give quick mode --username with "
            "--password-stdin, or run docker login"
        )

    def _rejected(self) -> AuthenticationFailed:
        user = self.credentials.username if self.credentials else ""
        return AuthenticationFailed(
            f"registry {self.registry_url} rejected the credentials for user '{user}'"
        )

    # --- tokens ------------------------------------------------------------------------

    def _token_for(self, key: str, scopes: list[str], stale: str | None) -> str:
        """A token for ``key`` (cached per scope); ``stale`` is one the registry refused."""
        with self._lock:
            cached = self._tokens.get(key)
            # Another thread may have fetched while we waited: use it unless it is the
            # very token the registry just refused.
            if cached is not None and cached[0] != stale and cached[1] > time.monotonic():
                return cached[0]
            started = time.monotonic()
            token, lifetime = self._fetch(scopes)
            header = "Bearer " + token
            # Renew a little before expiry so a token never dies in flight.
            self._tokens[key] = (header, started + lifetime - min(30.0, lifetime * 0.1))
            return header

    def _fetch(self, scopes: list[str]) -> tuple[str, float]:
        realm = self.realm or ""
        params: list[tuple[str, str]] = []
        if self.service:
            params.append(("service", self.service))
        params.extend(("scope", scope) for scope in scopes)
        headers: dict[str, str] = {}
        if self._basic is not None:
            realm_url, registry_url = parse_http_url(realm), parse_http_url(self.registry_url)
            if (
                realm_url is None
                or registry_url is None
                or not basic_allowed_to_realm(realm_url, registry_url)
            ):
                raise RegistryError(
                    f"registry {self.registry_url} sends credentials to a plain-http token "
                    f"server {redact(realm)} on another host or behind an https registry; "
                    "refusing to send the password in clear (serve the token server over https)"
                )
            headers["Authorization"] = self._basic
        response = self._send_token(realm, params, headers)
        if response.status_code in (401, 403):
            if self.credentials is None:
                raise self._needs_credentials(" ".join(scopes))
            raise AuthenticationFailed(
                f"registry {self.registry_url} rejected the credentials for user "
                f"'{self.credentials.username}' (its token server {redact(realm)} answered "
                f"{response.status_code})"
            )
        if response.status_code != 200:
            raise RegistryError(
                f"token server {redact(realm)} answered {response.status_code}; check that it is "
                "healthy and that the registry's auth realm is right",
                status=response.status_code,
            )
        what = f"token server {redact(realm)} sent an answer that"
        try:
            data = load_json(response.content)
        except ValueError:
            raise RegistryError(f"{what} is not JSON") from None
        token, lifetime = parse_token(data, what, DEFAULT_TOKEN_LIFETIME)
        if not token:
            raise RegistryError(f"token server {redact(realm)} answered without a token")
        return token, lifetime


_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2}


def canonical_scope(scope: str) -> str:
    """A challenge's scope with each resource's actions in one order (``pull,push``):
    Distribution 2.x lists them in Go map order, which differs from run to run."""
    parts = []
    for resource in scope.split():
        head, sep, actions = resource.rpartition(":")
        if not sep or not head:
            parts.append(resource)
            continue
        ordered = sorted(actions.split(","), key=lambda a: (_ACTION_ORDER.get(a, 3), a))
        parts.append(f"{head}:{','.join(ordered)}")
    return " ".join(parts)
