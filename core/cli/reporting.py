"""The run report and metrics of one ``plan``, ``apply``, ``run`` or ``gc``.

`RunRecorder` is registered with the plugin manager while the command runs and
listens to the engine's event hooks (``plan_created``, ``plan_status_changed``,
``apply_finished``, ``gc_finished``); `finish` builds the `RunReport` from what it
heard and the exit code, hands it to the ``[notify.NAME]`` notifiers, and writes
``--metrics-file`` / pushes to ``--pushgateway``.  Nothing here may change the
outcome: every problem is one ``warning:`` line.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..hookcalls import describe_exception
from ..hookspecs import hookimpl
from ..lifecycle import ItemStatus, PlanStatus
from ..models import ApplyResult, GcResult, ItemOutcome, Plan
from ..notify import COMMANDS, GcReport, PlanReport, RunReport
from ..notify.dispatch import ConfiguredNotifier, build_notifiers, dispatch

if TYPE_CHECKING:
    from .context import CliContext

RECORDER = "regprune-run-report"
log = logging.getLogger("regprune.report")


@dataclass
class _PlanEntry:
    plan: Plan
    status: str
    result: ApplyResult | None = None


@dataclass
class RunRecorder:
    """Hears what the engine did during one command (a plugin while it runs)."""

    plans: dict[str, _PlanEntry] = field(default_factory=dict)
    gc: list[GcResult] = field(default_factory=list)

    def _entry(self, plan: Plan) -> _PlanEntry:
        entry = self.plans.get(plan.id)
        if entry is None:
            entry = self.plans[plan.id] = _PlanEntry(plan, str(plan.status))
        return entry

    @hookimpl
    def plan_created(self, plan: Plan) -> None:
        self._entry(plan)

    @hookimpl
    def plan_status_changed(self, plan: Plan, new: PlanStatus) -> None:
        self._entry(plan).status = str(new)

    @hookimpl
    def apply_finished(self, plan: Plan, result: ApplyResult) -> None:
        entry = self._entry(plan)
        entry.result, entry.status = result, str(result.status)

    @hookimpl
    def gc_finished(self, result: GcResult) -> None:
        self.gc.append(result)


def _counts(outcomes: list[ItemOutcome]) -> tuple[int, int, int]:
    images = sum(1 for o in outcomes if o.item.role == "image")
    return images, sum(len(o.item.tags) for o in outcomes), sum(o.item.size for o in outcomes)


def plan_report(entry: _PlanEntry) -> PlanReport:
    plan, result = entry.plan, entry.result
    summary = plan.summary
    report = PlanReport(
        policy=plan.policy,
        registry=plan.registry,
        plan_id=plan.id,
        status=entry.status,
        planned_images=summary.images,
        planned_tags=summary.tags,
        planned_bytes=summary.bytes,
    )
    if result is None:
        return report
    failed = result.of(ItemStatus.FAILED)
    return replace(
        report,
        applied=True,
        deleted=len(result.of(ItemStatus.DELETED)),
        skipped=len(result.of(ItemStatus.SKIPPED)),
        failed=len(failed),
        untagged=sum(1 for o in result.untag_outcomes if o.status == ItemStatus.DELETED),
        deleted_bytes=result.bytes_deleted,
        by_status={
            str(status): _counts(result.of(status))
            for status in (ItemStatus.DELETED, ItemStatus.SKIPPED, ItemStatus.FAILED)
        },
        first_failure=failed[0].reason if failed else "",
    )


def gc_report(result: GcResult) -> GcReport:
    return GcReport(
        registry=result.registry,
        ok=result.ok,
        dry_run=result.dry_run,
        exit_code=result.exit_code,
        bytes_freed=result.bytes_freed,
        duration_seconds=(result.finished_at - result.started_at).total_seconds(),
    )


def _derived_error(plans: list[PlanReport], gc: list[GcReport]) -> str | None:
    """Why a command that printed no ``error:`` line failed (its exit code said so)."""
    for plan in plans:
        if plan.failed:
            return f"plan {plan.plan_id}: {plan.failed} item(s) failed: {plan.first_failure}"
        if plan.status in (PlanStatus.REJECTED, PlanStatus.FAILED):
            return f"plan {plan.plan_id} is {plan.status}"
    for run in gc:
        if not run.ok:
            return f"gc of {run.registry} failed (exit code {run.exit_code})"
    return None


@dataclass
class RunReporting:
    """One command's report in the making."""

    command: str
    started_at: datetime
    started: float = field(default_factory=time.monotonic)
    recorder: RunRecorder = field(default_factory=RunRecorder)

    def report(self, context: CliContext, exit_code: int) -> RunReport:
        plans = [plan_report(entry) for entry in self.recorder.plans.values()]
        gc = [gc_report(result) for result in self.recorder.gc]
        error = context.last_error
        if exit_code != 0 and not error:
            error = _derived_error(plans, gc) or f"exit code {exit_code}"
        return RunReport(
            event=self.command,
            exit_code=exit_code,
            error=error,
            started_at=self.started_at,
            finished_at=self.started_at + timedelta(seconds=time.monotonic() - self.started),
            host=socket.gethostname(),
            version=__version__,
            plans=tuple(plans),
            gc=tuple(gc),
            http_requests=context.http_requests(),
        )


