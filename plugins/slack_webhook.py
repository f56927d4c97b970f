"""The ``slack-webhook`` notifier: a summary of the run in a Slack channel, through an
incoming webhook (no bot, no token: the webhook's URL is the secret).

```toml
[notify.team]
use = "slack-webhook"
url = "${REGPRUNE_SLACK_WEBHOOK_URL}"
on = ["failure"]
```
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from regprune import hookimpl
from regprune.formatting import human_bytes, slack_escape
from regprune.notify import DELETED, FAILURE, SUCCESS, GcReport, RunReport, post_json
from regprune.options import Options, parse_options
from regprune.plugins.webhook import Retries, Timeout, check_http_url

ICON = {FAILURE: ":x:", SUCCESS: ":white_check_mark:", DELETED: ":wastebasket:"}
SECTION_LIMIT = 2900  # Slack refuses a section's text over 3,000 characters


class SlackWebhookOptions(Options):
    """Options of the slack-webhook notifier."""

    url: str
    timeout: Timeout = 5.0
    retries: Retries = 3

    _url = field_validator("url")(check_http_url)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gc_state(gc: GcReport) -> str:
    return "ok" if gc.ok else f"exit code {gc.exit_code}"


def message(report: RunReport) -> dict[str, Any]:
    """The incoming-webhook payload: ``text`` (notifications, fallbacks) and blocks.

    Every piece of the run's own text is escaped for mrkdwn (an error line may quote
    anything from the config), and the summary is cut to what a section holds.
    """
    text = f"{ICON[report.outcome]} {_cut(slack_escape(report.summary()), SECTION_LIMIT)}"
    fields = [
        f"*Outcome*\n{report.outcome} (exit {report.exit_code})",
        f"*Duration*\n{report.duration_seconds:.1f}s",
    ]
    for plan in report.plans:
        fields.append(
            f"*{slack_escape(plan.policy)}* on {slack_escape(plan.registry)}\n"
            f"plan `{plan.plan_id}`: {plan.deleted} deleted"
            f" ({human_bytes(plan.deleted_bytes)}), {plan.skipped} skipped, {plan.failed} failed"
        )
    for gc in report.gc:
        freed = "unknown" if gc.bytes_freed is None else human_bytes(gc.bytes_freed)
        fields.append(f"*gc* of {slack_escape(gc.registry)}\n{_gc_state(gc)}, freed {freed}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        # Slack allows at most 10 fields in a section.
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields[:10]]},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{slack_escape(report.host)} · regprune {report.version} · "
                    f"{report.finished_at:%Y-%m-%d %H:%M:%S %Z}",
                }
            ],
        },
    ]
    return {"text": text, "blocks": blocks}


class SlackWebhook:
    def __init__(self, options: SlackWebhookOptions) -> None:
        self.options = options

    def send(self, report: RunReport) -> None:
        post_json(
            self.options.url,
            message(report),
            timeout=self.options.timeout,
            retries=self.options.retries,
        )


def create(options: dict[str, Any]) -> SlackWebhook:
    return SlackWebhook(parse_options(SlackWebhookOptions, options))


@hookimpl
def register_notifiers(register: Any) -> None:
    register("slack-webhook", create)
