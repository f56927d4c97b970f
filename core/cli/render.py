"""Rendering plans, results and lists for people (rich) and scripts (--json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ..durations import format_duration
from ..models import ApplyResult, GcResult, Image, Plan
from ..timing import parse_time

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def human_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def age(created: str | None, now: datetime) -> str:
    moment = parse_time(created)
    return format_duration(now - moment) if moment else "-"


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def plan_tables(plan: Plan, now: datetime, *, show_keep: bool = True) -> None:
    table = Table(title=f"Plan {plan.id}: delete", title_justify="left")
    for column in ("repository", "tags", "digest", "kind", "age", "size", "why"):
        table.add_column(column, overflow="fold")
    for item in plan.delete:
        table.add_row(
            item.repository,
            ", ".join(item.tags) or "-",
            short(item.digest),
            item.role,
            age(item.created, now),
            human_bytes(item.size),
            "; ".join(item.reasons),
        )
    console.print(table)
    if show_keep and plan.keep:
        kept = Table(title=f"Plan {plan.id}: keep", title_justify="left")
        for column in ("repository", "tags", "digest", "age", "why"):
            kept.add_column(column, overflow="fold")
        for keep in plan.keep:
            kept.add_row(
                keep.repository,
                ", ".join(keep.tags) or "-",
                short(keep.digest),
                age(keep.created, now),
                "; ".join(keep.reasons),
            )
        console.print(kept)
    for warning in plan.warnings:
        err_console.print(f"warning: {warning}")
    console.print(summary_line(plan))


def summary_line(plan: Plan) -> str:
    s = plan.summary
    return (
        f"Plan {plan.id} ({plan.policy} on {plan.registry}): delete {s.images} image(s) "
        f"= {s.manifests} manifest(s), {s.tags} tag(s); keep {s.kept_images}; "
        f"about {human_bytes(s.bytes)} to free after gc. Status: {plan.status}."
    )


def apply_result(result: ApplyResult) -> None:
    for status in ("skipped", "failed"):
        for outcome in result.of(status):  # type: ignore[arg-type]
            item = outcome.item
            console.print(
                f"{status}: {item.repository}@{short(item.digest)} ({', '.join(item.tags) or item.role}): {outcome.reason}"
            )
    console.print(
        f"Plan {result.plan_id}: {result.status}; deleted {len(result.of('deleted'))}, "
        f"skipped {len(result.of('skipped'))}, failed {len(result.of('failed'))}, "
        f"not yet done {len(result.of('pending')) + len(result.of('deleting'))}; "
        f"{human_bytes(result.bytes_deleted)} of manifests and blobs unreferenced (run gc to free the disk)."
    )


def gc_result(result: GcResult) -> None:
    for warning in result.warnings:
        err_console.print(f"warning: {warning}")
    what = "dry run" if result.dry_run else "garbage collection"
    freed = f"; freed {human_bytes(result.bytes_freed)}" if result.bytes_freed is not None else ""
    sizes = ""
    if result.bytes_before is not None:
        sizes = (
            f" (storage {human_bytes(result.bytes_before)} -> {human_bytes(result.bytes_after)})"
        )
    status = "ok" if result.ok else f"failed with exit code {result.exit_code}"
    console.print(f"{result.registry}: {what} {status}{freed}{sizes}")
    if not result.ok:
        console.print(result.output[-2000:])


def images_table(images: Iterable[Image], now: datetime) -> None:
    table = Table()
    for column in ("repository", "tags", "digest", "type", "created", "age", "size"):
        table.add_column(column, overflow="fold")
    for image in images:
        created = image.time.strftime("%Y-%m-%d %H:%M") if image.time else "-"
        when = format_duration(now - image.time) if image.time else (image.time_note or "-")
        extra = f" +{len(image.artifacts)} artifact(s)" if image.artifacts else ""
        table.add_row(
            image.repository,
            ", ".join(image.tags) + extra,
            short(image.digest),
            "index" if image.children else "image",
            created,
            when,
            human_bytes(image.size),
        )
    console.print(table)


def image_json(image: Image) -> dict[str, Any]:
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
    }
