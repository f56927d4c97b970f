"""Run metrics in the Prometheus text format: ``--metrics-file`` and ``--pushgateway``.

Each command builds a fresh ``CollectorRegistry`` from its `RunReport`, so nothing
is left over from another run in the same process (tests run many).  The names,
types and labels are documented in docs/operations.md#metrics; keep them in step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.exposition import (
    push_to_gateway,
    pushadd_to_gateway,
    write_to_textfile,
)
from prometheus_client.parser import text_string_to_metric_families

from .bounded_read import read_regular_file
from .notify.report import ITEM_STATUSES, OUTCOMES, RunReport

JOB = "regprune"
LAST_SUCCESS = "regprune_last_success_timestamp_seconds"
PUSH_TIMEOUT = 5.0  # seconds per push: metrics never hold a run up for long
MAX_METRICS_FILE = 4 * 1024 * 1024
"""An earlier metrics file larger than this is not read (ours are a few kB)."""
log = logging.getLogger("regprune.metrics")


def build_registry(report: RunReport, last_success: dict[str, float]) -> CollectorRegistry:
    """A registry holding the metrics of ``report``.

    ``last_success`` are the earlier success times per policy to carry over (read from
    the previous metrics file): a failed run must not make them disappear, or an
    alert on their age would go quiet exactly when runs fail.
    """
    # No `_created` series beside the counter: a run's own start time, noise in a textfile.
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=True)
    command = report.event

    def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    gauge("regprune_run_exit_code", "Exit code of the last run.", ("command",)).labels(command).set(
        report.exit_code
    )
    gauge("regprune_run_success", "1 when the last run exited 0, else 0.", ("command",)).labels(
        command
    ).set(1 if report.exit_code == 0 else 0)
    outcome = gauge(
        "regprune_run_outcome",
        "1 for the last run's outcome (success, deleted, failure), 0 for the others.",
        ("command", "outcome"),
    )
    for name in OUTCOMES:
        outcome.labels(command, name).set(1 if report.outcome == name else 0)
    gauge("regprune_run_duration_seconds", "How long the last run took.", ("command",)).labels(
        command
    ).set(report.duration_seconds)
    gauge(
        "regprune_run_timestamp_seconds", "When the last run ended (Unix time).", ("command",)
    ).labels(command).set(report.finished_at.timestamp())

    planned = {
        what: gauge(f"regprune_plan_{what}", f"{doc} the last plan of the policy deletes.", labels)
        for what, doc, labels in (
            ("images", "Images", ("policy", "registry")),
            ("tags", "Tags", ("policy", "registry")),
            ("bytes", "Bytes (estimate, or exact from the storage)", ("policy", "registry")),
        )
    }
    applied = {
        what: gauge(
            f"regprune_apply_{what}",
            f"{doc} of the last apply, by item status (deleted, skipped, failed).",
            ("policy", "registry", "status"),
        )
        for what, doc in (("images", "Images"), ("tags", "Tags"), ("bytes", "Bytes"))
    }
    untagged = gauge(
        "regprune_apply_untagged_tags",
        "Tags the last apply removed from images that stay.",
        ("policy", "registry"),
    )
    for plan in report.plans:
        labels = (plan.policy, plan.registry)
        planned["images"].labels(*labels).set(plan.planned_images)
        planned["tags"].labels(*labels).set(plan.planned_tags)
        planned["bytes"].labels(*labels).set(plan.planned_bytes)
        if not plan.applied:
            continue
        untagged.labels(*labels).set(plan.untagged)
        for status in ITEM_STATUSES:
            images, tags, size = plan.by_status.get(status, (0, 0, 0))
            applied["images"].labels(*labels, status).set(images)
            applied["tags"].labels(*labels, status).set(tags)
            applied["bytes"].labels(*labels, status).set(size)

    gc_ok = gauge("regprune_gc_success", "1 when the last GC run succeeded.", ("registry",))
    gc_freed = gauge(
        "regprune_gc_bytes_freed",
        "Bytes the last GC run freed (needs [registry.NAME.gc] storage_path).",
        ("registry",),
    )
    gc_time = gauge("regprune_gc_duration_seconds", "How long the last GC run took.", ("registry",))
    for gc in report.gc:
        gc_ok.labels(gc.registry).set(1 if gc.ok else 0)
        gc_time.labels(gc.registry).set(gc.duration_seconds)
        if gc.bytes_freed is not None:
            gc_freed.labels(gc.registry).set(gc.bytes_freed)

    requests = Counter(
        "regprune_http_requests",
        "HTTP requests the run sent to the registry, by method.",
        ("registry", "method"),
        registry=registry,
    )
    for (client, method), count in sorted(report.http_requests.items()):
        requests.labels(client, method).inc(count)

    times = dict(last_success)
    if report.exit_code == 0 and command in ("plan", "apply", "run"):
        for policy in report.policies:
            times[policy] = report.finished_at.timestamp()
    if times:
        # Declared only with samples: an empty family in a pushadd would still
        # replace the gateway's earlier value.
        success = gauge(
            LAST_SUCCESS, "When a run of the policy last succeeded (Unix time).", ("policy",)
        )
        for policy, when in sorted(times.items()):
            success.labels(policy).set(when)
    return registry


def read_last_success(path: Path) -> dict[str, float]:
    """``regprune_last_success_timestamp_seconds`` per policy from an earlier metrics
    file; empty when there is none or it cannot be read."""
    try:
        # Never a read that blocks on a FIFO or runs on through a device (Refused: ValueError).
        text = read_regular_file(str(path), MAX_METRICS_FILE).decode("utf-8")
        found = {}
        for family in text_string_to_metric_families(text):
            if family.name == LAST_SUCCESS:
                for sample in family.samples:
                    found[sample.labels["policy"]] = float(sample.value)
        return found
    except (OSError, ValueError, KeyError):
        return {}


def write_metrics_file(path: Path, report: RunReport) -> None:
    """Write the run's metrics to ``path`` atomically (a temporary file renamed over it),
    so node_exporter's textfile collector never reads half a file."""
    write_to_textfile(str(path), build_registry(report, read_last_success(path)))


