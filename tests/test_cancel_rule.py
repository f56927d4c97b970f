"""One cancel rule for every front end: a plan that is pending, approved or failed can
be cancelled, from the command line (``regprune cancel``) and from Slack
(``/regprune cancel``) alike; a plan being applied or finished cannot.  Both go
through ``Engine.cancel``; the audit log says who, how and from which status."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from regprune.cli import run as run_cli

from . import test_slack_bot
from .test_slack_bot import REQUESTER, UNTOUCHED, Bot

# The bot fixtures of test_slack_bot.py, shared rather than copied.
registry = test_slack_bot.registry
fake = test_slack_bot.fake
make_bot = test_slack_bot.make_bot

CANCELLABLE = {"pending", "approved", "failed"}  # the rule as docs/cli.md and docs/slack.md say it
RULE = "only a pending, approved or failed plan can be cancelled"


def cancel_from(front_end: str, bot: Bot, plan_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Cancel through one front end; what it answered (the Slack reply, the CLI's output)."""
    if front_end == "slack":
        bot.command(f"cancel {plan_id}", user=REQUESTER)
        return str(bot.fake.responses()[-1]["text"])
    capsys.readouterr()
    code = run_cli(["--state", str(bot.state_path), "cancel", plan_id])
    out, err = capsys.readouterr()
    assert code == (0 if not err else 2), (code, out, err)
    return out + err


@pytest.mark.usefixtures("isolated_cli")
@pytest.mark.parametrize("front_end", ["cli", "slack"])
@pytest.mark.parametrize("status", ["pending", "approved", "failed", "applying", "done", "expired"])
def test_the_cancel_rule_is_the_same_in_every_front_end(
    make_bot: Callable[..., Bot],
    capsys: pytest.CaptureFixture[str],
    front_end: str,
    status: str,
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan(user=REQUESTER)
    if status != "pending":  # where a plan can be, whichever front end moved it there
        with bot.state() as state:
            assert state.plans.set_status(plan_id, status, expected=["pending"])

    answer = cancel_from(front_end, bot, plan_id, capsys)

    events = bot.audit("plan.cancelled", plan_id)
    if status in CANCELLABLE:
        assert bot.plan(plan_id).status == "cancelled", answer
        assert "is cancelled" in answer
        [event] = events
        assert event.details["method"] == front_end
        assert event.details["was"] == status
    else:
        assert bot.plan(plan_id).status == status, answer
        assert f"is {status}; {RULE}" in answer
        assert events == []
    assert bot.existing() == UNTOUCHED
