"""Turning transport failures and registry error bodies into one-line messages."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import httpx

from ..errors import RegistryUnreachable

__all__ = ["error_code", "error_summary", "is_retryable", "unreachable"]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from (httpx wraps httpcore wraps OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_tls(exc: BaseException) -> bool:
    return any(isinstance(item, ssl.SSLError) for item in _chain(exc))


def is_retryable(exc: httpx.TransportError) -> bool:
    """Whether trying again may help: not for TLS or name-resolution failures."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLError):
            return False
        if isinstance(item, socket.gaierror) and item.errno != socket.EAI_AGAIN:
            return False
    return not isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL)


def unreachable(
    exc: Exception, url: str, *, what: str = "registry", timeout: float | None = None
) -> RegistryUnreachable:
    """A RegistryUnreachable saying what went wrong and what to do about it."""
    reason, hint = _describe(exc, timeout)
    return RegistryUnreachable(f"cannot reach {what} {url}: {reason}; {hint}")


def _describe(exc: Exception, timeout: float | None) -> tuple[str, str]:
    for item in _chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            detail = item.verify_message or item.reason or "verification failed"
            return (
                f"TLS certificate verification failed ({detail})",
                "set the registry's ca_file option to the CA bundle that signed its certificate",
            )
        if isinstance(item, ssl.SSLError):
            detail = item.reason or str(item)
            return (
                f"TLS handshake failed ({detail})",
                "if the registry serves plain HTTP use an http:// url, otherwise check its "
                "certificate or set the ca_file option",
            )
        if isinstance(item, ConnectionRefusedError):
            return "connection refused", "check the url and that the registry is running"
        if isinstance(item, socket.gaierror):
            return f"cannot resolve the host name ({item.strerror})", "check the url and DNS"
    if isinstance(exc, httpx.TimeoutException):
        limit = f" after {timeout:g}s" if timeout else ""
        return f"timed out{limit}", "check the url and the network, or raise the timeout option"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"connection failed ({detail})", "check the url and that the registry is running"


def error_code(response: httpx.Response) -> str | None:
    """The first ``errors[].code`` of a registry error body, if any."""
    try:
        errors = response.json().get("errors")
        return str(errors[0].get("code")) if errors else None
    except (ValueError, AttributeError, IndexError, TypeError):
        return None


def error_summary(response: httpx.Response) -> str:
    """``CODE: message`` from a registry error body, or the start of the body."""
    try:
        first = response.json()["errors"][0]
        code, message = first.get("code"), first.get("message")
        return f"{code}: {message}" if message else str(code)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = response.text.strip().splitlines()
        return text[0][:200] if text else "empty body"
