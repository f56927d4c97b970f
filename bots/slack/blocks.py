"""Block Kit messages as pure functions: data in, JSON-ready dicts or text out.

Nothing here talks to Slack or the state DB, so every message can be checked in a
test by looking at the dict.  Limits respected: section text <= 3,000 characters,
header text <= 150, at most 50 blocks per message.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from regprune.formatting import human_bytes, short, slack_escape
from regprune.lifecycle import ITEM_REPORTED, ITEM_UNFINISHED, PlanStatus
from regprune.models import ApplyResult, GcResult, Plan, PlanItem, UntagItem

APPROVE_ACTION = "regprune_approve"
REJECT_ACTION = "regprune_reject"
DECISION_BLOCK = "regprune_decision"
SECTION_LIMIT = 2900  # Slack's limit is 3,000; leave room for the "…and N more" line
LIST_PER_MESSAGE = 25
TOP_REASONS = 3

Message = dict[str, Any]
"""``{"text": fallback text, "blocks": [...]}``: keyword arguments for chat.postMessage/update."""


@dataclass(frozen=True)
class PlanView:
    """Everything a plan's channel message shows, gathered by the service from the state DB."""

    plan: Plan
    status: str
    requested_by: str
    expires_at: datetime | None
    required: int
    approvals: Sequence[tuple[str, datetime]] = ()
    rejections: Sequence[tuple[str, datetime]] = ()
    outcome: Mapping[str, int] = field(default_factory=dict)
    note: str = ""


def mention(actor: str) -> str:
    """``slack:U123`` (a Slack requester) or a bare user ID as a mention; anything else verbatim."""
    if actor.startswith("slack:"):
        return f"<@{actor.removeprefix('slack:')}>"
    if is_user_id(actor):
        return f"<@{actor}>"
    return f"`{escape(actor)}`" if actor else "unknown"


def is_user_id(text: str) -> bool:
    """Whether ``text`` looks like a Slack user ID (``U…`` or ``W…``, upper-case letters and digits)."""
    return re.fullmatch(r"[UW][A-Z0-9]{2,}", text) is not None


def when(moment: datetime | None) -> str:
    """A UTC time for people: ``2025-01-31 14:05 UTC``."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "never"


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150], "emoji": False}


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _md(truncate(text, SECTION_LIMIT))}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_md(truncate(t, SECTION_LIMIT)) for t in texts[:10]]}


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters at a line boundary, saying how much was left out."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 40].rsplit("\n", 1)[0]
    dropped = text[len(kept) :].count("\n") + 1
    return f"{kept}\n…and {dropped} more line(s)"


escape = slack_escape


def top_reasons(plan: Plan, limit: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The most common reasons among the images (not children or artifacts) a plan deletes."""
    counts: Counter[str] = Counter()
    for item in plan.delete:
        if item.role == "image":
            counts.update(set(item.reasons))
    return counts.most_common(limit)


def summary_text(plan: Plan) -> str:
    """One line: images, manifests, tags and bytes a plan deletes."""
    s = plan.summary
    return (
        f"*{s.images}* image(s) = {s.manifests} manifest(s), *{s.tags}* tag(s); "
        f"{'' if s.bytes_exact else 'about '}*{human_bytes(s.bytes)}* to free after gc"
        f"{' (exact)' if s.bytes_exact else ''}; {s.kept_images} image(s) kept"
        + (f"; *{s.untags}* tag(s) removed from kept images (untag)" if s.untags else "")
    )


def repositories_text(plan: Plan, limit: int = 15) -> str:
    """Per-repository counts of images deleted, largest first."""
    rows = sorted(plan.summary.repositories.items(), key=lambda pair: (-pair[1], pair[0]))
    lines = [f"• `{escape(repo)}`: {count}" for repo, count in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"…and {len(rows) - limit} more repositories")
    return "\n".join(lines)