def start(context: CliContext, command: str | None) -> None:
    """Begin recording when ``command`` is one that reports."""
    if command not in COMMANDS or context.reporting is not None:
        return
    context.reporting = RunReporting(command, datetime.now(UTC))
    context.manager.register(context.reporting.recorder, name=RECORDER)


def finish(context: CliContext, exit_code: int) -> RunReport | None:
    """Build the report, notify, write and push metrics; never raises."""
    reporting = context.reporting
    if reporting is None:
        return None
    context.reporting = None
    try:
        context.manager.unregister(reporting.recorder)
        report = reporting.report(context, exit_code)
    except Exception as exc:  # the command's own outcome stands whatever happens here
        log.warning("no run report: %s", describe_exception(exc))
        return None
    try:
        dispatch(report, notifiers_of(context))
        _metrics(context, report)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while waiting for a receiver
        log.warning("interrupted: the run report and metrics may not have been sent")
    except Exception as exc:
        log.warning("run report not sent: %s", describe_exception(exc))
    return report


def _metrics(context: CliContext, report: RunReport) -> None:
    if context.metrics_file is None and context.pushgateway is None:
        return
    from .. import metrics  # prometheus_client loads only when metrics are asked for

    if context.metrics_file is not None:
        try:
            metrics.write_metrics_file(Path(context.metrics_file), report)
        except Exception as exc:
            log.warning("--metrics-file %s not written: %s", context.metrics_file, _why(exc))
    if context.pushgateway is not None:
        try:
            metrics.push_metrics(context.pushgateway, report)
        except Exception as exc:
            log.warning("--pushgateway %s: metrics not pushed: %s", context.pushgateway, _why(exc))


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or describe_exception(exc)


def notifiers_of(context: CliContext) -> list[ConfiguredNotifier]:
    """The configured notifiers: from the loaded settings, or, when the config could not
    be loaded, from its ``[notify]`` tables alone (so a broken policy is still
    reported); none when even those cannot be read."""
    if context.notifiers is not None:
        return context.notifiers
    try:
        context.settings(required=False)
    except Exception:
        return _notifiers_from_file(context)
    return context.notifiers or []


def _notifiers_from_file(context: CliContext) -> list[ConfiguredNotifier]:
    from ..config import NotifySettings, expand_env, find_config, is_section_name
    from ..plugin_manager import build_catalog

    try:
        path = find_config(context.config_path)
        if path is None:
            return []
        document: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        tables = expand_env({"notify": document.get("notify", {})}, os.environ)["notify"]
        # Only what a loaded config would accept: an invalid [notify."a b"] is no notifier.
        sections = {
            name: NotifySettings.model_validate(table)
            for name, table in tables.items()
            if is_section_name(name)
        }
        return build_notifiers(sections, build_catalog(context.manager))
    except Exception:
        return []
