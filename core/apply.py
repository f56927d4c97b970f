"""Delete exactly what an approved plan lists, re-checked against the registry first.

Before deleting, every tag of each affected repository is resolved again.  An item
is skipped, with the reason, when:
- its tags differ from the plan (a tag was pushed onto it, moved away, or a kept
  tag now points to it) — so a tag pushed after planning is never lost;
- a manifest that is not being deleted (e.g. an index pushed after the plan) now
  references it;
- it is a platform child or an artifact whose index or subject was not deleted.
Each outcome is written to the state DB as it happens, so a second apply of the
same plan finishes the rest and repeats nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pluggy

from .errors import (
    AuthenticationFailed,
    DeletesDisabled,
    ManifestNotFound,
    MissingScope,
    RegistryUnreachable,
    RegpruneError,
)
from .manifests import facts_from_manifest
from .models import ApplyResult, ItemOutcome, ManifestFacts, Plan, PlanItem
from .registry import RegistryClient
from .state import State

# Errors that would fail every remaining item the same way: stop and let a re-run resume.
FATAL = (DeletesDisabled, MissingScope, AuthenticationFailed, RegistryUnreachable)
FINAL_STATUSES = ("deleted", "skipped")
HEARTBEAT_EVERY = 25

Progress = Callable[[PlanItem, str, str], None]


@dataclass
class CurrentRepository:
    """A repository as it is right now: tags, and who references which manifest."""

    tags_of: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    facts: dict[str, ManifestFacts] = field(default_factory=dict)

    owners: dict[str, list[str]] = field(default_factory=dict)

    def referencing(self, digest: str, gone: set[str]) -> str | None:
        """A tagged manifest, not in ``gone``, that lists ``digest`` as a child."""
        return next((owner for owner in self.owners.get(digest, ()) if owner not in gone), None)


def resolve_current(client: RegistryClient, state: State, repository: str) -> CurrentRepository:
    """Resolve every tag of a repository again (one HEAD per tag) and the facts of new digests."""
    current = CurrentRepository()
    tags = client.tags(repository)
    digests = client.map(lambda tag: client.head_manifest(repository, tag), tags)
    for tag, digest in zip(tags, digests, strict=True):
        if digest:
            current.tags_of[digest].add(tag)
    known = state.get_facts(current.tags_of)
    unknown = sorted(set(current.tags_of) - set(known))

    def fetch(digest: str) -> ManifestFacts | None:
        try:
            manifest = client.get_manifest(repository, digest)
        except ManifestNotFound:
            return None
        return facts_from_manifest(
            manifest.digest, manifest.media_type, manifest.content, manifest.data
        )

    fetched = [facts for facts in client.map(fetch, unknown) if facts is not None]
    current.facts = {**known, **{facts.digest: facts for facts in fetched}}
    for owner, facts in current.facts.items():
        for child in facts.children:
            current.owners.setdefault(child, []).append(owner)
    return current


class Applier:
    """Runs the deletions of one approved plan; safe to run again after a crash."""

    def __init__(
        self,
        plan: Plan,
        *,
        state: State,
        manager: pluggy.PluginManager,
        client: RegistryClient,
        lock_name: str,
        progress: Progress | None = None,
    ) -> None:
        self.plan = plan
        self.state = state
        self.manager = manager
        self.client = client
        self.lock_name = lock_name
        self.progress = progress or (lambda item, status, reason: None)

    def preflight(self, repositories: Iterable[str]) -> None:
        """Refuse before deleting anything when deletes are disabled or the scope is missing."""
        for repository in sorted(set(repositories)):
            self.client.check_delete_allowed(repository)

    def pending_items(self) -> list[PlanItem]:
        statuses = self.state.item_statuses(self.plan.id)
        return [item for item in self.plan.delete if statuses[item.seq][0] not in FINAL_STATUSES]

    def run(self) -> ApplyResult:
        statuses = self.state.item_statuses(self.plan.id)
        todo = [item for item in self.plan.delete if statuses[item.seq][0] not in FINAL_STATUSES]
        deleted = {item.digest for item in self.plan.delete if statuses[item.seq][0] == "deleted"}
        current = {
            repo: resolve_current(self.client, self.state, repo)
            for repo in sorted({i.repository for i in todo})
        }
        result = ApplyResult(plan_id=self.plan.id, status="applying")
        for count, item in enumerate(self._ordered(todo), start=1):
            prior = statuses[item.seq][0]
            reason = self._skip_reason(item, prior, current[item.repository], deleted)
            if reason:
                self._record(result, item, "skipped", reason)
                self.manager.hook.item_skipped(
                    plan=self.plan, item=item, reason=reason, state=self.state
                )
                continue
            self.state.set_item_status(self.plan.id, item.seq, "deleting")
            try:
                outcome = self.manager.hook.delete_manifest(
                    client=self.client, repository=item.repository, digest=item.digest
                )
            except RegpruneError as exc:
                self._record(result, item, "failed", exc.message)
                self.manager.hook.item_failed(
                    plan=self.plan, item=item, error=exc.message, state=self.state
                )
                if isinstance(exc, FATAL):
                    raise
                continue
            note = "already gone" if outcome == "absent" else ""
            deleted.add(item.digest)
            self._record(result, item, "deleted", note)
            self.manager.hook.item_deleted(plan=self.plan, item=item, state=self.state)
            if count % HEARTBEAT_EVERY == 0:
                self.state.heartbeat(self.lock_name)
        return result

    def _ordered(self, todo: list[PlanItem]) -> list[PlanItem]:
        """Referencing manifests before what they reference: an index before its platform
        manifests, a subject before its artifacts.  A failure part-way then never leaves an
        index pointing at a deleted manifest."""
        facts = self.state.get_facts(item.digest for item in todo)
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

    def _record(self, result: ApplyResult, item: PlanItem, status: str, reason: str) -> None:
        self.state.set_item_status(self.plan.id, item.seq, status, reason)
        result.outcomes.append(ItemOutcome(item, status, reason))  # type: ignore[arg-type]
        self.progress(item, status, reason)

    def _skip_reason(
        self,
        item: PlanItem,
        prior: str,
        current: CurrentRepository,
        deleted: set[str],
    ) -> str | None:
        now_tags = current.tags_of.get(item.digest, set())
        if item.role != "image" and item.parent not in deleted:
            owner = "index" if item.role == "child" else "subject"
            return f"its {owner} {item.parent[:19] if item.parent else '?'} was not deleted"
        if set(item.tags) != now_tags:
            resumed = prior in ("deleting", "failed") and not now_tags
            if not resumed:
                return (
                    f"tags changed since the plan: now {sorted(now_tags) or 'untagged'}, "
                    f"planned {sorted(item.tags) or 'untagged'}"
                )
        # Only manifests already deleted stop counting: an index that is still there keeps
        # everything it lists, whether or not the plan meant to delete it later.
        owner = current.referencing(item.digest, deleted)
        if owner:
            return f"referenced by manifest {owner[:19]}, which is not deleted"
        return None
