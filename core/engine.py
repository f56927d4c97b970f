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
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy

from .apply import Applier, KeepRule, Progress
from .config import RegistrySettings, Settings
from .errors import (
    ApplyStopped,
    ApprovalPending,
    ConfigError,
    GcInterrupted,
    Interrupted,
    RegpruneError,
    UsageError,
)
from .gc_checks import delete_untagged_spelling, validate_commands
from .hookcalls import PluginError, first_result, notify, plugin_error
from .keep_rules import compile_keep_rules
from .mediatypes import is_index
from .models import (
    ApplyResult,
    Approval,
    ApprovalContext,
    GcResult,
    Image,
    ItemOutcome,
    Plan,
    PlanStatus,
    item_status,
)
from .options import Options
from .planner import CompiledPolicy, assign_times, build_plan, compile_policy
from .plugin_manager import Catalog, build_catalog, get_plugin_manager
from .plugin_settings import approver_options, configure_plugins
from .registry import RegistryBackend, check_backend_options
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


def _identity(url: str) -> str:
    try:
        return registry_identity(url)
    except ValueError:
        return url.rstrip("/")


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
        client_factory: Callable[[str, RegistrySettings], RegistryBackend] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.manager = manager or get_plugin_manager()
        self._now = now or (lambda: datetime.now(UTC))
        # The registry's back end, by its [registry.NAME] type (tests pass their own).
        self._client_factory = client_factory or (
            lambda name, reg: self.catalog.open_registry(name, reg)
        )
        self._catalog: Catalog | None = None
        self.plugin_settings: dict[str, Options] = {}
        self._clients: dict[str, RegistryBackend] = {}
        self._compiled: dict[str, CompiledPolicy] | None = None

    # -- plumbing -----------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            catalog = build_catalog(self.manager)
            # Plugins get their [plugins.NAME] settings before anything else is asked of them.
            self.plugin_settings = configure_plugins(self.manager, self.settings.plugins)
            self._catalog = catalog
        return self._catalog

    def now(self) -> datetime:
        return self._now()

    def registry_settings(self, name: str) -> RegistrySettings:
        return self.settings.get_registry(name)

    def client(self, registry: str) -> RegistryBackend:
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

    def client_for_plan(self, plan: Plan) -> RegistryBackend:
        """The client for the registry a plan was made for, and no other.

        A plan is bound to its registry's identity (``registry_identity`` of the URL it
        was made against): when the config's registry of that name now points
        elsewhere (``staging.toml`` and ``prod.toml`` sharing one state DB), apply
        refuses before anything is deleted.
        """
        configured = self.settings.registry.get(plan.registry)
        if configured is not None:
            if _identity(configured.url) != _identity(plan.registry_url):
                raise UsageError(
                    f"plan {plan.id} was made for registry {plan.registry!r} at "
                    f"{plan.registry_url}, but the config's [registry.{plan.registry}] is "
                    f"{configured.url}; nothing was deleted. Apply it with the config it was "
                    "made with, or make a new plan for this registry"
                )
            return self.client(plan.registry)
        # A quick-mode plan: the registry is only known by its URL.
        settings = RegistrySettings(url=plan.registry_url)
        self.settings.registry[plan.registry] = settings
        return self.client(plan.registry)

    def keep_rules_for(self, plan: Plan) -> Callable[[str], list[KeepRule]]:
        """The keep rules apply runs again for each repository of ``plan``.

        Keep always wins, so these are the union of the rules stored with the plan
        (its policy's rules when it was made) and the current rules of every configured
        policy on the same registry that covers the repository.  A rule that cannot be
        built any more is a ConfigError here, before anything is deleted.
        """
        stored: list[KeepRule] = []
        if plan.keep_rules is not None:
            stored = compile_keep_rules(
                f"policy {plan.policy} (as planned)", plan.keep_rules, self.catalog
            )
        identity = _identity(plan.registry_url)
        # Compiled afresh, not the plan's cached rules: a keep rule that reads a file or
        # runs a command (in_use) must answer for now, not for when the plan was made.
        current = [
            self.compile(name)
            for name, policy in self.settings.policy.items()
            if _identity(self.registry_settings(policy.registry).url) == identity
        ]

        def rules(repository: str) -> list[KeepRule]:
            found = list(stored)
            for compiled in current:
                if not compiled.covers(repository):
                    continue
                found += [
                    (f"policy {compiled.name}", compiled.owners.get(label, "unknown"), protector)
                    for label, protector in compiled.protectors
                ]
            return found

        return rules

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
        check_backend_options(self.settings.registry, self.catalog.registry_backends)
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

        def keepers_for(repository: str) -> list[KeepRule]:
            # Keep always wins, across policies: other policies' keep rules guard this repository too.
            return [
                (f"policy {other.name}", other.owners.get(label, "unknown"), protector)
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
        self.state.plans.save(plan)
        notify(
            self.manager, "plan_created", plan=plan, state=self.state, audit=self.state.audit_log
        )
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
            self.state.retention.check_idle()
        older_than = older_than if older_than is not None else self.settings.state.retention
        result = None
        if older_than is not None:
            result = self.state.retention.prune_plans(
                older_than, now=self.now(), dry_run=dry_run, actor=actor
            )
        sizes = self.state.retention.vacuum(actor=actor) if vacuum else None
        return result, sizes

    def _prune_after_plan(self, plan: Plan) -> None:
        """Apply the plan retention after storing a plan: one indexed query when there is
        nothing to remove.  A busy DB only postpones it to the next plan."""
        retention = self.settings.state.retention
        if retention is None:
            return
        try:
            self.state.retention.prune_plans(
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
        owner = self.catalog.owner("approver", plan.approval)
        options = self._approver_options(plan, approver)
        if options is not None:
            context = replace(context, options=options)
        try:
            approval = approver.approve(plan, context)
        except RegpruneError:
            raise
        except Exception as exc:
            raise plugin_error(owner, f"approve ({plan.approval})", exc) from exc
        if not isinstance(approval, Approval) or approval.decision not in (
            "approved",
            "rejected",
            "pending",
        ):
            raise PluginError(
                f"plugin {owner} failed in approve ({plan.approval}): it answered {approval!r}, "
                "not an Approval that is approved, rejected or pending; nothing was deleted"
            )
        if approval.decision == "pending":
            return approval
        self.record_decision(plan, approval)
        return approval

    def _approver_options(self, plan: Plan, approver: object) -> Options | None:
        """The options the plan's policy gives its approver, as the config says now."""
        policy = self.settings.policy.get(plan.policy)
        if policy is None or policy.approval != plan.approval:
            options: dict[str, Any] = {}  # a quick-mode plan, or the policy changed since
        else:
            options = policy.approval_options
        return approver_options(approver, options, f"policy.{plan.policy}.approval")

    def record_decision(self, plan: Plan, approval: Approval) -> bool:
        """Move a pending plan to approved or rejected, once; False if it was no longer pending."""
        target: PlanStatus = "approved" if approval.decision == "approved" else "rejected"
        if not self.state.plans.set_status(plan.id, target, expected=("pending",)):
            return False
        self.state.approvals.add(plan.id, approval, at=self.now())
        plan.status = target
        notify(
            self.manager,
            "plan_decided",
            plan=plan,
            approval=approval,
            state=self.state,
            audit=self.state.audit_log,
        )
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
        plan = self.state.plans.get(plan_id)
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
            expires = self.state.plans.fields(plan.id).expires_at
            if expires and expires <= self.now():
                self.state.plans.set_status(plan.id, "expired", expected=("pending",))
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
            plan = self.state.plans.get(plan.id)
        if plan.status == "done":
            return self._result_from_state(plan)
        if plan.status not in resume:
            raise UsageError(f"plan {plan.id} is {plan.status}; only approved plans can be applied")
        return self._apply_approved(plan, progress, resume)

    def _apply_approved(
        self, plan: Plan, progress: Progress | None, resume: tuple[str, ...]
    ) -> ApplyResult:
        client = self.client_for_plan(plan)
        keep_rules = self.keep_rules_for(plan)
        name = self.lock_name(plan.registry, plan.registry_url)
        with self.state.locks.hold(name, purpose=f"apply of plan {plan.id}"):
            applier = Applier(
                plan,
                state=self.state,
                manager=self.manager,
                client=client,
                registry_settings=self.settings.registry.get(plan.registry)
                or RegistrySettings(url=plan.registry_url),
                lock_name=name,
                progress=progress,
                keep_rules_for=keep_rules,
                now=self._now,
            )
            try:
                applier.preflight(item.repository for item in applier.pending_items())
                applier.prepare()
            except RegpruneError as exc:
                self._refused(plan, exc)
                raise
            except KeyboardInterrupt:
                raise Interrupted(
                    f"interrupted before anything was deleted; plan {plan.id} is unchanged and "
                    f"`regprune apply {plan.id}` starts it again"
                ) from None
            # Another process may have finished or cancelled it since we read it.
            if not self.state.plans.set_status(plan.id, "applying", expected=resume):
                now = self.state.plans.get(plan.id).status
                raise UsageError(f"plan {plan.id} became {now} meanwhile; nothing was deleted")
            try:
                applier.run()
            except KeyboardInterrupt:
                self._stopped(plan)
                raise Interrupted(self._stopped_line(plan, "interrupted")) from None
            except RegpruneError as exc:
                self._stopped(plan)
                raise self._stopped_error(plan, exc) from None
            except BaseException:
                self._stopped(plan)
                raise
            statuses = self.state.plans.item_statuses(plan.id)
            final = (
                "failed"
                if any(s != "deleted" and s != "skipped" for s, _ in statuses.values())
                else "done"
            )
            self.state.plans.set_status(plan.id, final, expected=("applying",))
        plan = self.state.plans.get(plan.id)
        result = self._result_from_state(plan)
        notify(
            self.manager,
            "apply_finished",
            plan=plan,
            result=result,
            state=self.state,
            audit=self.state.audit_log,
        )
        return result

    def _stopped(self, plan: Plan) -> None:
        """An apply that stopped part-way: failed (resumable), and apply_finished fires."""
        self.state.plans.set_status(plan.id, "failed", expected=("applying",))
        result = self._result_from_state(self.state.plans.get(plan.id))
        notify(
            self.manager,
            "apply_finished",
            plan=plan,
            result=result,
            state=self.state,
            audit=self.state.audit_log,
        )

    def _stopped_line(self, plan: Plan, why: str) -> str:
        statuses = self.state.plans.item_statuses(plan.id)
        done = sum(1 for status, _ in statuses.values() if status == "deleted")
        return (
            f"{why}: stopped after {done} of {len(plan.delete)} deletions of plan {plan.id}; "
            f"`regprune apply {plan.id}` finishes the rest"
        )

    def _stopped_error(self, plan: Plan, exc: RegpruneError) -> RegpruneError:
        """Exit 2 only when nothing was deleted; after a partial apply, exit 1 with how far
        it got and how to finish."""
        statuses = self.state.plans.item_statuses(plan.id)
        if not any(status == "deleted" for status, _ in statuses.values()):
            return exc
        return ApplyStopped(self._stopped_line(plan, exc.message), cause=exc)

    def _refused(self, plan: Plan, exc: RegpruneError) -> None:
        """Apply stopped before deleting anything (the registry refuses deletes, a keep
        rule failed, the registry cannot be scanned): record a failure event and, when
        nothing of the plan was ever deleted, leave it re-approvable (pending again, its
        approvals void), so retention and `cancel` can deal with it."""
        statuses = self.state.plans.item_statuses(plan.id)
        untouched = not any(status == "deleted" for status, _ in statuses.values())
        reopened = untouched and self.state.plans.reopen(plan.id, expected=("approved", "failed"))
        self.state.audit_log.record(
            "apply.refused",
            registry=plan.registry,
            plan_id=plan.id,
            details={
                "error": exc.message,
                "status": "pending" if reopened else self.state.plans.get(plan.id).status,
            },
        )

    def _result_from_state(self, plan: Plan) -> ApplyResult:
        statuses = self.state.plans.item_statuses(plan.id)
        outcomes = []
        for item in plan.delete:
            status, reason = statuses[item.seq]
            outcomes.append(ItemOutcome(item, item_status(status), reason))
        return ApplyResult(plan_id=plan.id, status=plan.status, outcomes=outcomes)

    # -- gc ----------------------------------------------------------------------

    def gc(
        self, registry: str, *, dry_run: bool = False, allow_delete_untagged: bool = False
    ) -> GcResult:
        """Run the registry's garbage collector through the configured command, under the lock.

        Refuses (`UsageError`, before any command runs) a command that cannot run and,
        on Distribution 2.x, ``--delete-untagged`` while the registry holds a multi-arch
        image, unless ``allow_delete_untagged``.  The GC child's pid is kept in the
        lock, so the lock is not stale while it lives.  An interrupted run is recorded
        before `GcInterrupted` goes on.
        """
        settings = self.registry_settings(registry)
        self.gc_preflight(registry)
        name = self.lock_name(registry)
        with self.state.locks.hold(
            name, purpose="garbage collection" + (" (dry run)" if dry_run else "")
        ):
            warnings = self.gc_warnings(
                registry, settings, dry_run=dry_run, allow_delete_untagged=allow_delete_untagged
            )
            try:
                _, result = first_result(
                    self.manager,
                    "collect_garbage",
                    registry=settings,
                    name=registry,
                    dry_run=dry_run,
                    track_child=lambda pid: self.state.locks.set_child(name, pid),
                )
            except GcInterrupted as stop:
                if isinstance(stop.result, GcResult):
                    stop.result.warnings[:0] = warnings
                    self.state.gc_runs.record(registry, stop.result)
                raise
            if result is None:
                raise ConfigError(
                    f"no garbage collector for registry {registry!r}: set [registry.{registry}.gc] command = [...]"
                )
            result.warnings[:0] = warnings
        self.state.gc_runs.record(registry, result)
        notify(
            self.manager,
            "gc_finished",
            name=registry,
            result=result,
            state=self.state,
            audit=self.state.audit_log,
        )
        return result

    def gc_preflight(self, registry: str, *, scan: bool = False) -> None:
        """The checks `gc` makes before anything runs; raises `UsageError` (exit 2).

        The config checks make no request.  With ``scan`` the ``--delete-untagged``
        judgement is made too (it scans the registry): `run --gc` calls this before
        applying anything, so a GC it would refuse refuses the whole run up front.
        """
        settings = self.registry_settings(registry)
        validate_commands(settings.gc, registry)
        delete_untagged_spelling(settings.gc.command, f"registry.{registry}.gc.command")
        if scan:
            self.gc_warnings(registry, settings)

    def gc_warnings(
        self,
        registry: str,
        settings: RegistrySettings,
        *,
        dry_run: bool = False,
        allow_delete_untagged: bool = False,
    ) -> list[str]:
        """Warnings for a GC run; raise `UsageError` when it must not run at all.

        ``--delete-untagged`` (in any spelling the registry's flag parser accepts) on
        Distribution 2.x deletes the platform manifests of every multi-arch image: refused
        while a scan of the registry finds an index or manifest list, or when the
        registry cannot be scanned.  A dry run deletes nothing, so it only warns.
        """
        spelling = delete_untagged_spelling(settings.gc.command, f"registry.{registry}.gc.command")
        if spelling is None or settings.version == 3:
            return []
        flag = "--delete-untagged" + (
            f" (as {spelling!r})" if spelling != "--delete-untagged" else ""
        )
        risk = (
            f"registry.{registry}.gc.command has {flag}, which on Distribution 2.x deletes the"
            " platform manifests of multi-arch images (fixed in 3.0)"
        )
        fix = (
            "remove the flag (regprune deletes index children itself), set"
            f" [registry.{registry}] version = 3 if the registry runs 3.x, or pass"
            " --allow-delete-untagged to `regprune gc` to run it anyway"
        )
        if allow_delete_untagged:
            return [f"{risk}; running it because --allow-delete-untagged was given"]
        try:
            found = self._multi_arch_images(registry)
        except RegpruneError as exc:
            why = f"the registry could not be scanned for them ({exc.message})"
            if dry_run:
                return [f"{risk}, and {why}"]
            raise UsageError(f"{risk}, and {why}; not running garbage collection: {fix}") from exc
        if not found:
            return []
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        holds = f"this registry holds {len(found)} ({found[0]}{more})"
        if dry_run:
            return [f"{risk}, and {holds}; a real run is refused: {fix}"]
        raise UsageError(f"{risk}, and {holds}; not running garbage collection: {fix}")

    def _multi_arch_images(self, registry: str) -> list[str]:
        """``repo:tag`` (or ``repo@digest``) of every index / manifest list the registry holds.

        Scans every repository through the API with the digest cache, so a warm scan
        costs one request per tag.
        """
        scanner = Scanner(self.client(registry), self.state, registry, self.now())
        found: list[str] = []
        for scan in scanner.scan(scanner.repositories(["*"])):
            tags = scan.tags_by_digest()
            for digest, facts in sorted(scan.manifests.items()):
                if is_index(facts.media_type):
                    names = tags.get(digest)
                    found.append(
                        f"{scan.repository}:{names[0]}" if names else f"{scan.repository}@{digest}"
                    )
        return found

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
