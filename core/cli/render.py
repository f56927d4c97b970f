"""Rendering plans, results and lists for people (rich) and scripts (--json, --format tsv).

The human tables are meant to stay readable in 80 columns: digests are shortened,
cosign artifact tags become ``sha256-2eb39a12….sig`` and long reasons are trimmed
(``--json`` and ``regprune show PLAN --json`` always carry the full text).  To a pipe
or a file they are not folded at all: one line per row, several tags or reasons
joined on it, no trailing spaces (``output.OutputConsole``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar

from rich import box
from rich.table import Table
from rich.text import Text

from ..durations import format_duration

# The shared text helpers live in regprune.formatting; re-exported for existing imports.
from ..formatting import age, human_bytes, short, short_reason, short_tag
from ..lifecycle import ITEM_UNFINISHED, ItemStatus
from ..models import ApplyResult, GcResult, Image, KeepItem, Plan, PlanItem, UntagItem
from ..registry import RegistryVersion
from ..state import AuditEvent
from .output import OutputConsole

if TYPE_CHECKING:
    from ..storage import GcPreview

console = OutputConsole(highlight=False, soft_wrap=False)
err_console = OutputConsole(stderr=True, highlight=False)

MAX_TAGS = 4
NOT_STORED = "Not stored: it covers no repository (--store-empty stores it)."
# To a pipe a reason has the whole line: only a runaway one is cut.
PIPE_REASON_LIMIT = 2000


class _InRepository(Protocol):
    """Anything shown under a repository's header row (plan items, kept images)."""

    @property
    def repository(self) -> str: ...


T = TypeVar("T", bound=_InRepository)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def write_plans_json(plans: Sequence[Plan], out: TextIO) -> None:
    """``print_json`` of ``plan.to_json_dict()`` (a list of them when there are several),
    written item by item: the same bytes, without the dicts and the text of a whole plan
    of 100,000 items in memory at once (docs/performance.md#memory)."""
    if len(plans) == 1:
        _write_plan_json(plans[0], out, 0)
    else:
        out.write("[" if plans else "[]")
        for index, plan in enumerate(plans):
            out.write(("," if index else "") + "\n  ")
            _write_plan_json(plan, out, 1)
        out.write("\n]" if plans else "")
    out.write("\n")


def _indented(value: Any, level: int) -> str:
    """``json.dumps(value, indent=2)`` as it reads nested ``level`` deep (JSON text holds
    no raw newline but those between its lines, so indenting each line is exact)."""
    return json.dumps(value, indent=2, default=_json_default).replace("\n", "\n" + "  " * level)


def _write_plan_json(plan: Plan, out: TextIO, level: int) -> None:
    head, lists = plan.json_parts()
    pad = "  " * (level + 1)
    out.write("{" if head else "{}")
    for index, (key, value) in enumerate(head.items()):
        out.write(("," if index else "") + "\n" + pad + json.dumps(key) + ": ")
        items = lists.get(key)
        if not items:
            out.write(_indented(value, level + 1))
            continue
        out.write("[")
        for number, item in enumerate(items):
            out.write(("," if number else "") + "\n  " + pad + _indented(item.to_dict(), level + 2))
        out.write("\n" + pad + "]")
    if head:
        out.write("\n" + "  " * level + "}")


# What the tags column says for an item without tags: a platform manifest, or an
# untagged referrer (found through the referrers API).
_UNTAGGED = {"child": "(platform)", "artifact": "(referrer)"}


def _one_line() -> bool:
    """Whether cells keep to one line: output to a pipe or a file, one row per line."""
    return not console.is_terminal


def tag_cell(tags: Sequence[str], empty: str = "-", *, extra: Sequence[str] = ()) -> str:
    """Tags one per line (indented under their repository's row), artifact tags shortened,
    at most MAX_TAGS and a count of the rest; to a pipe, every tag, on one line."""
    if _one_line():
        return "  " + ", ".join([*(short_tag(tag) for tag in tags), *extra] or [empty])
    shown = [short_tag(tag) for tag in tags[:MAX_TAGS]] or [empty]
    if len(tags) > MAX_TAGS:
        shown.append(f"+{len(tags) - MAX_TAGS} more")
    return "\n".join(f"  {line}" for line in [*shown, *extra])


