"""Registry URLs: validation and one identity per registry.

Two spellings of one registry (``http://LOCALHOST:5000/`` and ``http://127.0.0.1:5000``)
must share keep rules, locks and plans, so everything that compares registries
compares :func:`registry_identity`, never the URL text.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["registry_identity"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_identity(url: str) -> str:
    """A canonical ``scheme://host:port`` for a registry URL.

    Scheme and host are lower-cased, the default port is made explicit, a trailing
    slash and any path are dropped, and every loopback name (``localhost``,
    ``127.0.0.0/8``, ``::1``) becomes ``loopback``.  Raises ValueError for a URL that
    is not ``http(s)://host[:port]``.
    """
    hint = f"invalid registry url {url!r}: use http://host:port or https://host"
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError when out of range
    except ValueError as exc:
        raise ValueError(f"{hint} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(hint)
    port = port or _DEFAULT_PORTS[scheme]
    host = parts.hostname.lower().rstrip(".")
    if _is_loopback(host):
        host = "loopback"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
