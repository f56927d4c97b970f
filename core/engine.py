"""The one engine every front end calls: plan, approve, apply, garbage-collect, list.

The CLI and the Slack bot both build an `Engine` and render the `Plan` and
`ApplyResult` objects it returns; neither has logic of its own.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pluggy

from .apply import Applier, Progress
from .config import RegistrySettings, Settings
from .errors import ApprovalPending, ConfigError, RegpruneError, UsageError
from .models import ApplyResult, Approval, ApprovalContext, GcResult, Image, ItemOutcome, Plan
from .planner import CompiledPolicy, assign_times, build_plan, compile_policy
from .plugin_manager import Catalog, build_catalog, get_plugin_manager
from .registry import RegistryClient
from .scan import RepositoryScan, Scanner
from .state import UNFINISHED_PLAN_STATUSES, PruneResult, State
from .timing import check_time_sources
from .urls import registry_identity

RESUMABLE = UNFINISHED_PLAN_STATUSES  # what apply resumes is what retention never removes
log = logging.getLogger(__name__)


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def lock_name(url: str) -> str:
    """One lock per registry, for apply and gc alike: its identity (``registry_identity``).

    Locking by identity, not by config name or URL text, means every spelling of the
    URL (``localhost`` or ``127.0.0.1``, a trailing slash, the default port) and every
    config that names the registry differently share one lock.
    """
    return registry_identity(url)


class Engine:
    """Plans, approvals, deletions and GC for one configuration and one state DB."""

    def __init__(
        self,
        settings: Settings,
        state: State,
        *,
        manager: pluggy.PluginManager | None = None,
        now: Callable[[], datetime] | None = None,
        client_factory: Callable[[str, RegistrySettings], RegistryClient] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.manager = manager or get_plugin_manager()
        self._now = now or (lambda: datetime.now(UTC))
        self._client_factory = client_factory or (
            lambda name, reg: RegistryClient.from_settings(reg)
        )
        self._catalog: Catalog | None = None
        self._clients: dict[str, RegistryClient] = {}
        self._compiled: dict[str, CompiledPolicy] | None = None

    # -- plumbing -----------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = build_catalog(self.manager)
        return self._catalog

    def now(self) -> datetime:
        return self._now()

    def registry_settings(self, name: str) -> RegistrySettings:
        return self.settings.get_registry(name)

    def client(self, registry: str) -> RegistryClient:
        """A shared client for a configured registry (quick-mode plans use their URL)."""
        if registry not in self._clients:
            settings = self.settings.registry.get(registry)
            if settings is None:
                raise ConfigError(
                    f"unknown registry {registry!r}; define [registry.{registry}] in the config"
                )
            self._clients[registry] = self._client_factory(registry, settings)
        return self._clients[registry]

    def lock_name(self, registry: str, url: str | None = None) -> str:
        """The lock of a registry given by config name; ``url`` for one the config does
        not define (a quick-mode plan's ``registry_url``)."""
        settings = self.settings.registry.get(registry)
        if settings is not None:
            return lock_name(settings.url)
        if url is None:
            raise ConfigError(
                f"unknown registry {registry!r}; define [registry.{registry}] in the config"
            )
        try:
            return lock_name(url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def client_for_plan(self, plan: Plan) -> RegistryClient:
        if plan.registry in self.settings.registry:
            return self.client(plan.registry)
        # A quick-mode plan: the registry is only known by its URL.
        settings = RegistrySettings(url=plan.registry_url)
        self.settings.registry[plan.registry] = settings
        return self.client(plan.registry)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    @property
    def request_count(self) -> int:
        return sum(client.request_count for client in self._clients.values())

    # -- plan -----------------------------------------------------------------

    def compile(self, policy: str) -> CompiledPolicy:
        return compile_policy(policy, self.settings.get_policy(policy), self.catalog)

    def validate(self) -> list[CompiledPolicy]:
        """Build every policy's plugins so config errors surface before any work.

        Built once per engine: planning several policies reuses them, so a keep rule
        that reads a file or runs a command (in_use, branch) does it once per run.
        """
        if self._compiled is None or set(self._compiled) != set(self.settings.policy):
            self._compiled = {name: self.compile(name) for name in self.settings.policy}
        return list(self._compiled.values())

    def plan(self, policy: str, *, requested_by: str | None = None) -> Plan:
        """Scan the policy's repositories, decide, store the plan and announce it."""
        compiled_all = {compiled.name: compiled for compiled in self.validate()}
        compiled = compiled_all[policy]
        registry = compiled.settings.registry
        client = self.client(registry)
        now = self.now()
        scanner = Scanner(client, self.state, registry, now)
        repositories = scanner.repositories(
            compiled.settings.repositories, compiled.settings.exclude
        )
        scans = scanner.scan(repositories)
        others = [
            c for c in compiled_all.values() if c.name != policy and c.settings.registry == registry
        ]

        def keepers_for(repository: str) -> list:
            # Keep always wins, across policies: other policies' keep rules guard this repository too.
            return [
                (f"policy {other.name}", protector)
                for other in others
                if other.covers(repository)
                for label, protector in other.protectors
            ]

        plan = build_plan(
            policy_name=policy,
            registry_name=registry,
            registry_url=self.registry_settings(registry).url,
            scans=scans,
            compiled=compiled,
            keepers_for=keepers_for,
            catalog=self.catalog,
            now=now,
            requested_by=requested_by or default_actor(),
        )
        self.state.save_plan(plan)
        self.manager.hook.plan_created(plan=plan, state=self.state)
        self._prune_after_plan(plan)
        return plan

    # -- retention -------------------------------------------------------------

    def prune_plans(
        self,
        older_than: timedelta | None = None,
        *,
        dry_run: bool = False,
        vacuum: bool = False,
        actor: str | None = None,
    ) -> tuple[PruneResult | None, tuple[int, int] | None]:
        """Remove old finished and never-approved plans (``regprune state prune``), then
        optionally VACUUM the DB; ``(what was removed, (bytes before, after) of a vacuum)``.

        ``older_than`` defaults to ``[state] plan_retention``; no plans are removed
        (None) when that is ``"never"`` and no ``older_than`` is given.  Approved,
        applying and failed plans are never removed.  A vacuum is refused up front,
        before anything is removed, while an apply or gc holds a lock.
        """
        actor = actor or default_actor()
        vacuum = vacuum and not dry_run
        if vacuum:
            self.state.check_idle()
        older_than = older_than if older_than is not None else self.settings.state.retention
        result = None
        if older_than is not None:
            result = self.state.prune_plans(
                older_than, now=self.now(), dry_run=dry_run, actor=actor
            )
        sizes = self.state.vacuum(actor=actor) if vacuum else None
        return result, sizes

    def _prune_after_plan(self, plan: Plan) -> None:
        """Apply the plan retention after storing a plan: one indexed query when there is
        nothing to remove.  A busy DB only postpones it to the next plan."""
        retention = self.settings.state.retention
        if retention is None:
            return
        try:
            self.state.prune_plans(
                retention,
                now=self.now(),
                actor=plan.requested_by or default_actor(),
                trigger=f"after plan {plan.id}",
                record_empty=False,
            )
        except sqlite3.OperationalError as exc:
            log.warning("plan retention skipped, retried after the next plan: %s", exc)

    # -- approve ---------------------------------------------------------------

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        """Ask the plan's approver; record and announce the decision when one is made."""
        approver = self.catalog.approvers.get(plan.approval)
        if approver is None:
            raise ConfigError(
                f"plan {plan.id} needs approver {plan.approval!r}, which no installed plugin provides"
            )
        approval = approver.approve(plan, context)
        if approval.decision == "pending":
            return approval
        self.record_decision(plan, approval)
        return approval

    def record_decision(self, plan: Plan, approval: Approval) -> bool:
        """Move a pending plan to approved or rejected, once; False if it was no longer pending."""
        target = "approved" if approval.decision == "approved" else "rejected"
        if not self.state.set_plan_status(plan.id, target, expected=("pending",)):
            return False
        self.state.add_approval(plan.id, approval, at=self.now())
        plan.status = target  # type: ignore[assignment]
        self.manager.hook.plan_decided(plan=plan, approval=approval, state=self.state)
        return True

    # -- apply -----------------------------------------------------------------

    def apply(
        self,
        plan_id: str,
        *,
        context: ApprovalContext | None = None,
        progress: Progress | None = None,
        resume: tuple[str, ...] = RESUMABLE,
    ) -> ApplyResult:
        """Approve if needed, then delete what the plan lists; resumable.

        ``resume`` names the statuses this caller may continue from; the Slack bot
        leaves out "failed" so a failure waits for a person.
        """
        plan = self.state.get_plan(plan_id)
        context = context or ApprovalContext(
            assume_yes=False, interactive=False, actor=default_actor()
        )
        context = ApprovalContext(
            assume_yes=context.assume_yes,
            interactive=context.interactive,
            actor=context.actor,
            state=self.state,
            settings=self.settings,
        )
        if plan.status == "pending":
            expires = self.state.plan_fields(plan.id).get("expires_at")
            if expires and expires <= self.now():
                self.state.set_plan_status(plan.id, "expired", expected=("pending",))
                raise UsageError(
                    f"plan {plan.id} expired at {expires:%Y-%m-%d %H:%M} UTC; make a new plan"
                )
            approval = self.approve(plan, context)
            if approval.decision == "pending":
                raise ApprovalPending(
                    f"plan {plan.id} is waiting for approval ({approval.note or plan.approval})"
                )
            if approval.decision == "rejected":
                return ApplyResult(plan_id=plan.id, status="rejected")
            plan = self.state.get_plan(plan.id)
        if plan.status == "done":
            return self._result_from_state(plan)
        if plan.status not in resume:
            raise UsageError(f"plan {plan.id} is {plan.status}; only approved plans can be applied")
        return self._apply_approved(plan, progress, resume)

    def _apply_approved(
        self, plan: Plan, progress: Progress | None, resume: tuple[str, ...]
    ) -> ApplyResult:
        client = self.client_for_plan(plan)
        name = self.lock_name(plan.registry, plan.registry_url)
        with self.state.lock(name, purpose=f"apply of plan {plan.id}"):
            applier = Applier(
                plan,
                state=self.state,
                manager=self.manager,
                client=client,
                lock_name=name,
                progress=progress,
            )
            pending = applier.pending_items()
            applier.preflight(item.repository for item in pending)
            # Another process may have finished or cancelled it since we read it.
            if not self.state.set_plan_status(plan.id, "applying", expected=resume):
                now = self.state.get_plan(plan.id).status
                raise UsageError(f"plan {plan.id} became {now} meanwhile; nothing was deleted")
            try:
                applier.run()
            except RegpruneError:
                self.state.set_plan_status(plan.id, "failed", expected=("applying",))
                result = self._result_from_state(self.state.get_plan(plan.id))
                self.manager.hook.apply_finished(plan=plan, result=result, state=self.state)
                raise
            statuses = self.state.item_statuses(plan.id)
            final = (
                "failed"
                if any(s != "deleted" and s != "skipped" for s, _ in statuses.values())
                else "done"
            )
            self.state.set_plan_status(plan.id, final, expected=("applying",))
        plan = self.state.get_plan(plan.id)
        result = self._result_from_state(plan)
        self.manager.hook.apply_finished(plan=plan, result=result, state=self.state)
        return result

    def _result_from_state(self, plan: Plan) -> ApplyResult:
        statuses = self.state.item_statuses(plan.id)
        outcomes = [ItemOutcome(item, *statuses[item.seq]) for item in plan.delete]  # type: ignore[arg-type]
        return ApplyResult(plan_id=plan.id, status=plan.status, outcomes=outcomes)

    # -- gc ----------------------------------------------------------------------

    def gc(self, registry: str, *, dry_run: bool = False) -> GcResult:
        """Run the registry's garbage collector through the configured command, under the lock."""
        settings = self.registry_settings(registry)
        with self.state.lock(
            self.lock_name(registry), purpose="garbage collection" + (" (dry run)" if dry_run else "")
        ):
            result = self.manager.hook.collect_garbage(
                registry=settings, name=registry, dry_run=dry_run
            )
            if result is None:
                raise ConfigError(
                    f"no garbage collector for registry {registry!r}: set [registry.{registry}.gc] command = [...]"
                )
            result.warnings[:0] = self.gc_warnings(registry, settings)
        self.state.record_gc(registry, result)
        self.manager.hook.gc_finished(name=registry, result=result, state=self.state)
        return result

    def gc_warnings(self, registry: str, settings: RegistrySettings) -> list[str]:
        command = settings.gc.command or []
        if (
            "--delete-untagged" in command
            and settings.version != 3
            and self.state.has_indexes(registry)
        ):
            return [
                "--delete-untagged on Distribution 2.x deletes the platform manifests of multi-arch "
                "images (fixed in 3.0); remove the flag or set version = 3 if the registry runs 3.x"
            ]
        return []

    # -- list ----------------------------------------------------------------------

    def list_images(
        self, registry: str, patterns: list[str], time_sources: list[str] | None = None
    ) -> list[RepositoryScan]:
        """Scan repositories (globs) and give each image its time, for `regprune ls`."""
        client = self.client(registry)
        now = self.now()
        sources = time_sources or ["created", "label", "first_seen"]
        check_time_sources(sources, self.catalog.time_sources, "time_source")
        scanner = Scanner(client, self.state, registry, now)
        scans = scanner.scan(scanner.repositories(patterns))
        for scan in scans:
            assign_times(scan.images, sources, self.catalog, now)
        return scans


def images_by_time(scans: list[RepositoryScan]) -> list[Image]:
    images = [image for scan in scans for image in scan.images]
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(images, key=lambda image: (image.repository, image.time or oldest, image.digest))


def is_interactive() -> bool:
    return os.isatty(0) and os.isatty(1)
