"""Where credentials may go: origins, and URLs safe to print.

The rule (see docs/operations.md, "Where credentials go"): the registry's
``Authorization`` (basic credentials or its bearer token) is sent only to the
registry's own origin (scheme, host and port); basic credentials go to a token
server only over https, or over plain http to the registry's own host when the
registry itself is plain http.
"""

from __future__ import annotations

import httpx

__all__ = ["Origin", "basic_allowed_to_realm", "origin", "parse_http_url", "redact"]

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_http_url(text: str) -> httpx.URL | None:
    """``text`` as an absolute http(s) URL with a host, or None."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        return None
    if url.port is not None and not 0 < url.port < 65536:
        return None
    return url


def origin(url: httpx.URL | str) -> Origin:
    """``(scheme, host, port)`` with the default port made explicit."""
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    scheme = parsed.scheme.lower()
    return scheme, parsed.host.lower(), parsed.port or _DEFAULT_PORTS.get(scheme, 0)


def basic_allowed_to_realm(realm: httpx.URL, registry: httpx.URL) -> bool:
    """Whether the registry's basic credentials may be sent to this token server.

    Docker sends them to whatever realm the registry names (Docker Hub's is another
    host), which TLS makes safe. Over plain http they would cross the network in
    clear: allowed only to the registry's own host, and only when the registry itself
    is plain http (the credentials already travel in clear to that host).
    """
    if realm.scheme == "https":
        return True
    return registry.scheme == "http" and realm.host.lower() == registry.host.lower()


def redact(url: httpx.URL | str) -> str:
    """The URL without user info, for messages (a registry may put secrets there)."""
    text = str(url)
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        # Unparseable: drop everything between the scheme and the last "@" of the authority.
        scheme, sep, rest = text.partition("://")
        authority, slash, path = rest.partition("/")
        return scheme + sep + authority.rpartition("@")[2] + slash + path if sep else text
    if not parsed.userinfo:
        return text
    return str(parsed.copy_with(username=None, password=None))
