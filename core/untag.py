"""Untag: remove a tag whose image stays (policy option ``untag = true``).

A selected image that is kept only because it shares its digest with a kept tag
keeps that digest; its tags no keep rule keeps are removed one by one (the planner
lists them, ``planner._untags``).  This module decides *how* (``untag_method``) and
does it at apply time (``Untagger``), after the plan's deletions:

- **3.x** (``tag_delete``): ``DELETE /v2/<name>/manifests/<tag>`` through the back
  end's ``delete_tag``.  A registry that refuses it (2.x answers 400) fails the item
  with that reason; regprune never falls back to a delete by digest.
- **2.x** (``overwrite``, only with ``untag_2x = "overwrite"``): the back end's
  ``untag_by_overwrite`` points the tag at a throwaway manifest unique to this removal
  and deletes that manifest by digest.  Its digest is recorded before the PUT, so an
  apply that stops in between finishes the job on resume.

Right before each removal the tag is resolved again (it must still name the planned
digest), the keep rules run again on the tag alone, and the digest must keep another
tag; otherwise the item is skipped with the reason.  Each outcome is written as it
happens (resumable, like delete items) and recorded in the audit log
(``untag.removed``, ``untag.skipped``, ``untag.failed``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from .config import PolicySettings
from .errors import ManifestNotFound, RegpruneError, UsageError
from .keep_rules import tag_verdicts
from .lifecycle import ITEM_FINISHED, ITEM_INTERRUPTED, DeleteAnswer, ItemStatus
from .models import (
    ApplyResult,
    Image,
    Plan,
    Protector,
    SelectionContext,
    UntagItem,
    UntagMethod,
    UntagOutcome,
)
from .registry import RegistryBackend, RegistryVersion, is_throwaway
from .state import State

KeepRule = tuple[str, str, Protector]
METHOD_CALLS: dict[str, str] = {"tag_delete": "delete_tag", "overwrite": "untag_by_overwrite"}
"""The back-end method each untag method needs."""


def untag_method(
    policy_name: str,
    policy: PolicySettings,
    version: RegistryVersion,
    backend: object | None = None,
) -> UntagMethod | None:
    """How ``policy`` untags on a registry of ``version``; None when it does not untag.

    ``UsageError`` (exit 2, nothing changed) when it cannot: Distribution 2.x without
    ``untag_2x = "overwrite"``, an unknown version, or a back end without the method.
    """
    if not policy.untag:
        return None
    where = f"policy.{policy_name}"
    registry = policy.registry
    method: UntagMethod
    if version.number == 3:
        method = "tag_delete"
    elif version.number == 2:
        if policy.untag_2x != "overwrite":
            raise UsageError(
                f"{where}: untag = true needs Distribution 3.x, and registry {registry} runs "
                f"Distribution 2.x ({version.source}: {version.evidence}), which cannot delete "
                f'a single tag; set untag_2x = "overwrite" in [{where}] to untag through a '
                "throwaway manifest (see docs/safety.md), or remove untag"
            )
        method = "overwrite"
    else:
        raise UsageError(
            f"{where}: untag = true needs the Distribution version of registry {registry}, "
            f"which is unknown ({version.evidence}); set [registry.{registry}] version = 3, "
            'or version = 2 with untag_2x = "overwrite"'
        )
    if backend is not None and not callable(getattr(backend, METHOD_CALLS[method], None)):
        raise UsageError(
            f"{where}: untag = true, but the back end of registry {registry} "
            f"({type(backend).__name__}) cannot remove a single tag (it has no "
            f"{METHOD_CALLS[method]}); remove untag from [{where}]"
        )
    return method


def check_configured(
    policy_name: str, policy: PolicySettings, version: Literal[2, 3] | None
) -> None:
    """Refuse, before any request, a policy that untags on a registry configured as 2.x
    without the opt-in."""
    if version is not None:
        untag_method(policy_name, policy, RegistryVersion(version, "configured", "configured"))


class Untagger:
    """Removes the untag items of one approved plan, re-checked, resumably."""

    def __init__(
        self,
        plan: Plan,
        *,
        state: State,
        client: RegistryBackend,
        keep_rules_for: Callable[[str], Sequence[KeepRule]],
        now: datetime,
        record: Callable[[str, UntagItem, str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.state = state
        self.client = client
        self.keep_rules_for = keep_rules_for
        self.now = now
        self.progress = record or (lambda status, item, reason: None)

    def pending(self) -> list[UntagItem]:
        statuses = self.state.plans.item_statuses(self.plan.id)
        return [item for item in self.plan.untag if statuses[item.seq][0] not in ITEM_FINISHED]

    def check_backend(self) -> None:
        """Refuse (nothing changed) when the back end cannot do the plan's untag method."""
        if not self.pending() or self.plan.untag_method is None:
            return
        call = METHOD_CALLS[self.plan.untag_method]
        if not callable(getattr(self.client, call, None)):
            raise UsageError(
                f"plan {self.plan.id} removes tags, but the back end of registry "
                f"{self.plan.registry} ({type(self.client).__name__}) cannot remove a single "
                f"tag (it has no {call}); nothing was changed; cancel the plan "
                f"(`regprune cancel {self.plan.id}`) and plan again without untag"
            )

    def preflight(self) -> None:
        """Before anything is changed: the 2.x method pushes, so prove a push would be
        accepted in every repository with a tag left to remove (a back end without
        ``check_push_allowed`` is not asked)."""
        if self.plan.untag_method != "overwrite":
            return
        check = getattr(self.client, "check_push_allowed", None)
        if not callable(check):
            return
        for repository in sorted({item.repository for item in self.pending()}):
            check(repository)

    def run(self, images: dict[tuple[str, str], Image], result: ApplyResult) -> None:
        """Remove each pending tag; ``images`` is the apply's fresh scan by
        ``(repository, digest)``.  A ``RegpruneError`` that would fail every tag the
        same way (auth, unreachable) is raised after the item is recorded."""
        from .apply import FATAL  # the same "stop, resume later" errors as deletions

        statuses = self.state.plans.item_statuses(self.plan.id)
        todo = [item for item in self.plan.untag if statuses[item.seq][0] not in ITEM_FINISHED]
        if not todo:
            return
        kept_now = self._kept_now(todo, images)
        removing = {(item.repository, item.tag) for item in todo}
        for item in todo:
            prior, note = statuses[item.seq]
            try:
                answer = self._untag_one(item, prior, note, images, kept_now, removing)
            except RegpruneError as exc:
                self._settle(result, item, ItemStatus.FAILED, exc.message)
                if isinstance(exc, FATAL):
                    raise
                continue
            status, why = answer
            if status == ItemStatus.DELETED:
                removing.discard((item.repository, item.tag))
            self._settle(result, item, status, why)

    def _untag_one(
        self,
        item: UntagItem,
        prior: str,
        note: str,
        images: dict[tuple[str, str], Image],
        kept_now: dict[tuple[str, str, str], str],
        removing: set[tuple[str, str]],
    ) -> tuple[ItemStatus, str]:
        """Check one tag right before removing it, then remove it: its outcome."""
        reason = kept_now.get((item.repository, item.digest, item.tag))
        if reason:
            return ItemStatus.SKIPPED, f"kept at apply time: {reason}"
        now = self.client.head_manifest(item.repository, item.tag)
        interrupted = prior in ITEM_INTERRUPTED
        if interrupted and self.plan.untag_method == "overwrite" and now not in (None, item.digest):
            finished = self._finish_overwrite(item, now)
            if finished is not None:
                return finished
        if now is None:
            if interrupted:
                return ItemStatus.DELETED, "already gone"
            return ItemStatus.SKIPPED, "tag changed since the plan: it no longer exists"
        if now != item.digest:
            return (
                ItemStatus.SKIPPED,
                f"tag changed since the plan: it now points to {now[:19]}, planned "
                f"{item.digest[:19]}",
            )
        if not self._another_tag_stays(item, images, removing):
            return (
                ItemStatus.SKIPPED,
                f"no tag that stays points to {item.digest[:19]} any more; removing "
                f"'{item.tag}' would leave the image untagged",
            )
        self.state.plans.set_item_status(self.plan.id, item.seq, ItemStatus.DELETING)
        if self.plan.untag_method == "overwrite":

            def started(throwaway: str) -> None:
                # Recorded before the PUT: a resumed apply deletes this digest, nothing else.
                self.state.plans.set_item_status(
                    self.plan.id, item.seq, ItemStatus.DELETING, throwaway
                )

            remove = getattr(self.client, METHOD_CALLS["overwrite"])
            answer = remove(item.repository, item.tag, started=started)
        else:
            remove = getattr(self.client, METHOD_CALLS["tag_delete"])
            answer = remove(item.repository, item.tag)
        if answer not in tuple(DeleteAnswer):
            answers = " or ".join(repr(str(known)) for known in DeleteAnswer)
            raise RegpruneError(
                f"the back end answered {answer!r} to the removal of {item.repository}:"
                f"{item.tag}, not {answers}"
            )
        return ItemStatus.DELETED, "already gone" if answer == DeleteAnswer.ABSENT else ""

    def _finish_overwrite(self, item: UntagItem, now: str | None) -> tuple[ItemStatus, str] | None:
        """Stopped between the PUT and the DELETE: when the tag names the throwaway this
        removal made (recognized by its annotation), delete it by digest to finish."""
        try:
            manifest = self.client.get_manifest(item.repository, item.tag)
        except ManifestNotFound:
            return None
        if manifest.digest != now or not is_throwaway(manifest.data, item.repository, item.tag):
            return None  # someone else's push: the re-check below skips it as changed
        self.client.delete_manifest(item.repository, manifest.digest)
        return ItemStatus.DELETED, f"finished after an interruption (throwaway {now[:19]})"

    def _another_tag_stays(
        self,
        item: UntagItem,
        images: dict[tuple[str, str], Image],
        removing: set[tuple[str, str]],
    ) -> bool:
        """Whether a tag this plan does not remove still names the digest (resolved now)."""
        image = images.get((item.repository, item.digest))
        others = [
            tag
            for tag in (image.tags if image is not None else [])
            if tag != item.tag and (item.repository, tag) not in removing
        ]
        return any(self.client.head_manifest(item.repository, tag) == item.digest for tag in others)

    # --- the checks ------------------------------------------------------------------

    def _kept_now(
        self, todo: Sequence[UntagItem], images: dict[tuple[str, str], Image]
    ) -> dict[tuple[str, str, str], str]:
        """Keep rules again, on each tag alone, with the registry as it is now."""
        kept: dict[tuple[str, str, str], str] = {}
        for repository in sorted({item.repository for item in todo}):
            rules = list(self.keep_rules_for(repository))
            views = [
                Image(repository, item.digest, [item.tag], image.facts, list(image.children))
                for item in todo
                if item.repository == repository
                and (image := images.get((repository, item.digest))) is not None
            ]
            if not rules or not views:
                continue
            context = SelectionContext(
                now=self.now,
                registry=self.plan.registry,
                repository=repository,
                policy=self.plan.policy,
            )
            # The repository as it is now: a rule that ranks tags ranks each among them.
            others = [image for (repo, _), image in images.items() if repo == repository]
            # One view per call: the same digest may carry several tags being removed.
            for view in views:
                answer = tag_verdicts([view], rules, context, self.plan.policy, others=others)
                for (digest, tag), reasons in answer.items():
                    kept[(repository, digest, tag)] = "; ".join(reasons)
        return kept

    def _settle(self, result: ApplyResult, item: UntagItem, status: ItemStatus, why: str) -> None:
        """The outcome first (what resume trusts), then the audit log, then progress."""
        self.state.plans.set_item_status(self.plan.id, item.seq, status, why)
        result.untag_outcomes.append(UntagOutcome(item, status, why))
        event = {
            ItemStatus.DELETED: "untag.removed",
            ItemStatus.SKIPPED: "untag.skipped",
        }.get(status, "untag.failed")
        details = {**item.to_dict(), "method": self.plan.untag_method}
        if why:
            details["error" if status == ItemStatus.FAILED else "reason"] = why
        self.state.audit_log.record(
            event, registry=self.plan.registry, plan_id=self.plan.id, details=details
        )
        self.progress(status, item, why)