def _tags_width(cells: Iterable[str], limit: int = 24) -> int:
    """A tags column wide enough for its longest line (up to ``limit``), so tags rarely fold."""
    longest = max((len(line) for cell in cells for line in cell.splitlines()), default=4)
    return longest if _one_line() else min(limit, longest)


def reason_cell(reasons: Sequence[str]) -> str:
    """Reasons one per line, trimmed; to a pipe, whole and on one line, separated by ``; ``."""
    if _one_line():
        return "; ".join(short_reason(reason, PIPE_REASON_LIMIT) for reason in reasons) or "-"
    return "\n".join(short_reason(reason) for reason in reasons) or "-"


def _table(title: str | None = None) -> Table:
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def _by_repository(items: Iterable[T], table: Table, row: Callable[[T], list[str]]) -> None:
    """Rows grouped under a header row per repository (saves a column in 80-column terminals)."""
    current = None
    for item in items:
        repository = item.repository
        if repository != current:
            current = repository
            table.add_row(Text(repository, style="bold"), end_section=False)
        table.add_row(*row(item))


def plan_tables(
    plan: Plan,
    now: datetime,
    *,
    show_keep: bool = True,
    statuses: Mapping[int, tuple[str, str]] | None = None,
) -> None:
    """A plan for people: what it deletes, what it keeps and why, and a summary line."""
    if plan.delete:
        table = _table(f"Plan {plan.id}: delete")
        width = _tags_width(
            tag_cell(item.tags, _UNTAGGED.get(item.role, "-")) for item in plan.delete
        )
        table.add_column("tags", overflow="fold", ratio=2, min_width=width)
        table.add_column("digest", no_wrap=True)
        table.add_column("age", no_wrap=True, justify="right")
        table.add_column("size", no_wrap=True, justify="right")
        if statuses is not None:
            table.add_column("status", overflow="fold", ratio=1)
        table.add_column("why", overflow="fold", ratio=5)

        def delete_row(item: PlanItem) -> list[str]:
            row = [
                tag_cell(item.tags, _UNTAGGED.get(item.role, "-")),
                short(item.digest),
                age(item.created, now) if item.role == "image" else "",
                human_bytes(item.size),
            ]
            if statuses is not None:
                row.append(_status_cell(statuses, item.seq))
            row.append(reason_cell(item.reasons))
            return row

        _by_repository(plan.delete, table, delete_row)
        console.print(table)
    else:
        console.print(f"Plan {plan.id}: nothing to delete.")
    if plan.untag:
        _untag_table(plan, statuses)
    if show_keep and plan.keep:
        kept = _table(f"Plan {plan.id}: keep")
        width = _tags_width(tag_cell(item.tags) for item in plan.keep)
        kept.add_column("tags", overflow="fold", ratio=2, min_width=width)
        kept.add_column("digest", no_wrap=True)
        kept.add_column("age", no_wrap=True, justify="right")
        kept.add_column("why", overflow="fold", ratio=5)

        def keep_row(item: KeepItem) -> list[str]:
            return [
                tag_cell(item.tags),
                short(item.digest),
                age(item.created, now),
                reason_cell(item.reasons),
            ]

        _by_repository(plan.keep, kept, keep_row)
        console.print(kept)
    for warning in plan.warnings:
        err_console.print(f"warning: {warning}")
    console.print(summary_line(plan))
    if plan.registry_version is not None:
        version = RegistryVersion.from_dict(plan.registry_version)
        console.print(f"Registry {plan.registry}: {version.label}.", markup=False)


