"""The ``webhook`` notifier: the run report as JSON, POSTed to a URL.

```toml
[notify.ops]
use = "webhook"
url = "https://hooks.example.org/regprune"
secret = "${REGPRUNE_WEBHOOK_SECRET}"
on = ["failure", "deleted"]
```

The body is the report of docs/operations.md#report-schema.  With ``secret`` set,
``X-Regprune-Signature: sha256=<hex>`` carries the HMAC-SHA256 of the exact body,
so the receiver can check who sent it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
from pydantic import Field, field_validator

from regprune import hookimpl
from regprune.notify import RunReport, post_json
from regprune.options import Options, parse_options


def check_http_url(value: str) -> str:
    """An http:// or https:// URL with a host (shared by the Slack webhook)."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {value!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    return value


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110)
Timeout = Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=10)]


class WebhookOptions(Options):
    """Options of the webhook notifier."""

    url: str
    secret: str | None = None
    timeout: Timeout = 5.0
    retries: Retries = 3
    headers: dict[str, str] = Field(default_factory=dict)

    _url = field_validator("url")(check_http_url)

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, value: dict[str, str]) -> dict[str, str]:
        # Checked here, not at delivery: a bad header would fail every report later.
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(
                    f"header name {name!r} is not an HTTP field name (letters, digits and "
                    "!#$%&'*+-.^_`|~, no spaces)"
                )
            if not text.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise ValueError(
                    f"header {name}: its value must be printable ASCII (no line breaks)"
                )
        return value


class Webhook:
    """POSTs each report as JSON, signed when a secret is set."""

    def __init__(self, options: WebhookOptions) -> None:
        self.options = options

    def send(self, report: RunReport) -> None:
        options = self.options
        post_json(
            options.url,
            report.to_dict(),
            timeout=options.timeout,
            retries=options.retries,
            secret=options.secret,
            headers={**options.headers, "X-Regprune-Event": f"{report.event}.{report.outcome}"},
        )


def create(options: dict[str, Any]) -> Webhook:
    return Webhook(parse_options(WebhookOptions, options))


@hookimpl
def register_notifiers(register: Any) -> None:
    register("webhook", create)
