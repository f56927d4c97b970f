"""The one engine every front end calls: plan, decide, apply, garbage-collect, list.

The CLI and every front end (chat bots) build an `Engine` and render the `Plan` and
`ApplyResult` objects it returns; neither has logic of its own.  Every plan status
change is an engine transition (approve, reject, cancel, expire, apply, resume):
a compare-and-set along ``lifecycle.TRANSITIONS`` that fires ``plan_status_changed``.
The approval rules a front end configures live in ``decisions``; the apply and gc
flows in ``apply_flow`` and ``gc_flow``.
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
from functools import partial
from typing import Any

import pluggy

from . import apply_flow, gc_flow, lifecycle, untag
from .apply import KeepRule, Progress
from .config import RegistrySettings, Settings
from .errors import ApprovalPending, ConfigError, RegpruneError, UsageError
from .hookcalls import PluginError, notify_event, plugin_error
from .keep_rules import compile_keep_rules
from .lifecycle import Decision, PlanStatus
from .models import ApplyResult, Approval, ApprovalContext, GcResult, Image, Plan
from .options import Options
from .planner import CompiledPolicy, assign_times, build_plan, compile_policy, wants_untagged
from .plugin_manager import Catalog, build_catalog, get_plugin_manager
from .plugin_settings import approver_options, configure_plugins
from .referrers import attach_referrers
from .registry import RegistryBackend, RegistryVersion, check_backend_options, version_of
from .scan import RepositoryScan, Scanner
from .scan_progress import ScanProgress
from .scope import Scope, resolve_scope
from .state import PruneResult, State
from .timing import check_time_sources
from .transitions import Transitions
from .urls import registry_identity

RESUMABLE = lifecycle.RESUMABLE  # what apply resumes is what retention never removes
AUDIT_SCAN = 1_000_000  # audit_events has no event filter: read all of a plan's events
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


class Engine(Transitions):
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
        self._sources: dict[str, RegistryBackend] = {}
        self._versions: dict[str, RegistryVersion] = {}
        self._compiled: dict[str, CompiledPolicy] | None = None
        self._scopes: dict[str, Scope] = {}
        # What plan and ls scans report their steps to (the CLI's bar on a terminal).
        self.scan_progress: ScanProgress | None = None

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

    def scan_source(self, registry: str) -> RegistryBackend:
        """What scans read: the registry's storage when ``storage`` is configured (a
        `StorageReader` that still deletes through the API), else the API client."""
        if registry not in self._sources:
            settings = self.registry_settings(registry)
            client = self.client(registry)
            if settings.storage is None:
                self._sources[registry] = client
            else:
                from .storage import StorageLayout, StorageReader

                layout = StorageLayout(settings.storage, key=f"registry.{registry}.storage")
                self._sources[registry] = StorageReader(layout, client)
        return self._sources[registry]

    def registry_version(self, registry: str) -> RegistryVersion:
        """The Distribution major version of a registry: ``version`` in its config section
        when set, else what its answers tell (see ``registry/_version.py``), else unknown.

        Worked out at most once per client, with GET requests only (usually none: the
        scan's own answers tell).  Where a wrong answer would be unsafe, a caller must
        also look at ``source`` (gc trusts only a configured 3).
        """
        if registry not in self._versions:
            settings = self.registry_settings(registry)
            self._versions[registry] = version_of(registry, settings.version, self.client(registry))
        return self._versions[registry]

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
        # A copy for this engine alone: the settings object may be shared (bot threads).
        self.settings = self.settings.with_registry(
            plan.registry, RegistrySettings(url=plan.registry_url)
        )
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
        self._sources.clear()
        self._versions.clear()
        self._scopes.clear()

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
        for name, policy in self.settings.policy.items():
            # A registry configured as 2.x refuses untag without the opt-in, before any request.
            untag.check_configured(name, policy, self.registry_settings(policy.registry).version)
        if self._compiled is None or set(self._compiled) != set(self.settings.policy):
            compiled = {name: self.compile(name) for name in self.settings.policy}
            for compiled_policy in compiled.values():
                _check_untagged_source(
                    compiled_policy, self.registry_settings(compiled_policy.settings.registry)
                )
            self._compiled = compiled
        return list(self._compiled.values())

    def scope(self, policy: str) -> Scope:
        """The repositories a policy covers, checked against its registry (see
        ``scope.py``): a literal name the registry does not have is a `UsageError`.
        Worked out once per engine, so a front end can check every policy's scope
        before it plans any (and stores nothing when one has a typo)."""
        if policy not in self._scopes:
            settings = self.settings.get_policy(policy)
            self._scopes[policy] = resolve_scope(
                self.scan_source(settings.registry),
                settings.repositories,
                settings.exclude,
                where=f"policy {policy}",
                registry_url=self.registry_settings(settings.registry).url,
            )
        return self._scopes[policy]

    def plan(
        self, policy: str, *, requested_by: str | None = None, store_empty: bool = False
    ) -> Plan:
        """Scan the policy's repositories, decide, store the plan and announce it.

        A policy whose globs match no repository makes a plan that is returned with a
        warning but not stored (``plan.stored`` is False) unless ``store_empty``: an
        empty scope is more often a mistake than a result worth keeping.
        """
        compiled_all = {compiled.name: compiled for compiled in self.validate()}
        compiled = compiled_all[policy]
        registry = compiled.settings.registry
        client = self.client(registry)
        now = self.now()
        scope = self.scope(policy)
        scanner = Scanner(
            self.scan_source(registry), self.state, registry, now, self.scan_progress
        )
        scans = scanner.scan(scope.repositories, scope.listed)
        # After the scan: its answers usually tell the version, so this costs no request.
        version = self.registry_version(registry)
        method = untag.untag_method(policy, compiled.settings, version, client)
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
            find_referrers=partial(attach_referrers, scanner),
            coverage=self.state.usage.coverage(registry, now),
        )
        plan.warnings[:0] = scope.warnings
        plan.warnings.extend(storage_disagreements(scanner.client, scans))
        settings = self.registry_settings(registry)
        if settings.storage is not None and not plan.delete:
            plan.summary = replace(plan.summary, bytes=0, bytes_exact=True)
        elif settings.storage is not None:
            # Exact: what the registry's GC frees more once this plan's deletions are done,
            # layers shared with repositories outside the policy included.  It walks the
            # whole storage (GC is registry-wide), so a plan that deletes nothing skips it.
            preview = gc_flow.gc_preview(
                registry, settings, plan.deletions(), **scanned_storage(scans)
            )
            plan.summary = replace(plan.summary, bytes=preview.added, bytes_exact=True)
        plan.registry_version = version.to_dict()
        plan.untag_method = method if plan.untag else None
        # The plan holds what it needs: the scans go before it is encoded and stored.
        del scans, keepers_for
        if scope.empty and not store_empty:
            plan.stored = False
            return plan
        self.state.plans.save(plan)
        notify_event(self.manager, "plan_created", self.state, plan=plan)
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

    # -- decide (the transitions themselves are in transitions.Transitions) --------

    def ask_approver(self, plan: Plan, context: ApprovalContext) -> Approval:
        """Ask the plan's approver plugin; record and announce its decision when it makes one."""
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
        if not isinstance(approval, Approval) or approval.decision not in tuple(Decision):
            raise PluginError(
                f"plugin {owner} failed in approve ({plan.approval}): it answered {approval!r}, "
                "not an Approval that is approved, rejected or pending; nothing was deleted"
            )
        if approval.decision == Decision.PENDING:
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

    # -- apply -----------------------------------------------------------------

    def apply(
        self,
        plan_id: str,
        *,
        context: ApprovalContext | None = None,
        progress: Progress | None = None,
        resume: tuple[PlanStatus, ...] = lifecycle.RESUMABLE,
    ) -> ApplyResult:
        """Approve if needed, then delete what the plan lists; resumable.

        ``resume`` names the statuses this caller may continue from (`resume` leaves
        out failed, so a failure waits for a person).
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
        if plan.status == PlanStatus.PENDING:
            expired = self.expire_if_due(plan, actor=context.actor)
            if expired is not None:
                raise UsageError(
                    f"plan {plan.id} expired at {expired:%Y-%m-%d %H:%M} UTC; make a new plan"
                )
            approval = self.ask_approver(plan, context)
            if approval.decision == Decision.PENDING:
                raise ApprovalPending(
                    f"plan {plan.id} is waiting for approval ({approval.note or plan.approval})"
                )
            if approval.decision == Decision.REJECTED:
                return ApplyResult(plan_id=plan.id, status=PlanStatus.REJECTED)
            plan = self.state.plans.get(plan.id)
        if plan.status == PlanStatus.DONE:
            return apply_flow.result_from_state(self, plan)
        if plan.status not in resume:
            raise UsageError(f"plan {plan.id} is {plan.status}; only approved plans can be applied")
        return apply_flow.apply_approved(self, plan, progress, resume, actor=context.actor)

    def resume(self, plan_id: str, *, actor: str, progress: Progress | None = None) -> ApplyResult:
        """Apply an approved plan, or continue one whose apply died with its process,
        unattended: never a pending plan (nobody is asked) and never a failed one (a
        person reads why first)."""
        plan = self.state.plans.get(plan_id)
        if plan.status not in lifecycle.UNATTENDED_RESUMABLE and plan.status != PlanStatus.DONE:
            raise UsageError(
                f"plan {plan.id} is {plan.status}; only an approved or interrupted plan is "
                "applied unattended"
            )
        context = ApprovalContext(assume_yes=False, interactive=False, actor=actor)
        return self.apply(
            plan.id, context=context, progress=progress, resume=lifecycle.UNATTENDED_RESUMABLE
        )

    # -- gc (the flow lives in gc_flow) ------------------------------------------

    def gc(
        self, registry: str, *, dry_run: bool = False, allow_delete_untagged: bool = False
    ) -> GcResult:
        """Run the registry's garbage collector under its lock (see `gc_flow.run_gc`)."""
        return gc_flow.run_gc(
            self, registry, dry_run=dry_run, allow_delete_untagged=allow_delete_untagged
        )

    def gc_preflight(self, registry: str, *, scan: bool = False) -> None:
        """The checks `gc` makes before anything runs (see `gc_flow.gc_preflight`)."""
        gc_flow.gc_preflight(self, registry, scan=scan)

    # -- list ----------------------------------------------------------------------

    def list_images(
        self, registry: str, patterns: list[str], time_sources: list[str] | None = None
    ) -> list[RepositoryScan]:
        """Scan repositories (globs) and give each image its time, for `regprune ls`."""
        now = self.now()
        sources = time_sources or ["created", "label", "first_seen"]
        check_time_sources(sources, self.catalog.time_sources, "time_source")
        scope = resolve_scope(
            self.scan_source(registry),
            patterns,
            where="ls",
            registry_url=self.registry_settings(registry).url,
        )
        for warning in scope.warnings:
            log.warning("%s", warning)
        scanner = Scanner(
            self.scan_source(registry), self.state, registry, now, self.scan_progress
        )
        scans = scanner.scan(scope.repositories, scope.listed)
        for scan in scans:
            assign_times(scan.images, sources, self.catalog, now)
        return scans


def scanned_storage(scans: list[RepositoryScan]) -> dict[str, Any]:
    """What a storage scan already read, for the GC preview not to read it again: each
    repository's revisions and the references of the manifests it has facts for."""
    revisions = {scan.repository: scan.revisions for scan in scans if scan.revisions is not None}
    if not revisions:
        return {}
    from .storage import facts_references

    known: dict[str, tuple[str, ...]] = {}
    for scan in scans:
        for digest, facts in scan.manifests.items():
            refs = facts_references(facts)
            if refs is not None:
                known[digest] = refs
    return {"known_revisions": revisions, "known_references": known}


def storage_disagreements(source: RegistryBackend, scans: list[RepositoryScan]) -> list[str]:
    """Warnings when a storage scan's tags are not what the API says (none for API scans)."""
    check = getattr(source, "disagreements", None)
    if check is None:
        return []
    tags = [
        (scan.repository, tag, digest)
        for scan in scans
        for tag, digest in sorted(scan.tags.items())
    ]
    return list(check(tags))


def _check_untagged_source(policy: CompiledPolicy, registry: RegistrySettings) -> None:
    """A selector that asks for untagged manifests needs the storage: the API cannot list them."""
    if registry.storage is not None or not wants_untagged(policy):
        return
    index, label = next(
        (i, label)
        for i, (label, selector) in enumerate(policy.selectors)
        if getattr(selector, "considers_untagged", False)
    )
    raise ConfigError(
        f"policy.{policy.name}.selectors.{index}: {label!r} selects untagged manifests, which "
        f"only the registry's storage lists; set [registry.{policy.settings.registry}] storage "
        "to the registry's storage root (see docs/storage.md)"
    )


def images_by_time(scans: list[RepositoryScan]) -> list[Image]:
    images = [image for scan in scans for image in scan.images]
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(images, key=lambda image: (image.repository, image.time or oldest, image.digest))


def is_interactive() -> bool:
    return os.isatty(0) and os.isatty(1)