def push_groups(report: RunReport) -> Iterator[tuple[dict[str, str], RunReport]]:
    """``(grouping key, the part of the report it holds)``: one group per policy and
    registry planned, one per registry only collected, or one for the whole run."""
    seen: set[str] = set()
    for plan in report.plans:
        key = {"policy": plan.policy, "registry": plan.registry}
        seen.add(plan.registry)
        yield key, _part(report, policy=plan.policy, registry=plan.registry)
    for gc in report.gc:
        if gc.registry not in seen:
            seen.add(gc.registry)
            yield {"registry": gc.registry}, _part(report, policy=None, registry=gc.registry)
    if not seen:
        yield {}, report


def _part(report: RunReport, *, policy: str | None, registry: str) -> RunReport:
    return replace(
        report,
        plans=tuple(p for p in report.plans if p.policy == policy and p.registry == registry),
        gc=tuple(g for g in report.gc if g.registry == registry),
        http_requests={k: v for k, v in report.http_requests.items() if k[0] == registry},
    )


def push_metrics(url: str, report: RunReport, *, timeout: float = PUSH_TIMEOUT) -> None:
    """Push the run's metrics to a Prometheus Pushgateway, job ``regprune``.

    A successful run replaces its groups (PUT); a failed one only adds (POST), so the
    gateway keeps the group's earlier ``regprune_last_success_timestamp_seconds``.
    """
    push = push_to_gateway if report.exit_code == 0 else pushadd_to_gateway
    for key, part in push_groups(report):
        push(url, job=JOB, registry=build_registry(part, {}), grouping_key=key, timeout=timeout)