def _untag_table(plan: Plan, statuses: Mapping[int, tuple[str, str]] | None) -> None:
    """The tags a plan removes while their images stay: a table of its own, apart
    from the deletions."""
    method = "tag DELETE" if plan.untag_method == "tag_delete" else "throwaway manifest (2.x)"
    table = _table(f"Plan {plan.id}: untag (tags removed, images stay; by {method})")
    width = _tags_width(tag_cell([item.tag]) for item in plan.untag)
    table.add_column("tag", overflow="fold", ratio=2, min_width=width)
    table.add_column("digest", no_wrap=True)
    if statuses is not None:
        table.add_column("status", overflow="fold", ratio=1)
    table.add_column("why", overflow="fold", ratio=5)

    def untag_row(item: UntagItem) -> list[str]:
        row = [tag_cell([item.tag]), short(item.digest)]
        if statuses is not None:
            row.append(_status_cell(statuses, item.seq))
        row.append(reason_cell(item.reasons))
        return row

    _by_repository(plan.untag, table, untag_row)
    console.print(table)


def summary_line(plan: Plan, *, status: bool = True) -> str:
    """One line for a plan; ``status=False`` when the apply's own line follows (``run``),
    which is where the status is news: "pending" just before applying is not."""
    s = plan.summary
    untag = f"; untag {s.untags} tag(s) of kept images" if s.untags else ""
    line = (
        f"Plan {plan.id} ({plan.policy} on {plan.registry}): delete {s.images} image(s) "
        f"= {s.manifests} manifest(s), {s.tags} tag(s); keep {s.kept_images}{untag}; "
        f"{'' if s.bytes_exact else 'about '}{human_bytes(s.bytes)} to free after gc"
        f"{' (exact, from the storage)' if s.bytes_exact else ''}."
    )
    if not plan.stored:
        return f"{line} {NOT_STORED}"
    return f"{line} Status: {plan.status}." if status else line


def apply_result(result: ApplyResult, *, gc_follows: bool = False) -> None:
    """What an apply did; ``gc_follows`` when ``run`` collects garbage right after."""
    for status in (ItemStatus.SKIPPED, ItemStatus.FAILED):
        for outcome in result.of(status):
            item = outcome.item
            what = ", ".join(short_tag(tag) for tag in item.tags) or item.role
            console.print(
                f"{status}: {item.repository}@{short(item.digest)} ({what}): {outcome.reason}"
            )
    for untag in result.untag_outcomes:
        if untag.status in (ItemStatus.SKIPPED, ItemStatus.FAILED):
            where = f"{untag.item.repository}:{short_tag(untag.item.tag)}"
            console.print(f"untag {untag.status}: {where}: {untag.reason}", markup=False)
    if result.untag_outcomes:
        removed = sum(1 for u in result.untag_outcomes if u.status == ItemStatus.DELETED)
        console.print(
            f"Untag: removed {removed} of {len(result.untag_outcomes)} tag(s); their images stay."
        )
    deleted = len(result.of(ItemStatus.DELETED))
    line = (
        f"Plan {result.plan_id}: {result.status}; deleted {deleted}, "
        f"skipped {len(result.of(ItemStatus.SKIPPED))}, failed {len(result.of(ItemStatus.FAILED))}, "
        f"not yet done {sum(len(result.of(s)) for s in ITEM_UNFINISHED)}"
    )
    if deleted:  # only then is there anything for gc to free
        then = "garbage collection runs next" if gc_follows else "run gc to free the disk"
        line += (
            f"; {human_bytes(result.bytes_deleted)} of manifests and blobs unreferenced ({then})"
        )
    console.print(f"{line}.")


def gc_result(result: GcResult) -> None:
    for warning in result.warnings:
        err_console.print(f"warning: {warning}")
    status = "ok" if result.ok else f"failed with exit code {result.exit_code}"
    if result.dry_run:
        # A dry run frees nothing: say what the collector found, never "freed 0 B".
        console.print(
            f"{result.registry}: dry run {status}; {gc_eligible_text(result)}",
            markup=False,
            soft_wrap=True,  # one line, whatever the width: scripts grep it
        )
    else:
        freed = (
            f"; freed {human_bytes(result.bytes_freed)}" if result.bytes_freed is not None else ""
        )
        sizes = ""
        if result.bytes_before is not None:
            sizes = (
                f" (storage {human_bytes(result.bytes_before)} -> "
                f"{human_bytes(result.bytes_after)})"
            )
        console.print(f"{result.registry}: garbage collection {status}{freed}{sizes}")
    if not result.ok:
        console.print(result.output[-2000:], markup=False)
        # Every failure is one `error:` line on stderr, what the collector said last.
        last = _last_said(result)
        said = f": {' '.join(last.split())[:300]}" if last else ""
        err_console.print(
            f"error: garbage collection of registry {result.registry!r} failed "
            f"(exit code {result.exit_code}){said}",
            soft_wrap=True,
        )
    if result.preview is not None:
        gc_preview_table(result.preview)


