"""Turning transport failures and registry error bodies into one-line messages."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import httpx

from ..errors import RegistryUnreachable
from ._text import load_json, one_line

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


def _first_error(response: httpx.Response) -> dict[str, object] | None:
    """The first entry of a registry error body's ``errors`` list, if it is an object."""
    try:
        errors = load_json(response.content).get("errors")
    except (ValueError, AttributeError):
        return None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    return errors[0]


def error_code(response: httpx.Response) -> str | None:
    """The first ``errors[].code`` of a registry error body, if any."""
    first = _first_error(response)
    code = first.get("code") if first else None
    return one_line(code, 64) if isinstance(code, str) and code else None


def error_summary(response: httpx.Response) -> str:
    """``CODE: message`` from a registry error body, or the start of the body, in one line."""
    first = _first_error(response)
    if first is not None:
        code, message = first.get("code"), first.get("message")
        if isinstance(code, str | int) or isinstance(message, str):
            text = f"{code}: {message}" if message else str(code)
            return one_line(text, 200)
    try:
        text = response.content.decode("utf-8", "replace")
    except Exception:  # an undecodable content-encoding: say nothing about the body
        return "unreadable body"
    return one_line(text, 200) or "empty body"
