"""``--format tsv``: a header row, then one tab-separated row per image, plan item or event.

For scripts (``cut -f``, ``awk -F'\\t'``, a spreadsheet): no ANSI codes, no
padding, no quoting.  A field never holds a tab or a line break (they become
spaces), so every line is one row; several tags are joined by ``,`` (a tag cannot
hold one), several reasons by ``; ``.  Digests are whole, sizes are bytes and times
ISO 8601 (UTC), as in ``--json``.  The columns are documented in docs/cli.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from ..lifecycle import ItemStatus
from ..models import Image, Plan
from ..state import AuditEvent, PlanRow

IMAGE_COLUMNS = ("repository", "digest", "tags", "type", "created", "size", "last_pull")
PLAN_COLUMNS = (
    "plan_id",
    "action",
    "repository",
    "digest",
    "tags",
    "role",
    "created",
    "size",
    "reasons",
)
EVENT_COLUMNS = ("id", "at", "event", "plan_id", "registry", "actor", "details")
# A plan's manifests by outcome so far, one column each.
PLAN_LIST_OUTCOMES = (ItemStatus.DELETED, ItemStatus.SKIPPED, ItemStatus.FAILED, ItemStatus.PENDING)
PLAN_LIST_COLUMNS = (
    "plan_id",
    "policy",
    "registry",
    "status",
    "created_at",
    "images",
    "manifests",
    "tags",
    "kept_images",
    "untags",
    "bytes",
    "bytes_exact",
    *(str(status) for status in PLAN_LIST_OUTCOMES),
)

_BREAKS = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def _field(value: object) -> str:
    return "" if value is None else str(value).translate(_BREAKS)


def write_rows(out: TextIO, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """The header, then each row, tab-separated, one per line."""
    out.write("\t".join(columns) + "\n")
    for row in rows:
        out.write("\t".join(_field(value) for value in row) + "\n")


def images_tsv(images: Iterable[Image], out: TextIO) -> None:
    """``regprune ls --format tsv``: one row per image (its signatures go with it)."""
    write_rows(
        out,
        IMAGE_COLUMNS,
        (
            (
                image.repository,
                image.digest,
                ",".join(image.tags),
                "index" if image.facts.children else "image",
                image.time.isoformat() if image.time else None,
                image.size,
                image.usage.last_pull.isoformat()
                if image.usage is not None and image.usage.last_pull
                else None,
            )
            for image in images
        ),
    )


def plans_tsv(plans: Iterable[Plan], out: TextIO, *, show_keep: bool = True) -> None:
    """``regprune plan --format tsv``: one row per item of each plan, whole reasons.

    ``action`` is ``delete`` (a manifest the plan deletes; ``role`` says image, child
    or artifact), ``untag`` (a tag removed while its image stays) or ``keep`` (an
    image kept, and why); ``size`` is only given for deletions.
    """

    def rows(plan: Plan) -> Iterable[Sequence[object]]:
        for item in plan.delete:
            yield (
                plan.id,
                "delete",
                item.repository,
                item.digest,
                ",".join(item.tags),
                item.role,
                item.created,
                item.size,
                "; ".join(item.reasons),
            )
        for untag in plan.untag:
            yield (
                plan.id,
                "untag",
                untag.repository,
                untag.digest,
                untag.tag,
                "",
                "",
                "",
                "; ".join(untag.reasons),
            )
        if show_keep:
            for kept in plan.keep:
                yield (
                    plan.id,
                    "keep",
                    kept.repository,
                    kept.digest,
                    ",".join(kept.tags),
                    "image",
                    kept.created,
                    "",
                    "; ".join(kept.reasons),
                )

    write_rows(out, PLAN_COLUMNS, (row for plan in plans for row in rows(plan)))


def events_tsv(
    events: Iterable[AuditEvent], out: TextIO, summary: Callable[[AuditEvent], str]
) -> None:
    """``regprune history --format tsv``: one row per audit event; ``details`` is the
    one-line summary the table shows (``--json`` has the whole object)."""
    write_rows(
        out,
        EVENT_COLUMNS,
        (
            (
                event.id,
                event.at.isoformat() if event.at else None,
                event.event,
                event.plan_id,
                event.registry,
                event.actor,
                summary(event),
            )
            for event in events
        ),
    )


def plan_list_tsv(rows: Iterable[PlanRow], out: TextIO) -> None:
    """``regprune plans --format tsv``: one row per stored plan; ``deleted``,
    ``skipped``, ``failed`` and ``pending`` count its manifests by outcome so far."""
    write_rows(
        out,
        PLAN_LIST_COLUMNS,
        (
            (
                row.id,
                row.policy,
                row.registry,
                row.status,
                row.created_at.isoformat(),
                row.images,
                row.manifests,
                row.tags,
                row.kept_images,
                row.untags,
                row.bytes,
                "true" if row.bytes_exact else "false",
                *(row.items.get(status, 0) for status in PLAN_LIST_OUTCOMES),
            )
            for row in rows
        ),
    )
