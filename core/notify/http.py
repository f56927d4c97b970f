"""POSTing a report: short timeouts, a few retries with backoff, an optional HMAC.

Notifiers run after the command's work is done; these limits keep a slow or dead
receiver from holding the run up for long (the dispatcher also stops waiting).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .. import __version__

SIGNATURE_HEADER = "X-Regprune-Signature"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF = 0.5  # seconds before the first retry; doubled for each one after


class DeliveryError(Exception):
    """A report could not be delivered; the message is one line for the warning."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Regprune-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = 5.0,
    retries: int = 3,
    secret: str | None = None,
    headers: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``payload`` as JSON; retry connection errors, timeouts, 429 and 5xx with
    exponential backoff.  Returns the final status; raises `DeliveryError` when every
    attempt failed or the receiver refused (another 4xx is not retried)."""
    body = encode(payload)
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"regprune/{__version__}",
        **(headers or {}),
    }
    if secret:
        sent[SIGNATURE_HEADER] = signature(secret, body)
    problem, made = "", 0
    for attempt in range(retries + 1):
        made = attempt + 1
        if attempt:
            sleep(BACKOFF * 2 ** (attempt - 1))
        try:
            answer = httpx.post(url, content=body, headers=sent, timeout=timeout)
        except httpx.TimeoutException:
            problem = f"no answer within {timeout:g}s"
            continue
        except httpx.HTTPError as exc:
            problem = " ".join(str(exc).split()) or type(exc).__name__
            continue
        if answer.status_code < 300:
            return answer.status_code
        problem = f"HTTP {answer.status_code}"
        if answer.status_code not in RETRY_STATUSES:
            break
    tries = "1 attempt" if made == 1 else f"{made} attempts"
    raise DeliveryError(f"{problem} ({tries})")
