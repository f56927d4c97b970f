"""The ``email`` notifier: the run report by SMTP (the standard library's smtplib).

```toml
[notify.mail]
use = "email"
host = "smtp.example.org"
security = "starttls"        # "ssl" (port 465), "starttls" (587) or "none" (25)
username = "regprune"
password = "${REGPRUNE_SMTP_PASSWORD}"
from = "regprune@example.org"
to = ["registry-admins@example.org"]
```

The subject is the report's one-line summary; the body lists each plan and gc run,
and carries the JSON report (docs/operations.md#report-schema) at the end.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from regprune import hookimpl
from regprune.formatting import human_bytes
from regprune.notify import DeliveryError, RunReport
from regprune.options import Options, parse_options

DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


def _address(value: str) -> str:
    if "@" not in value or any(c in value for c in "\r\n,") or value != value.strip():
        raise ValueError(f"{value!r} is not one e-mail address")
    return value


class EmailOptions(Options):
    """Options of the email notifier."""

    # ``from`` is a Python keyword: the field is ``sender``, the key in the file ``from``.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = Field(min_length=1)
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 10.0
    subject_prefix: str = "[regprune]"

    _sender = field_validator("sender")(_address)

    @field_validator("to")
    @classmethod
    def _recipients(cls, values: list[str]) -> list[str]:
        return [_address(value) for value in values]

    @field_validator("subject_prefix")
    @classmethod
    def _one_line_prefix(cls, value: str) -> str:
        # A line break in a header would end it: refused, never sent as a second header.
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("subject_prefix must be one line of printable text")
        return value

    @model_validator(mode="after")
    def _login_pair(self) -> EmailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


def body(report: RunReport) -> str:
    """The plain-text body: what happened, then the JSON report."""
    lines = [report.summary(), ""]
    lines.append(f"outcome: {report.outcome} (exit code {report.exit_code})")
    if report.error:
        lines.append(f"error: {report.error}")
    for plan in report.plans:
        lines.append(
            f"policy {plan.policy} on {plan.registry}, plan {plan.plan_id} ({plan.status}): "
            f"planned {plan.planned_images} ({human_bytes(plan.planned_bytes)}), "
            f"{plan.deleted} deleted ({human_bytes(plan.deleted_bytes)}), {plan.skipped} "
            f"skipped, {plan.failed} failed, {plan.untagged} untagged"
        )
    for gc in report.gc:
        freed = "unknown" if gc.bytes_freed is None else human_bytes(gc.bytes_freed)
        state = "ok" if gc.ok else f"exit code {gc.exit_code}"
        lines.append(f"gc of {gc.registry}: {state}, freed {freed}")
    lines += [
        f"duration: {report.duration_seconds:.1f}s on {report.host}, regprune {report.version}",
        "",
        json.dumps(report.to_dict(), indent=2),
    ]
    return "\n".join(lines) + "\n"


class Email:
    def __init__(self, options: EmailOptions) -> None:
        self.options = options

    def message(self, report: RunReport) -> EmailMessage:
        options = self.options
        mail = EmailMessage()
        mail["Subject"] = f"{options.subject_prefix} {report.summary()}".strip()
        mail["From"] = options.sender
        mail["To"] = ", ".join(options.to)
        mail["Date"] = formatdate(localtime=True)
        mail["Message-ID"] = make_msgid(domain=options.sender.rsplit("@", 1)[-1])
        mail.set_content(body(report))
        return mail

    def send(self, report: RunReport) -> None:
        try:
            self._send(report)
        except smtplib.SMTPServerDisconnected:
            # smtplib's own words ("Connection unexpectedly closed") read like a bug here.
            raise DeliveryError(
                f"the mail server {self.options.host} closed the connection before the "
                "report was sent"
            ) from None

    def _send(self, report: RunReport) -> None:
        options = self.options
        port, timeout = options.effective_port, options.timeout
        smtp: smtplib.SMTP
        if options.security == "ssl":
            smtp = smtplib.SMTP_SSL(options.host, port, timeout=timeout)
        else:
            smtp = smtplib.SMTP(options.host, port, timeout=timeout)
        with smtp:
            if options.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if options.username is not None and options.password is not None:
                smtp.login(options.username, options.password)
            smtp.send_message(self.message(report))


def create(options: dict[str, Any]) -> Email:
    return Email(parse_options(EmailOptions, options))


@hookimpl
def register_notifiers(register: Any) -> None:
    register("email", create)
