"""Built-in approvers: ``cli`` (a prompt, or --yes) and ``auto``.

Approvers decided in a front end come with it (``slack``: ``regprune.bots.slack.plugin``).
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable

import typer

from regprune import hookimpl
from regprune.errors import UsageError
from regprune.formatting import human_bytes
from regprune.lifecycle import Decision
from regprune.models import Approval, ApprovalContext, Approver, Plan

# Room left on the question's last line for the " [y/N]: " typer adds.
_ANSWER_ROOM = len(" [y/N]: ")


def _describe(plan: Plan) -> str:
    summary = plan.summary
    about = "" if summary.bytes_exact else "about "
    return (
        f"Plan {plan.id} ({plan.policy} on {plan.registry}) deletes {summary.images} image(s), "
        f"{summary.manifests} manifest(s), {summary.tags} tag(s), {about}"
        f"{human_bytes(summary.bytes)}. Apply it?"
    )


def _wrapped(question: str) -> str:
    """The question folded at word boundaries to the terminal's width, so no line
    runs past the edge (where a terminal cuts or a redraw would overwrite it)."""
    width = max(20, shutil.get_terminal_size().columns - 1)
    lines = textwrap.wrap(question, width=width, break_on_hyphens=False)
    if lines and len(lines[-1]) + _ANSWER_ROOM > width:
        last = textwrap.wrap(lines.pop(), width=width - _ANSWER_ROOM, break_on_hyphens=False)
        lines.extend(last)
    return "\n".join(lines)


class CliApprover:
    """Asks at the terminal; ``--yes`` approves for scripts; no terminal and no ``--yes`` refuses."""

    def __init__(self, confirm: Callable[[str], bool] | None = None) -> None:
        self.confirm = confirm or (lambda text: typer.confirm(_wrapped(text), default=False))

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        if context.assume_yes:
            return Approval(Decision.APPROVED, context.actor, "cli --yes")
        if not context.interactive:
            raise UsageError(
                f"plan {plan.id} needs approval and there is no terminal to ask: pass --yes to approve it"
            )
        if self.confirm(_describe(plan)):
            return Approval(Decision.APPROVED, context.actor, "cli prompt")
        return Approval(Decision.REJECTED, context.actor, "cli prompt")


class AutoApprover:
    """Approves every plan: for policies trusted to run unattended."""

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        return Approval(
            Decision.APPROVED, "policy", "auto", note=f'policy {plan.policy} has approval = "auto"'
        )


@hookimpl
def register_approvers(register: Callable[[str, Approver], None]) -> None:
    """Register the ``cli`` and ``auto`` approval methods."""
    register("cli", CliApprover())
    register("auto", AutoApprover())
