"""Registry URLs: validation and one identity per registry.

Two spellings of one registry (``http://LOCALHOST:5000/`` and ``http://127.0.0.1:5000``)
must share keep rules, locks and plans, so everything that compares registries
compares :func:`registry_identity`, never the URL text.

A URL must never carry credentials (``http://ci:pw@host``): they would be printed
in error lines and stored in the state DB with every plan.  :func:`check_registry_url`
refuses them, without echoing them, for the config, the flags and the client.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["URL_HINT", "check_no_userinfo", "check_registry_url", "registry_identity"]

URL_HINT = "use http://host:port or https://host"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# A DNS name as a registry host: ASCII labels (IDNs in their xn-- form); '_' is
# tolerated as resolvers on private networks allow it.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9A-Fa-f]*)$")
_MAX_URL = 2048


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host is, with an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``)
    as the IPv4 address it maps; None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def _authority(url: str) -> str:
    """The ``user:pw@host:port`` part of a URL, found without parsing it (parsing may fail)."""
    rest = _SCHEME.sub("", url, count=1)
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _redacted(url: str) -> str:
    """The URL with anything before an ``@`` in its authority replaced by ``***``."""
    authority = _authority(url)
    if "@" not in authority:
        return url
    scheme = _SCHEME.match(url)
    head = scheme.group(0) if scheme else ""
    tail = url[len(head) + len(authority) :]
    return f"{head}***@{authority.rpartition('@')[2]}{tail}"


def check_no_userinfo(url: str, *, where: str = "the registry url") -> None:
    """Refuse a URL with a user name or password in it; the message never shows them.

    Credentials in a URL end up in error lines, logs and the state DB; regprune takes
    them only from ``username`` / ``password`` (or the Docker config).
    """
    if "@" in _authority(url):
        raise ValueError(
            f"{where} {_redacted(url)!r} contains a user name or password: remove it from "
            "the url and set username and password in [registry.NAME] (password = "
            '"${REGPRUNE_REGISTRY_PASSWORD}"), or log in with docker login'
        )


def check_registry_url(url: str) -> str:
    """Validate a registry URL and return it without trailing slashes.

    It must be ``http(s)://host[:port][/path]`` with a valid host (a DNS name, an IPv4
    address or a bracketed IPv6 address), a port from 1 to 65535, no user info, no
    query and no fragment.  Raises ValueError with one line that never shows a password.
    """
    if not isinstance(url, str):
        raise ValueError(f"invalid registry url: expected a string, got {type(url).__name__}")
    check_no_userinfo(url)
    shown = url if len(url) <= 100 else url[:97] + "..."
    hint = f"invalid registry url {shown!r}: {URL_HINT}"
    if len(url) > _MAX_URL or url != url.strip() or any(c.isspace() for c in url):
        raise ValueError(f"{hint} (no spaces, at most {_MAX_URL} characters)")
    if not url.isascii() or not url.isprintable():
        raise ValueError(f"{hint} (write a non-ASCII host name in its xn-- form)")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when not a number or out of range
    except ValueError as exc:
        raise ValueError(f"{hint} ({exc})") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not url.lower().startswith(
        f"{parts.scheme.lower()}://"
    ):
        raise ValueError(hint)
    if port == 0:
        raise ValueError(f"{hint} (port 0 is not a port; use 1 to 65535)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{hint} (no ?query or #fragment)")
    _check_host(parts.hostname or "", parts.netloc, hint)
    if re.search(r"/v2/*$", parts.path):
        raise ValueError(f"{hint} (without the /v2/ at its end: regprune adds it)")
    # One spelling of the scheme from here on: `HTTP://` is `http://`.
    return (parts.scheme.lower() + url[len(parts.scheme) :]).rstrip("/")


def _check_host(host: str, netloc: str, hint: str) -> None:
    if not host:
        raise ValueError(f"{hint} (no host)")
    if netloc.startswith("["):
        return  # urlsplit has checked that a bracketed host is an IPv6 address
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # A numeric last label makes the host an IPv4 address to URL parsers and
        # resolvers, in forms (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1) that would
        # be one registry under two identities: only the dotted quad is taken.
        raise ValueError(
            f"{hint} ({host!r} is not an IPv4 address written as four decimal numbers, "
            "e.g. 127.0.0.1)"
        )
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{hint} ({host!r} is not a host name)")


def registry_identity(url: str) -> str:
    """A canonical ``scheme://host:port[/path]`` for a registry URL.

    Scheme and host are lower-cased, the default port is made explicit, trailing
    slashes are dropped, and every loopback name (``localhost``, ``127.0.0.0/8``,
    ``::1``) becomes ``loopback``.  A path (a registry behind a prefix) is kept: two
    prefixes on one host are two registries.  Raises ValueError (one line) for a URL
    that :func:`check_registry_url` refuses.
    """
    parts = urlsplit(check_registry_url(url))
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS[scheme]
    host = (parts.hostname or "").lower().rstrip(".")
    address = _address(host)
    if _is_loopback(host):
        host = "loopback"
    elif isinstance(address, ipaddress.IPv4Address):
        host = str(address)  # an IPv4-mapped IPv6 address is its IPv4 address
    elif address is not None:
        host = f"[{address.compressed}]"
    path = re.sub(r"/+", "/", parts.path).rstrip("/")
    return f"{scheme}://{host}:{port}{path}"