def _last_said(result: GcResult) -> str:
    """The last line the GC command itself printed (the output also holds the before
    and after commands', each after a ``$ command`` line), or of the whole output."""
    lines = result.output.splitlines()
    head = "$ " + " ".join(result.command)
    starts = [n for n, line in enumerate(lines) if line == head]
    if starts:
        own = lines[starts[-1] + 1 :]
        ends = [n for n, line in enumerate(own) if line.startswith("$ ")]
        lines = own[: ends[0]] if ends else own
    return next((line for line in reversed(lines) if line.strip()), "")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def gc_eligible_text(result: GcResult) -> str:
    """What a dry run found, in words: the collector's own counts."""
    eligible = result.eligible
    if eligible is None:
        return "the collector reported no counts (its output is in --json)"
    if not eligible.blobs and not eligible.manifests:
        found = "nothing eligible for deletion: a real run would free nothing"
    else:
        found = (
            f"{_count(eligible.blobs, 'blob')} and {_count(eligible.manifests, 'manifest')} "
            "eligible for deletion"
        )
    if eligible.blobs_marked is not None:
        found += f" ({_count(eligible.blobs_marked, 'blob')} still in use)"
    if eligible.bytes is not None and (eligible.blobs or eligible.manifests):
        found += f"; a real run frees about {human_bytes(eligible.bytes)}"
    return found


def gc_preview_table(preview: GcPreview) -> None:
    """What GC would free per repository (blobs only it held; its shared ones apart),
    then the total, where a blob several repositories shared counts once."""
    console.print("GC preview (registry storage; garbage-collect without --delete-untagged):")
    table = _table()
    table.add_column("repository", overflow="fold", ratio=3)
    table.add_column("blobs", justify="right", no_wrap=True)
    table.add_column("frees", justify="right", no_wrap=True)
    table.add_column("shared", justify="right", no_wrap=True)

    def shared(blobs: int, size: int) -> str:
        return f"{human_bytes(size)} ({blobs})" if blobs else "-"

    for name, usage in sorted(preview.by_repository.items()):
        table.add_row(
            name,
            str(usage.blobs),
            human_bytes(usage.bytes),
            shared(usage.shared_blobs, usage.shared_bytes),
        )
    if preview.unattributed_blobs:
        table.add_row(
            "(no repository)",
            str(preview.unattributed_blobs),
            human_bytes(preview.unattributed),
            "-",
        )
    table.add_row(
        "total",
        str(preview.blobs),
        human_bytes(preview.bytes),
        shared(preview.shared_blobs, preview.shared),
    )
    console.print(table)
    manifests = f" ({preview.manifests} manifests)" if preview.manifests else ""
    console.print(f"GC would free {preview.blobs} blob(s), {human_bytes(preview.bytes)}{manifests}")
    notes = []
    if preview.shared_blobs:
        notes.append("shared blobs count once")
    if preview.unreferenced_blobs:
        notes.append(f"{human_bytes(preview.unreferenced)} was unreferenced already")
    if notes:
        console.print("; ".join(notes))


TIME_SOURCE_MARKS = {"label": " (label)", "first_seen": " (first seen)"}


def _built(image: Image) -> str:
    """The build date, marked when it comes from a fallback rather than the image config."""
    if image.time is None:
        return "-"
    return image.time.strftime("%Y-%m-%d") + TIME_SOURCE_MARKS.get(image.time_source or "", "")