STATUS_LINES: dict[str, str] = {
    PlanStatus.PENDING: ":hourglass_flowing_sand: Waiting for approval",
    PlanStatus.APPROVED: ":white_check_mark: Approved; applying, progress in the thread",
    PlanStatus.APPLYING: ":gear: Applying; progress in the thread",
    PlanStatus.DONE: ":white_check_mark: Applied",
    PlanStatus.FAILED: ":x: Apply failed; see the thread",
    PlanStatus.REJECTED: ":no_entry: Rejected; nothing will be deleted",
    PlanStatus.EXPIRED: ":alarm_clock: Expired without approval; nothing will be deleted",
    PlanStatus.CANCELLED: ":no_entry_sign: Cancelled; nothing will be deleted",
}


def plan_message(view: PlanView) -> Message:
    """The channel message of a plan; the Approve/Reject buttons only while it is pending."""
    plan = view.plan
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": _plain(f"regprune plan {plan.id}: {plan.policy} on {plan.registry}"),
        },
        _section(summary_text(plan)),
    ]
    if plan.summary.repositories:
        blocks.append(_section("*Repositories*\n" + repositories_text(plan)))
    reasons = top_reasons(plan)
    if reasons:
        blocks.append(
            _section(
                "*Top reasons*\n"
                + "\n".join(f"• {escape(reason)} ({count})" for reason, count in reasons)
            )
        )
    for warning in plan.warnings[:3]:
        blocks.append(_context(f":warning: {escape(warning)}"))
    blocks.append(
        _context(
            f"Requested by {mention(view.requested_by)}",
            f"Expires {when(view.expires_at)}",
            f"Needs {view.required} approval(s)",
            "Full list in the thread",
        )
    )
    status = STATUS_LINES.get(view.status, view.status)
    lines = [f"*Status:* {status}"]
    if view.approvals:
        lines.append(
            "Approved by "
            + ", ".join(f"{mention(by)} at {when(at)}" for by, at in view.approvals)
            + (
                f" ({len(view.approvals)} of {view.required})"
                if view.status == PlanStatus.PENDING
                else ""
            )
        )
    if view.rejections:
        lines.append(
            "Rejected by " + ", ".join(f"{mention(by)} at {when(at)}" for by, at in view.rejections)
        )
    if view.outcome:
        lines.append(
            ", ".join(f"{count} {status}" for status, count in sorted(view.outcome.items()))
        )
    if view.note:
        lines.append(view.note)
    blocks.append(_section("\n".join(lines)))
    if view.status == PlanStatus.PENDING and plan.has_work:
        blocks.append(decision_buttons(plan))
    text = f"regprune plan {plan.id} ({plan.policy} on {plan.registry}): {view.status}"
    return {"text": text, "blocks": blocks}


def decision_buttons(plan: Plan) -> dict[str, Any]:
    """The Approve and Reject buttons; their ``value`` is the plan id."""
    s = plan.summary
    return {
        "type": "actions",
        "block_id": DECISION_BLOCK,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": _plain("Approve"),
                "style": "primary",
                "value": plan.id,
                "confirm": {
                    "title": _plain("Approve this plan?"),
                    "text": _md(
                        f"Delete {s.manifests} manifest(s) ({s.tags} tag(s)) from "
                        f"`{escape(plan.registry)}`. Tags that changed since the plan are skipped."
                    ),
                    "confirm": _plain("Approve"),
                    "deny": _plain("Cancel"),
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": _plain("Reject"),
                "style": "danger",
                "value": plan.id,
            },
        ],
    }


def item_line(item: PlanItem) -> str:
    """One delete item: repository, tags, digest, kind, size and reasons."""
    tags = ", ".join(item.tags) or "untagged"
    kind = "" if item.role == "image" else f" ({item.role})"
    reasons = "; ".join(item.reasons)
    return (
        f"• `{escape(item.repository)}` {escape(tags)} `{short(item.digest)}`{kind} "
        f"{human_bytes(item.size)}: {escape(reasons)}"
    )


def untag_line(item: UntagItem) -> str:
    """One tag removed while its image stays: repository, tag, digest and reasons."""
    return (
        f"• `{escape(item.repository)}` {escape(item.tag)} `{short(item.digest)}`: "
        f"{escape('; '.join(item.reasons))}"
    )


