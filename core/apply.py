"""Delete exactly what an approved plan lists, re-checked against the registry first.

At the start of an apply every affected repository is scanned again (one request
per tag with a warm cache) and the keep rules run again on what it holds now: the
plan's own rules as stored with it, and those of every configured policy covering
the repository.  Then, right before each DELETE, the item is checked once more
against the registry (:meth:`LiveRepository.recheck`): the repository's tag list is
read again, its own tags and every tag new since the snapshot are resolved, and
the manifests they name are read.  An item is skipped, with the reason, when:
- its tags differ from the plan (a tag was pushed onto it, moved away, or a kept
  tag now points to it) — so a tag pushed after planning is never lost;
- a manifest that is not being deleted (an index, or a signature or other
  referrer pushed after the plan) now references it;
- a keep rule keeps it now (an image that became deployed while the plan waited
  for approval), or keeps one of its artifacts;
- where the registry serves the referrers API, a referrer of it (or of an
  artifact going with it) that the plan does not delete is listed now;
- it is a platform child or an artifact whose index or subject was not deleted.
Each outcome is written to the state DB as it happens, so a second apply of the
same plan finishes the rest and repeats nothing.

The window that remains (see docs/safety.md): a push that lands between the last
re-check and the DELETE, about one round trip; and an *existing* tag moved onto a
planned digest, which is caught by the per-item check only for the item's own tags
and otherwise by a full re-resolution of the repository at most
``FULL_RECHECK_AFTER`` seconds old.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import pluggy

from .config import RegistrySettings
from .errors import (
    AuthenticationFailed,
    DeletesDisabled,
    ManifestNotFound,
    MissingScope,
    RegistryUnreachable,
    RegpruneError,
)
from .hookcalls import PluginError, first_result, notify_event
from .keep_rules import keep_verdicts
from .lifecycle import ITEM_FINISHED, ITEM_INTERRUPTED, DeleteAnswer, ItemStatus, PlanStatus
from .manifests import facts_from_manifest
from .mediatypes import artifact_subject
from .models import (
    ApplyResult,
    Image,
    ItemOutcome,
    ManifestFacts,
    Plan,
    PlanItem,
    Protector,
    SelectionContext,
)
from .registry import RegistryBackend, referrers_of
from .scan import RepositoryScan, Scanner
from .state import State
from .timing import aware
from .untag import Untagger

# Errors that would fail every remaining item the same way: stop and let a re-run resume.
FATAL = (DeletesDisabled, MissingScope, AuthenticationFailed, RegistryUnreachable, PluginError)
FINAL_STATUSES = ITEM_FINISHED
DELETE_ANSWERS = tuple(DeleteAnswer)
_ANSWERS = " or ".join(repr(str(answer)) for answer in DeleteAnswer)
HEARTBEAT_EVERY = 25
# Tags that existed at the snapshot are resolved again per item only when they are the
# item's own; every other tag is resolved again when the snapshot is this old.
FULL_RECHECK_AFTER = 30.0

Progress = Callable[[PlanItem, str, str], None]
KeepRule = tuple[str, str, Protector]  # (label, owning plugin, protector)
KeepRulesFor = Callable[[str], Sequence[KeepRule]]


class LiveRepository:
    """One repository as the registry holds it now, kept current item by item."""

    def __init__(
        self,
        client: RegistryBackend,
        repository: str,
        scan: RepositoryScan,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.repository = repository
        self.tag_digest: dict[str, str] = dict(scan.tags)
        self.facts: dict[str, ManifestFacts] = dict(scan.manifests)
        self._clock = clock
        self.resolved_at = clock()

    def tags_of(self, digest: str) -> set[str]:
        return {tag for tag, target in self.tag_digest.items() if target == digest}

    def references(self, digest: str) -> list[str]:
        """Tagged manifests that reference ``digest``: indexes listing it, and artifacts
        whose ``subject`` (or cosign-style tag) names it."""
        found: list[str] = []
        for tag, owner in self.tag_digest.items():
            if owner == digest:
                continue
            facts = self.facts.get(owner)
            if (facts is not None and (digest in facts.children or facts.subject == digest)) or (
                artifact_subject(tag) == digest
            ):
                found.append(owner)
        return sorted(set(found))

    def recheck(self, own_tags: Iterable[str]) -> None:
        """Read the tag list again and resolve ``own_tags`` and every new tag (all tags
        once the snapshot is older than ``FULL_RECHECK_AFTER``)."""
        listed = self.client.tags(self.repository)
        current = set(listed)
        if self._clock() - self.resolved_at >= FULL_RECHECK_AFTER:
            wanted = sorted(current)
            self.resolved_at = self._clock()
        else:
            wanted = sorted((current - set(self.tag_digest)) | (set(own_tags) & current))
        for gone in set(self.tag_digest) - current:
            del self.tag_digest[gone]
        digests = self.client.map(
            lambda tag: self.client.head_manifest(self.repository, tag), wanted
        )
        for tag, digest in zip(wanted, digests, strict=True):
            if digest is None:
                self.tag_digest.pop(tag, None)
            else:
                self.tag_digest[tag] = digest
        unknown = sorted({d for d in self.tag_digest.values() if d not in self.facts})
        for facts in self.client.map(self._fetch, unknown):
            if facts is not None:
                self.facts[facts.digest] = facts

    def _fetch(self, digest: str) -> ManifestFacts | None:
        try:
            manifest = self.client.get_manifest(self.repository, digest)
        except ManifestNotFound:
            return None
        return facts_from_manifest(
            manifest.digest, manifest.media_type, manifest.content, manifest.data
        )


class Applier:
    """Runs the deletions of one approved plan; safe to run again after a crash."""

    def __init__(
        self,
        plan: Plan,
        *,
        state: State,
        manager: pluggy.PluginManager,
        client: RegistryBackend,
        lock_name: str,
        registry_settings: RegistrySettings | None = None,
        progress: Progress | None = None,
        keep_rules_for: KeepRulesFor | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.plan = plan
        self.state = state
        self.manager = manager
        self.client = client
        self.lock_name = lock_name
        # What the delete_manifest hook is told about the registry (quick mode: the URL).
        self.registry_settings = registry_settings or RegistrySettings(url=plan.registry_url)
        self.progress = progress or (lambda item, status, reason: None)
        self.keep_rules_for = keep_rules_for or (lambda repository: ())
        self._now = now
        self._skipped: set[tuple[str, str]] = set()
        self._prepared: tuple[dict[str, LiveRepository], dict] | None = None
        # The fresh scan's images by (repository, digest): untag re-checks against them.
        self._images: dict[tuple[str, str], Image] = {}
        self.untagger = Untagger(
            plan,
            state=state,
            client=client,
            keep_rules_for=self.keep_rules_for,
            now=self._now() if self._now else datetime.now(UTC),
        )

    def preflight(self, repositories: Iterable[str]) -> None:
        """Refuse before deleting anything when deletes are disabled or the scope is
        missing: the back end proves it its own way (Distribution: a zero-digest DELETE,
        and for a 2.x untag a cancelled blob upload)."""
        self.client.preflight(sorted(set(repositories)))
        self.untagger.preflight()  # the 2.x untag pushes: prove it may, changing nothing

    def pending_items(self) -> list[PlanItem]:
        statuses = self.state.plans.item_statuses(self.plan.id)
        return [item for item in self.plan.delete if statuses[item.seq][0] not in FINAL_STATUSES]

    def pending_repositories(self) -> list[str]:
        """Every repository where a delete or an untag is left to do."""
        return sorted(
            {item.repository for item in self.pending_items()}
            | {item.repository for item in self.untagger.pending()}
        )

    def prepare(self) -> None:
        """Take the snapshot the next ``run`` uses (see ``snapshot``); it may raise, and
        then nothing has been deleted.  A back end that cannot untag is refused here."""
        self.untagger.check_backend()
        self._prepared = self.snapshot(self.pending_repositories())

    def snapshot(self, repositories: Sequence[str]) -> tuple[dict[str, LiveRepository], dict]:
        """Scan the repositories again and run every keep rule on what they hold now.

        Returns the live views and ``{(repository, digest): reason}`` of what keep rules
        keep now.  A keep rule that fails stops the apply here, before any deletion.
        """
        now = self._now() if self._now else datetime.now(UTC)
        scanner = Scanner(self.client, self.state, self.plan.registry, now)
        scans = scanner.scan(list(repositories))
        live = {
            scan.repository: LiveRepository(self.client, scan.repository, scan) for scan in scans
        }
        self._images = {
            (scan.repository, image.digest): image for scan in scans for image in scan.images
        }
        kept: dict[tuple[str, str], str] = {}
        for scan in scans:
            rules = list(self.keep_rules_for(scan.repository))
            if not rules:
                continue
            context = SelectionContext(
                now=now,
                registry=self.plan.registry,
                repository=scan.repository,
                policy=self.plan.policy,
            )
            images = [*scan.images, *scan.orphan_artifacts, *self._untagged(scan.repository)]
            for digest, reasons in keep_verdicts(images, rules, context, self.plan.policy).items():
                kept[(scan.repository, digest)] = "; ".join(reasons)
        return live, kept

    def _untagged(self, repository: str) -> list[Image]:
        """The plan's untagged manifests in ``repository`` (no API scan reaches them):
        referrers, and untagged images from a storage scan with their platform
        manifests, as images for the keep rules, from their cached facts."""
        items = [
            item for item in self.plan.delete if item.repository == repository and not item.tags
        ]
        facts = self.state.digests.get_facts(item.digest for item in items)
        return [
            Image(repository=repository, digest=item.digest, tags=[], facts=facts[item.digest])
            for item in items
            if item.digest in facts
        ]

    def run(self) -> ApplyResult:
        statuses = self.state.plans.item_statuses(self.plan.id)
        todo = [item for item in self.plan.delete if statuses[item.seq][0] not in FINAL_STATUSES]
        deleted = {
            (item.repository, item.digest)
            for item in self.plan.delete
            if statuses[item.seq][0] == ItemStatus.DELETED
        }
        result = ApplyResult(plan_id=self.plan.id, status=PlanStatus.APPLYING)
        if not todo and not self.untagger.pending():
            return result
        if self._prepared is None:
            self.prepare()
        assert self._prepared is not None
        live, kept = self._prepared
        self._prepared = None  # a snapshot serves one run
        self._delete_items(todo, statuses, live, kept, deleted, result)
        # Untags last: they touch only digests the plan keeps, so the deletions' re-checks
        # never see a tag mid-removal, and the space-freeing part is done first.
        self.untagger.run(self._images, result)
        return result

    def _delete_items(
        self,
        todo: list[PlanItem],
        statuses: dict[int, tuple[str, str]],
        live: dict[str, LiveRepository],
        kept: dict,
        deleted: set[tuple[str, str]],
        result: ApplyResult,
    ) -> None:
        for count, item in enumerate(self._ordered(todo), start=1):
            prior = statuses[item.seq][0]
            reason = self._skip_reason(item, prior, live[item.repository], kept, deleted)
            if reason:
                self._skipped.add((item.repository, item.digest))
                self._record(
                    result, item, ItemStatus.SKIPPED, reason, "item_skipped", reason=reason
                )
                continue
            self.state.plans.set_item_status(self.plan.id, item.seq, ItemStatus.DELETING)
            try:
                outcome = self._delete(item)
            except RegpruneError as exc:
                self._record(
                    result, item, ItemStatus.FAILED, exc.message, "item_failed", error=exc.message
                )
                if isinstance(exc, FATAL):
                    raise
                continue
            note = "already gone" if outcome == DeleteAnswer.ABSENT else ""
            deleted.add((item.repository, item.digest))
            self._record(result, item, ItemStatus.DELETED, note, "item_deleted")
            if count % HEARTBEAT_EVERY == 0:
                self.state.locks.heartbeat(self.lock_name)

    def _delete(self, item: PlanItem) -> str:
        """Ask the deleter plugins; an answer other than "deleted"/"absent" is a plugin error."""
        plugin, outcome = first_result(
            self.manager,
            "delete_manifest",
            client=self.client,
            repository=item.repository,
            digest=item.digest,
            registry=self.plan.registry,
            settings=self.registry_settings,
        )
        if outcome not in DELETE_ANSWERS:
            who = plugin or "none"
            raise PluginError(
                f"plugin {who} failed in delete_manifest: it answered {outcome!r} for "
                f"{item.repository}@{item.digest[:19]}, not {_ANSWERS}; the item is "
                "left to retry (`regprune apply PLAN_ID`) or the plan can be cancelled"
            )
        return str(outcome)

    def _ordered(self, todo: list[PlanItem]) -> list[PlanItem]:
        """Referencing manifests before what they reference: an index before its platform
        manifests, a subject before its artifacts.  A failure part-way then never leaves an
        index pointing at a deleted manifest."""
        facts = self.state.digests.get_facts(item.digest for item in todo)
        keyed = {(item.repository, item.digest): item for item in todo}
        before: dict[int, set[int]] = {item.seq: set() for item in todo}
        for item in todo:
            for child in facts[item.digest].children if item.digest in facts else ():
                target = keyed.get((item.repository, child))
                if target is not None and target.seq != item.seq:
                    before[target.seq].add(item.seq)
            parent = keyed.get((item.repository, item.parent or ""))
            if parent is not None:
                before[item.seq].add(parent.seq)
        ordered: list[PlanItem] = []
        placed: set[int] = set()
        remaining = sorted(todo, key=lambda item: item.seq)
        while remaining:
            ready = [item for item in remaining if before[item.seq] <= placed]
            if not ready:  # a reference cycle cannot happen with content addressing; be safe
                ready = remaining[:1]
            for item in ready:
                placed.add(item.seq)
                ordered.append(item)
            remaining = [item for item in remaining if item.seq not in placed]
        return ordered

    def _record(
        self,
        result: ApplyResult,
        item: PlanItem,
        status: ItemStatus,
        note: str,
        hook: str,
        **extra: str,
    ) -> None:
        """Settle one item: its outcome (``note`` says why), then the event hook ``hook``
        (with ``extra``), then progress."""
        # The outcome first (what resume trusts), then the event hooks (the audit log);
        # progress last, so a Ctrl-C there loses no record.
        self.state.plans.set_item_status(self.plan.id, item.seq, status, note)
        result.outcomes.append(ItemOutcome(item, status, note))
        notify_event(self.manager, hook, self.state, plan=self.plan, item=item, **extra)
        self.progress(item, status, note)

    def _group(self, item: PlanItem) -> list[PlanItem]:
        """An image and the artifacts the plan deletes with it (checked together, since
        the image goes first)."""
        if item.role != "image":
            return [item]
        return [item] + [
            other
            for other in self.plan.delete
            if other.role == "artifact"
            and other.parent == item.digest
            and other.repository == item.repository
        ]

    def _skip_reason(
        self,
        item: PlanItem,
        prior: str,
        live: LiveRepository,
        kept: dict[tuple[str, str], str],
        deleted: set[tuple[str, str]],
    ) -> str | None:
        if item.role != "image" and (item.repository, item.parent) not in deleted:
            owner = "index" if item.role == "child" else "subject"
            return f"its {owner} {item.parent[:19] if item.parent else '?'} was not deleted"
        group = self._group(item)
        for member in group:
            reason = kept.get((member.repository, member.digest))
            if reason:
                what = "" if member is item else f"its artifact {member.digest[:19]}: "
                return f"kept at apply time: {what}{reason}"
        pulled = self._pulled_since_plan(item, group)
        if pulled:
            return pulled
        live.recheck(tag for member in group for tag in member.tags)
        for member in group:
            now_tags = live.tags_of(member.digest)
            if set(member.tags) != now_tags:
                resumed = member is item and prior in ITEM_INTERRUPTED and not now_tags
                if not resumed:
                    what = "" if member is item else f"its artifact {member.digest[:19]}: "
                    return (
                        f"{what}tags changed since the plan: now {sorted(now_tags) or 'untagged'}, "
                        f"planned {sorted(member.tags) or 'untagged'}"
                    )
        # Artifacts the plan deletes right after their subject (this item, or the index
        # just deleted) do not count; every other manifest still there keeps what it
        # references, whether or not the plan means to delete it later.
        going = {
            other.digest
            for other in self.plan.delete
            if other.role == "artifact"
            and other.repository == item.repository
            and (other.parent == item.digest or (item.repository, other.parent) in deleted)
            and (item.repository, other.digest) not in self._skipped
        }
        for owner in live.references(item.digest):
            if (item.repository, owner) in deleted or owner in going:
                continue
            return f"referenced by manifest {owner[:19]}, which is not deleted"
        return self._unplanned_referrer(item, group)

    def _pulled_since_plan(self, item: PlanItem, group: Sequence[PlanItem]) -> str | None:
        """A pull ``regprune listen`` recorded after the plan was made, of the item, an
        artifact going with it or one of its platform manifests: someone uses it now."""
        digests = [member.digest for member in group] + [
            other.digest
            for other in self.plan.delete
            if other.role == "child"
            and other.parent == item.digest
            and other.repository == item.repository
        ]
        recorded = self.state.usage.get(self.plan.registry, item.repository, digests)
        since = aware(self.plan.created_at)
        for digest in digests:
            usage = recorded.get(digest)
            if usage is None or usage.last_pull is None or aware(usage.last_pull) <= since:
                continue
            by = f" by {usage.last_client}" if usage.last_client else ""
            what = "" if digest == item.digest else f" (its manifest {digest[:19]})"
            return f"pulled since the plan was made{what}{by}, at {usage.last_pull:%Y-%m-%d %H:%M}"
        return None

    def _unplanned_referrer(self, item: PlanItem, group: Sequence[PlanItem]) -> str | None:
        """Ask the referrers API again about the item and the artifacts going with it:
        a referrer the plan does not delete (pushed since the plan, or skipped) keeps it.
        Free where the API is not served (asked once per run, then never)."""
        planned = {
            other.digest
            for other in self.plan.delete
            if other.repository == item.repository
            and (other.repository, other.digest) not in self._skipped
        }
        subjects = [member.digest for member in group]
        answers = self.client.map(
            lambda digest: referrers_of(self.client, item.repository, digest), subjects
        )
        for subject, answer in zip(subjects, answers, strict=True):
            for descriptor in answer or ():
                if descriptor.digest not in planned:
                    whose = "its" if subject == item.digest else f"its artifact {subject[:19]}'s"
                    return (
                        f"{whose} referrer {descriptor.digest[:19]} is not in the plan (pushed "
                        "since?); it would be left without its subject"
                    )
        return None