def _last_pull(image: Image, now: datetime) -> str:
    """When a client last pulled the image (``regprune listen``), by which client."""
    if image.usage is None or image.usage.last_pull is None:
        return "never"
    client = image.usage.last_client
    by = f" by {client}" if client else ""
    return f"{format_duration(max(now - image.usage.last_pull, timedelta(0)))} ago{by}"


def images_table(images: Iterable[Image], now: datetime) -> None:
    """Images grouped per repository, oldest first; a "last pull" column once
    ``regprune listen`` recorded any use of them."""
    images = list(images)
    pulls = any(image.usage is not None for image in images)
    table = _table()
    table.add_column("tags", overflow="fold", ratio=3)
    table.add_column("digest", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("age", no_wrap=True, justify="right")
    table.add_column("size", no_wrap=True, justify="right")
    if pulls:
        table.add_column("last pull", no_wrap=True)

    def row(image: Image) -> list[str]:
        signatures = [f"+{len(image.artifacts)} signature(s)"] if image.artifacts else []
        cells = [
            tag_cell(image.tags, extra=signatures),
            short(image.digest),
            "index" if image.facts.children else "image",
            _built(image),
            format_duration(now - image.time) if image.time else "-",
            human_bytes(image.size),
        ]
        return [*cells, _last_pull(image, now)] if pulls else cells

    if not images:
        console.print("no images")
        return
    _by_repository(images, table, row)
    console.print(table)


def image_json(image: Image) -> dict[str, Any]:
    usage = image.usage
    return {
        "repository": image.repository,
        "digest": image.digest,
        "tags": image.tags,
        "media_type": image.facts.media_type,
        "created": image.time.isoformat() if image.time else None,
        "time_source": image.time_source,
        "time_note": image.time_note,
        "size": image.size,
        "children": [child.digest for child in image.children],
        "artifacts": [{"digest": a.digest, "tags": a.tags} for a in image.artifacts],
        "last_pull": usage.last_pull.isoformat() if usage and usage.last_pull else None,
        "last_pull_agent": usage.last_pull_agent if usage else None,
        "pulls": usage.pulls if usage else 0,
    }


def event_summary(event: AuditEvent) -> str:
    """One short line for an audit event's details."""
    details: Mapping[str, Any] = event.details
    if "digest" in details:
        tags = ", ".join(short_tag(t) for t in details.get("tags") or []) or details.get("role", "")
        text = f"{details.get('repository', '')}@{short(details['digest'])} ({tags})"
        extra = details.get("reason") or details.get("error")
        return f"{text}: {short_reason(extra, 60)}" if extra else text
    if event.event == "plan.created":
        return (
            f"policy {details.get('policy')}: delete {details.get('images', 0)} image(s), "
            f"{details.get('tags', 0)} tag(s), ~{human_bytes(details.get('bytes'))}"
        )
    if event.event == "state.pruned":
        statuses = ", ".join(
            f"{n} {s}" for s, n in sorted((details.get("by_status") or {}).items())
        )
        older = format_duration(timedelta(seconds=details.get("older_than_seconds") or 0))
        return (
            f"removed {details.get('plans', 0)} plan(s) older than {older}"
            f"{f' ({statuses})' if statuses else ''}, {details.get('items', 0)} item(s),"
            f" {human_bytes(details.get('bytes'))}; {details.get('trigger', '')}"
        )
    parts = []
    for key, value in details.items():
        if key == "content_hash" or value in (None, "", [], {}):
            continue
        if key.startswith("bytes") and isinstance(value, int):
            value = human_bytes(value)
        elif isinstance(value, list | dict):
            value = f"{len(value)} item(s)"
        parts.append(f"{key}={short_reason(str(value), 50)}")
    return ", ".join(parts)


def _status_cell(statuses: Mapping[int, tuple[str, str]], seq: int) -> str:
    """An item's status, with its outcome (shortened) when it has one."""
    status, outcome = statuses.get(seq, ("?", ""))
    return f"{status}: {short_reason(outcome, 60)}" if outcome else status