def list_messages(plan: Plan, per_message: int = LIST_PER_MESSAGE) -> list[str]:
    """The full delete list as thread replies of ``per_message`` items each, then the
    tags removed from kept images (untag), apart from the deletions."""
    items = plan.delete
    if not items and not plan.untag:
        return ["Nothing to delete."]
    chunks = []
    for start in range(0, len(items), per_message):
        part = items[start : start + per_message]
        head = f"*Delete list {start + 1} to {start + len(part)} of {len(items)}*\n"
        chunks.append(truncate(head + "\n".join(item_line(item) for item in part), 3900))
    untags = plan.untag
    for start in range(0, len(untags), per_message):
        tags = untags[start : start + per_message]
        head = (
            f"*Untag (tags removed, images stay) {start + 1} to {start + len(tags)} "
            f"of {len(untags)}*\n"
        )
        chunks.append(truncate(head + "\n".join(untag_line(item) for item in tags), 3900))
    return chunks


def list_file(plan: Plan) -> str:
    """The full delete list as a plain-text file (uploaded for large plans)."""
    lines = [
        f"regprune plan {plan.id}: policy {plan.policy} on {plan.registry} ({plan.registry_url})",
        f"created {when(plan.created_at)}; content hash {plan.content_hash}",
        "",
        "repository\ttags\tdigest\tkind\tsize\treasons",
    ]
    for item in plan.delete:
        lines.append(
            "\t".join(
                [
                    item.repository,
                    ",".join(item.tags) or "-",
                    item.digest,
                    item.role,
                    str(item.size),
                    "; ".join(item.reasons),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def progress_text(done: int, total: int, counts: Mapping[str, int]) -> str:
    """A progress line for the thread: ``Progress: 50 of 200 (48 deleted, 2 skipped)``."""
    detail = ", ".join(f"{counts[s]} {s}" for s in ITEM_REPORTED if counts.get(s))
    return f":gear: Progress: {done} of {total}" + (f" ({detail})" if detail else "")


def apply_result_message(result: ApplyResult, limit: int = 20) -> Message:
    """The final result of an apply: counts, bytes, and every skipped or failed item with why."""
    deleted, skipped, failed = (result.of(s) for s in ITEM_REPORTED)
    unfinished = sum(len(result.of(s)) for s in ITEM_UNFINISHED)
    icon = ":white_check_mark:" if result.status == PlanStatus.DONE else ":x:"
    head = (
        f"{icon} Plan {result.plan_id} {result.status}: deleted *{len(deleted)}*, "
        f"skipped *{len(skipped)}*, failed *{len(failed)}*"
        + (f", not yet done *{unfinished}*" if unfinished else "")
        + f"; {human_bytes(result.bytes_deleted)} of manifests and blobs unreferenced"
    )
    blocks: list[dict[str, Any]] = [_section(head)]
    for title, outcomes in (("Skipped", skipped), ("Failed", failed)):
        if not outcomes:
            continue
        lines = [
            f"• `{escape(o.item.repository)}` {escape(', '.join(o.item.tags) or o.item.role)} "
            f"`{short(o.item.digest)}`: {escape(o.reason)}"
            for o in outcomes[:limit]
        ]
        if len(outcomes) > limit:
            lines.append(
                f"…and {len(outcomes) - limit} more (see `regprune show {result.plan_id}`)"
            )
        blocks.append(_section(f"*{title}*\n" + "\n".join(lines)))
    if failed or unfinished:
        blocks.append(
            _context(f"Run `regprune apply {result.plan_id}` to retry; nothing is repeated.")
        )
    return {"text": head.replace("*", ""), "blocks": blocks}


def apply_error_text(plan_id: str, message: str, *, reopened: bool = False) -> str:
    """An apply that stopped with an error (deletes disabled, registry gone); ``reopened``
    when it stopped before deleting anything and the plan needs a new approval."""
    if reopened:
        return (
            f":x: Apply of plan {plan_id} stopped before deleting anything: {escape(message)}\n"
            "The plan is pending again and its approvals no longer count: approve it again "
            "once this is fixed, or cancel it."
        )
    return (
        f":x: Apply of plan {plan_id} stopped: {escape(message)}\n"
        f"Items already deleted stay recorded; `regprune apply {plan_id}` resumes once it is fixed."
    )


def apply_busy_text(plan_id: str, message: str) -> str:
    """An apply that did not start because another live process holds the registry's lock."""
    return (
        f":hourglass: Apply of plan {plan_id} did not start: {escape(message)}\n"
        "Nothing was deleted by this attempt and the bot does not try again by itself. "
        f"When the other process is done, `/regprune status {plan_id}` shows where the plan "
        f"stands; if it is not done, `regprune apply {plan_id}` finishes it and repeats nothing."
    )


def apply_crash_text(plan_id: str, error: str) -> str:
    """An apply that stopped on an unexpected error (a bug): the type only, details in the log."""
    return (
        f":x: Apply of plan {plan_id} stopped on an unexpected error ({escape(error)}); "
        "the bot's log has the details.\n"
        f"Items already deleted stay recorded; `regprune apply {plan_id}` resumes it and "
        "repeats nothing. The bot does not retry it by itself."
    )


def resume_text(plan_id: str, status: str, done: int, total: int) -> str:
    """The first thread reply of an apply the bot resumes after a restart."""
    where = (
        "approved but its apply had not started"
        if status == PlanStatus.APPROVED
        else "being applied"
    )
    already = (
        f" {done} of {total} manifest(s) were already handled and are not repeated." if done else ""
    )
    return (
        f":arrows_counterclockwise: The bot restarted while plan {plan_id} was {where}; "
        f"resuming after a restart.{already}"
    )


def resume_refused_text(plan_id: str, attempts: int) -> str:
    """A plan the bot will not resume again: it was resumed ``attempts`` times already."""
    return (
        f":warning: Plan {plan_id} was not resumed: the bot already resumed it {attempts} "
        "time(s) after a restart and it did not finish (the bot may be crashing while "
        f"applying it). Check the bot's log, then `regprune apply {plan_id}` finishes it "
        "and repeats nothing."
    )


def gc_result_text(result: GcResult) -> str:
    """The result of the garbage collection that followed an apply."""
    status = "ok" if result.ok else f"failed with exit code {result.exit_code}"
    freed = f"; freed {human_bytes(result.bytes_freed)}" if result.bytes_freed is not None else ""
    lines = [f":broom: Garbage collection on `{escape(result.registry)}` {status}{freed}"]
    lines.extend(f":warning: {escape(w)}" for w in result.warnings)
    if not result.ok and result.output:
        lines.append("```" + escape(result.output[-1500:]) + "```")
    return "\n".join(lines)


def status_text(view: PlanView) -> str:
    """The ``/regprune status`` answer."""
    plan = view.plan
    lines = [
        f"*Plan {plan.id}* ({plan.policy} on {plan.registry}): *{view.status}*",
        summary_text(plan),
        f"Requested by {mention(view.requested_by)}; expires {when(view.expires_at)}",
    ]
    if view.approvals:
        lines.append(
            f"Approvals ({len(view.approvals)} of {view.required}): "
            + ", ".join(f"{mention(by)} at {when(at)}" for by, at in view.approvals)
        )
    if view.rejections:
        lines.append("Rejected by " + ", ".join(mention(by) for by, _ in view.rejections))
    if view.outcome:
        lines.append("Items: " + ", ".join(f"{n} {s}" for s, n in sorted(view.outcome.items())))
    return "\n".join(lines)


def history_text(plans: Iterable[Plan]) -> str:
    """The ``/regprune history`` answer: recent plans, newest first."""
    lines = [
        f"• `{p.id}` {when(p.created_at)} {escape(p.policy)} on {escape(p.registry)}: "
        f"{p.summary.images} image(s), {human_bytes(p.summary.bytes)}, *{p.status}*"
        for p in plans
    ]
    return "*Recent plans*\n" + ("\n".join(lines) if lines else "none yet")


HELP = (
    "*/regprune*: plans, approvals and pruning of the registry\n"
    "• `/regprune plan &lt;policy&gt;`: compute a plan and post it for approval\n"
    "• `/regprune status &lt;plan-id&gt;`: where a plan stands\n"
    "• `/regprune cancel &lt;plan-id&gt;`: cancel a pending plan (approvers and its requester)\n"
    "• `/regprune history`: recent plans\n"
    "• `/regprune help`: this help"
)


def help_text(problem: str | None = None) -> str:
    """The help, after a line saying what was wrong with the command, if anything."""
    return (f"{escape(problem)}\n\n" if problem else "") + HELP
