"""Keep tokens and secrets out of logs and messages.

A ``Redactor`` replaces the configured secret values (bot token, app token,
signing secret) and anything shaped like a Slack token (``xoxb-…``, ``xapp-…``)
with ``[redacted]``.  ``RedactingFilter`` applies it to every log record that
passes through a handler it is attached to; ``install`` attaches it to the root
logger's handlers, which is where bolt's, slack_sdk's and regprune's records end up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
TOKEN_PATTERN = re.compile(r"\b(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]+")
_MIN_SECRET = 6  # never "redact" an empty or trivially short value everywhere


class Redactor:
    """Replaces known secret values and Slack-token-shaped strings in text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Also redact these values (None and very short values are ignored)."""
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET and secret not in self.secrets:
                self.secrets.append(secret)
        # Longest first, so a secret containing another is replaced whole.
        self.secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return TOKEN_PATTERN.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message (and traceback) redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what we have, redacted
            message = str(record.msg)
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


def install(redactor: Redactor, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a ``RedactingFilter`` to every handler of ``logger`` (default: the root logger).

    Filters on a handler see every record the handler emits, including records
    propagated from child loggers (``slack_bolt``, ``slack_sdk``, ``regprune``),
    which a filter on a logger would not.
    """
    target = logger or logging.getLogger()
    filt = RedactingFilter(redactor)
    for handler in target.handlers:
        handler.addFilter(filt)
    return filt
