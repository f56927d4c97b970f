"""``/regprune plan|status|cancel|history|help``: ack at once, then call the service.

Planning takes longer than Slack's 3 seconds, so ``plan`` acks with "planning…"
and the plan is computed and posted by a background worker; its outcome comes
back as an ephemeral ``respond``.  Unknown subcommands and bad arguments get the
help, ephemerally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from regprune.errors import RegpruneError

from ...blocks import help_text
from ...clicks import slack_actor
from ...context import service_from

COMMAND = "/regprune"
ARGUMENTS = {
    "plan": "policy",
    "status": "plan-id",
    "cancel": "plan-id",
    "history": None,
    "help": None,
}


@dataclass(frozen=True)
class Parsed:
    """A parsed ``/regprune`` text: the subcommand and its one argument, if any."""

    name: str
    argument: str | None = None


def parse(text: str) -> Parsed | str:
    """Parse the command text; a string is the problem to show above the help."""
    words = (text or "").split()
    if not words:
        return Parsed("help")
    name, rest = words[0].lower(), words[1:]
    if name not in ARGUMENTS:
        return f"Unknown subcommand `{name}`."
    wanted = ARGUMENTS[name]
    if wanted is None:
        return Parsed(name) if not rest else f"`{name}` takes no arguments."
    if len(rest) != 1:
        return f"Usage: `{COMMAND} {name} <{wanted}>`."
    return Parsed(name, rest[0])


def _teams(command: dict[str, Any]) -> list[str]:
    return [str(command["team_id"])] if command.get("team_id") else []


def regprune_command(
    ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    """Handle ``/regprune``; every reply is ephemeral."""
    service = service_from(context)
    parsed = parse(command.get("text", ""))
    if isinstance(parsed, str):
        ack(text=help_text(parsed), response_type="ephemeral")
        return
    refused = service.team_refusal(_teams(command))
    if refused:
        ack(text=refused, response_type="ephemeral")
        return
    user = str(command.get("user_id") or "")

    def reply(text: str) -> None:
        respond(text=text, response_type="ephemeral", replace_original=False)

    try:
        if parsed.name == "help":
            ack(text=help_text(), response_type="ephemeral")
        elif parsed.name == "plan":
            policy = parsed.argument or ""
            problem = service.plan_refusal(policy)
            if problem:
                ack(text=help_text(problem), response_type="ephemeral")
                return
            ack(
                text=f"Planning `{policy}`…; the plan will be posted in <#{service.slack.channel}>.",
                response_type="ephemeral",
            )
            service.submit(service.plan_and_post, policy, slack_actor(user), reply)
        elif parsed.name == "status":
            ack(text=service.status_text(parsed.argument or ""), response_type="ephemeral")
        elif parsed.name == "history":
            ack(text=service.history_text(), response_type="ephemeral")
        elif parsed.name == "cancel":
            ack()
            reply(service.cancel(parsed.argument or "", user, _teams(command)))
    except RegpruneError as exc:  # an unknown or ambiguous plan id, a tampered plan
        if parsed.name == "cancel":
            reply(exc.message)
        else:
            ack(text=help_text(exc.message), response_type="ephemeral")
