"""Decide what a policy deletes and keeps, and why: select → protect → plan.

Rules enforced here (each has a test in tests/test_safety.py):
- an image is a candidate only when every selector of the policy selects it;
- any keep rule of any policy covering the repository vetoes it, and the veto
  covers every tag of the digest ("shares digest with kept tag");
- a tag outside the policy's ``tags`` filter keeps the digest it points to;
- a platform manifest is deleted only with its index and only when no remaining
  index references it; a candidate that a kept index references is kept;
- signature/attestation artifacts go with their subject and never count toward
  ``keep``; artifacts whose subject is gone are left alone;
- untagged referrers of a candidate (the referrers API, tests/test_referrers.py) go
  with it, and one a keep rule keeps keeps it;
- untagged manifests (storage scans) are shown only to a policy with a selector that
  asks for them (``considers_untagged``, the ``untagged`` selector), are never an index's
  platform manifest or a referrer of what stays, and an untagged index that stays keeps
  its platform manifests as a tagged one does (tests/test_untagged.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from .config import PolicySettings
from .errors import ConfigError, ConfigProblems, UsageError
from .keep_rules import ask_plugin, keep_rules_spec, keep_verdicts, tag_verdicts

# Still importable from the planner, where it lived before core/keep_rules.py.
from .keep_rules import compile_keep_rules as compile_keep_rules
from .mediatypes import artifact_subject
from .models import (
    Blob,
    Coverage,
    Image,
    KeepItem,
    ManifestFacts,
    Plan,
    PlanItem,
    PlanSummary,
    Protector,
    Role,
    SelectionContext,
    Selector,
    UntagItem,
)
from .patterns import Pattern, compile_pattern
from .plugin_manager import Catalog
from .plugin_settings import approver_options
from .scan import RepositoryScan, match_repositories
from .timing import check_time_sources, resolve_time


@dataclass
class CompiledPolicy:
    """A policy with its selectors and keep rules built from the plugin catalog."""

    name: str
    settings: PolicySettings
    selectors: list[tuple[str, Selector]]
    protectors: list[tuple[str, Protector]]
    tag_filter: Pattern | None
    # label of a selector or keep rule -> the plugin that registered it (for errors).
    owners: dict[str, str] = field(default_factory=dict)

    def covers(self, repository: str) -> bool:
        return bool(
            match_repositories([repository], self.settings.repositories, self.settings.exclude)
        )


def compile_policy(name: str, policy: PolicySettings, catalog: Catalog) -> CompiledPolicy:
    """Build a policy's plugins.  Every bad selector name or option (and keep rule,
    approval, time source) is found, not just the first: a ``ConfigProblems`` naming
    each key, one line each."""
    where = f"policy.{name}"
    problems: list[str] = []

    def build(kind: str, use: str, options: Any, key: str) -> Any:
        try:
            return catalog.build(kind, use, options, key)
        except ConfigError as exc:
            problems.extend(exc.problems if isinstance(exc, ConfigProblems) else [exc.message])
            return None

    selectors = [
        (spec.use, build("selector", spec.use, spec.options, f"{where}.selectors.{index}"))
        for index, spec in enumerate(policy.selectors)
    ]
    protectors: list[tuple[str, Protector]] = []
    if policy.keep_tags:
        keep = build("protector", "tags", {"patterns": policy.keep_tags}, f"{where}.keep_tags")
        protectors.append(("keep_tags", keep))
    for index, spec in enumerate(policy.protectors):
        protectors.append(
            (spec.use, build("protector", spec.use, spec.options, f"{where}.protectors.{index}"))
        )
    if policy.approval not in catalog.approvers:
        known = ", ".join(sorted(catalog.approvers))
        problems.append(
            f"{where}.approval: unknown approval {policy.approval!r} (available: {known})"
        )
    else:
        try:
            approver_options(
                catalog.approvers[policy.approval], policy.approval_options, f"{where}.approval"
            )
        except ConfigError as exc:
            problems.append(exc.message)
    try:
        check_time_sources(policy.time_source, catalog.time_sources, f"{where}.time_source")
    except ConfigError as exc:
        problems.append(exc.message)
    if problems:
        raise ConfigProblems(problems)
    tag_filter = compile_pattern(policy.tags) if policy.tags else None
    owners = {label: catalog.owner("selector", label) for label, _ in selectors}
    owners.update(
        {
            label: catalog.owner("protector", "tags" if label == "keep_tags" else label)
            for label, _ in protectors
        }
    )
    return CompiledPolicy(name, policy, selectors, protectors, tag_filter, owners)


@dataclass
class RepositoryDecision:
    """The outcome for one repository: images to delete (with reasons) and to keep."""

    repository: str
    delete: list[tuple[Image, list[str]]] = field(default_factory=list)
    keep: list[tuple[Image, list[str]]] = field(default_factory=list)
    child_items: dict[str, list[ManifestFacts]] = field(default_factory=dict)
    # (image, tag, reasons): tags removed while the image stays (policy option ``untag``).
    untag: list[tuple[Image, str, list[str]]] = field(default_factory=list)


def assign_times(
    images: Sequence[Image], time_sources: Sequence[str], catalog: Catalog, now: datetime
) -> None:
    for image in images:
        image.time, image.time_source, image.time_note = resolve_time(
            image, time_sources, catalog.time_sources, now
        )


FindReferrers = Callable[[RepositoryScan, Sequence[Image]], Sequence[Image]]
"""``find(scan, images)``: attach the untagged referrers of ``images`` (see core/referrers.py)."""


def decide_repository(
    scan: RepositoryScan,
    policy: CompiledPolicy,
    keepers: Sequence[tuple[str, str, Protector]],
    context: SelectionContext,
    find_referrers: FindReferrers | None = None,
) -> RepositoryDecision:
    """Apply selectors and keep rules to one repository's images.

    ``find_referrers`` is asked about the candidates only: their untagged referrers
    go with them, and a referrer a keep rule keeps keeps its image.
    """
    decision = RepositoryDecision(scan.repository)
    considered: list[Image] = []
    protected: dict[str, list[str]] = {}
    if scan.untagged and wants_untagged(policy):
        considered.extend(scan.untagged)
        for digest, reason in scan.untagged_kept.items():
            protected.setdefault(digest, []).append(reason)
    for image in scan.images:
        if policy.tag_filter is None:
            considered.append(image)
            continue
        inside = [tag for tag in image.tags if policy.tag_filter.search(tag)]
        if not inside:
            continue  # not this policy's business
        considered.append(image)
        outside = [tag for tag in image.tags if tag not in inside]
        if outside:
            protected.setdefault(image.digest, []).append(
                f"shares digest with tag '{outside[0]}', which this policy's tags filter does not cover"
            )

    own_rules = [("", policy.owners.get(label, "unknown"), p) for label, p in policy.protectors]
    for digest, reasons in keep_verdicts(
        considered, [*own_rules, *keepers], context, policy.name
    ).items():
        protected.setdefault(digest, []).extend(reasons)

    verdicts: dict[str, list[tuple[str, bool, str]]] = {image.digest: [] for image in considered}
    for name, selector in policy.selectors:
        answers = ask_plugin(
            name,
            policy.owners.get(name, "unknown"),
            "select",
            policy.name,
            partial(selector.select, considered, context),
        )
        for image in considered:
            selected, reason = _verdict(answers.get(image.digest), name, policy.name)
            verdicts[image.digest].append((name, selected, reason))

    for image in considered:
        if image.digest in protected and len(image.tags) > 1:
            kept_by = _kept_tag(image, protected[image.digest])
            if kept_by:
                others = [tag for tag in image.tags if tag != kept_by]
                protected[image.digest].append(
                    f"{', '.join(others)} share{'s' if len(others) == 1 else ''} digest with kept tag '{kept_by}'"
                )
            else:
                protected[image.digest].append(
                    f"tags {', '.join(image.tags)} share this digest and are kept together"
                )

    candidates = {
        image.digest: image
        for image in considered
        if image.digest not in protected
        and all(selected for _, selected, _ in verdicts[image.digest])
    }
    if find_referrers is not None and candidates:
        referrers = find_referrers(scan, list(candidates.values()))
        _protect_kept_referrers(
            referrers, candidates, protected, [*own_rules, *keepers], context, policy.name
        )
    _protect_index_children(scan, candidates, protected)
    if policy.settings.untag:
        decision.untag = _untags(
            considered, policy, protected, verdicts, [*own_rules, *keepers], context
        )
    untagged: dict[str, list[str]] = {}
    for image, tag, _ in decision.untag:
        untagged.setdefault(image.digest, []).append(tag)

    for image in sorted(considered, key=_oldest_first):
        selection = [reason for _, selected, reason in verdicts[image.digest] if selected]
        if image.digest in candidates:
            decision.delete.append((image, selection))
        else:
            reasons = list(protected.get(image.digest, []))
            if image.digest in protected and len(selection) == len(verdicts[image.digest]):
                reasons.append("would otherwise be deleted: " + "; ".join(selection))
            else:
                reasons += [
                    reason for _, selected, reason in verdicts[image.digest] if not selected
                ]
            if image.digest in untagged:
                tags = ", ".join(untagged[image.digest])
                reasons.append(f"untag: removes tag(s) {tags}, which no keep rule keeps")
            decision.keep.append((image, reasons))
    for artifact in scan.orphan_artifacts:
        decision.keep.append(
            (
                artifact,
                [
                    f"artifact whose subject {artifact.facts.subject or 'named by its tag'} is not in the repository; left alone"
                ],
            )
        )
    decision.child_items = _children_to_delete(scan, candidates)
    return decision


def wants_untagged(policy: CompiledPolicy) -> bool:
    """Whether one of the policy's selectors asks to see untagged manifests."""
    return any(getattr(selector, "considers_untagged", False) for _, selector in policy.selectors)


def _untags(
    considered: Sequence[Image],
    policy: CompiledPolicy,
    protected: dict[str, list[str]],
    verdicts: dict[str, list[tuple[str, bool, str]]],
    rules: Sequence[tuple[str, str, Protector]],
    context: SelectionContext,
) -> list[tuple[Image, str, list[str]]]:
    """The tags ``untag = true`` removes: those of an image every selector selects but
    that is kept, where some tag of it is kept (by a keep rule, or by being outside the
    policy's ``tags`` filter) and no keep rule keeps the tag itself.  The image stays."""
    selected_kept = [
        image
        for image in considered
        if image.digest in protected
        and len(image.tags) > 1
        and all(selected for _, selected, _ in verdicts[image.digest])
    ]
    by_tag = tag_verdicts(selected_kept, rules, context, policy.name, others=considered)
    found: list[tuple[Image, str, list[str]]] = []
    for image in selected_kept:
        outside = {
            tag
            for tag in image.tags
            if policy.tag_filter is not None and not policy.tag_filter.search(tag)
        }
        kept = [tag for tag in image.tags if tag in outside or (image.digest, tag) in by_tag]
        if not kept:
            continue  # kept for a reason that is no tag's (an index, a referrer): leave it whole
        selection = [reason for _, selected, reason in verdicts[image.digest] if selected]
        for tag in image.tags:
            if tag in kept:
                continue
            found.append(
                (
                    image,
                    tag,
                    [
                        *selection,
                        f"shares digest with kept tag '{kept[0]}'; no keep rule keeps "
                        f"'{tag}', so only the tag is removed and the image stays",
                    ],
                )
            )
    return found


def _protect_kept_referrers(
    referrers: Sequence[Image],
    candidates: dict[str, Image],
    protected: dict[str, list[str]],
    rules: Sequence[tuple[str, str, Protector]],
    context: SelectionContext,
    policy: str,
) -> None:
    """Keep rules see the untagged referrers found too; one they keep keeps its image."""
    if not referrers:
        return
    owner = {a.digest: image for image in candidates.values() for a in image.artifacts}
    for digest, reasons in keep_verdicts(referrers, rules, context, policy).items():
        image = owner.get(digest)
        if image is None or image.digest not in candidates:
            continue
        candidates.pop(image.digest)
        protected.setdefault(image.digest, []).append(
            f"its referrer {digest[:19]} is kept ({'; '.join(reasons)}), and it refers to this image"
        )


def _verdict(answer: Any, name: str, policy: str) -> tuple[bool, str]:
    """A selector's ``(selected, reason)`` for one image; anything else fails closed."""
    if answer is None:
        return False, f"{name}: not selected"
    if not isinstance(answer, tuple | list) or len(answer) != 2 or not isinstance(answer[0], bool):
        raise UsageError(
            f"policy {policy}: selector {name} answered {answer!r} for an image; a selector "
            "must answer (selected: bool, reason: str)"
        )
    return answer[0], str(answer[1])


def _kept_tag(image: Image, reasons: list[str]) -> str | None:
    for tag in image.tags:
        if any(f"'{tag}'" in reason for reason in reasons):
            return tag
    return None


def _oldest_first(image: Image) -> tuple[float, str]:
    return (image.time.timestamp() if image.time else float("inf"), image.digest)


def _remaining_children(scan: RepositoryScan, deleting: set[str]) -> dict[str, str]:
    """child digest → an index that stays and references it."""
    owners: dict[str, str] = {}
    for image in [*scan.images, *scan.untagged]:
        if image.digest in deleting:
            continue
        for manifest in [image.facts, *(a.facts for a in image.artifacts)]:
            for child in manifest.children:
                owners.setdefault(child, manifest.digest)
    return owners


def _protect_index_children(
    scan: RepositoryScan, candidates: dict[str, Image], protected: dict[str, list[str]]
) -> None:
    """A candidate that a remaining index references is kept (until nothing changes)."""
    while True:
        owners = _remaining_children(scan, set(candidates))
        blocked = [digest for digest in candidates if digest in owners]
        if not blocked:
            return
        for digest in blocked:
            candidates.pop(digest)
            protected.setdefault(digest, []).append(
                f"platform manifest of index {owners[digest][:19]}, which is kept"
            )


def _children_to_delete(
    scan: RepositoryScan, candidates: dict[str, Image]
) -> dict[str, list[ManifestFacts]]:
    """Children of deleted indexes (and of their artifacts) that nothing remaining references."""
    owners = _remaining_children(scan, set(candidates))
    tops = [*scan.images, *scan.untagged]
    tagged = {image.digest for image in tops} | {
        artifact.digest for image in tops for artifact in image.artifacts
    }
    taken: set[str] = set()
    result: dict[str, list[ManifestFacts]] = {}
    for image in candidates.values():
        for manifest in [image.facts, *(a.facts for a in image.artifacts)]:
            for child in manifest.children:
                if (
                    child in owners
                    or child in tagged
                    or child in taken
                    or child not in scan.manifests
                ):
                    continue
                taken.add(child)
                result.setdefault(manifest.digest, []).append(scan.manifests[child])
    return result


def estimate_bytes(scans: Sequence[RepositoryScan], deleted: set[str]) -> int:
    """Bytes GC should free: deleted manifests plus blobs no remaining manifest references.

    Only the scanned repositories are considered, so blobs shared with other
    repositories make this an upper bound.
    """
    remaining_blobs: set[Blob] = set()
    deleted_blobs: set[Blob] = set()
    manifest_bytes = 0
    for scan in scans:
        for digest, facts in scan.manifests.items():
            if digest in deleted:
                deleted_blobs.update(facts.blobs)
                manifest_bytes += facts.size
            else:
                remaining_blobs.update(facts.blobs)
    return manifest_bytes + sum(blob.size for blob in deleted_blobs - remaining_blobs)


def _item(
    seq: int,
    repo: str,
    facts: ManifestFacts,
    tags: Sequence[str],
    role: Role,
    parent: str | None,
    created: str | None,
    reasons: Sequence[str],
) -> PlanItem:
    size = facts.size + sum(blob.size for blob in facts.blobs)
    return PlanItem(
        seq,
        repo,
        facts.digest,
        tuple(tags),
        role,
        parent,
        facts.media_type,
        created,
        size,
        tuple(reasons),
    )


def _add_children(
    items: list[PlanItem],
    repo: str,
    children: Sequence[ManifestFacts],
    parent: str,
    created: str | None,
    reason: str,
) -> None:
    """Append the child manifests of a deleted ``parent`` (an index or an artifact),
    numbered on from ``items``."""
    for child in children:
        items.append(_item(len(items), repo, child, (), "child", parent, created, [reason]))


def _created(image: Image) -> str | None:
    return image.time.isoformat() if image.time else image.facts.created


def build_plan(
    *,
    policy_name: str,
    registry_name: str,
    registry_url: str,
    scans: Sequence[RepositoryScan],
    compiled: CompiledPolicy,
    keepers_for: Any,
    catalog: Catalog,
    now: datetime,
    requested_by: str,
    find_referrers: FindReferrers | None = None,
    coverage: Coverage | None = None,
) -> Plan:
    """Turn scans into a plan.  ``keepers_for(repo)`` gives other policies' keep rules;
    ``find_referrers`` finds the untagged referrers of what the plan would delete;
    ``coverage`` is over which span the listener heard the registry (``unused``)."""
    items: list[PlanItem] = []
    keep: list[KeepItem] = []
    untags: list[tuple[str, str, str, list[str]]] = []
    per_repo: dict[str, int] = {}
    warnings: list[str] = []
    for scan in scans:
        assign_times(scan.images, compiled.settings.time_source, catalog, now)
        context = SelectionContext(
            now=now,
            registry=registry_name,
            repository=scan.repository,
            policy=policy_name,
            coverage=coverage,
        )
        decision = decide_repository(
            scan, compiled, keepers_for(scan.repository), context, find_referrers
        )
        for image, reasons in decision.delete:
            items.append(
                _item(
                    len(items),
                    scan.repository,
                    image.facts,
                    image.tags,
                    "image",
                    None,
                    _created(image),
                    reasons,
                )
            )
            per_repo[scan.repository] = per_repo.get(scan.repository, 0) + 1
            _add_children(
                items,
                scan.repository,
                decision.child_items.get(image.digest, []),
                image.digest,
                _created(image),
                f"platform manifest of deleted index {image.digest[:19]}",
            )
            for artifact in image.artifacts:
                items.append(
                    _item(
                        len(items),
                        scan.repository,
                        artifact.facts,
                        artifact.tags,
                        "artifact",
                        image.digest,
                        artifact.facts.created,
                        [f"{_artifact_kind(artifact)} of deleted image {image.digest[:19]}"],
                    )
                )
                _add_children(
                    items,
                    scan.repository,
                    decision.child_items.get(artifact.digest, []),
                    artifact.digest,
                    None,
                    f"manifest of deleted artifact {artifact.digest[:19]}",
                )
        untags += [
            (scan.repository, tag, image.digest, reasons) for image, tag, reasons in decision.untag
        ]
        for image, reasons in decision.keep:
            keep.append(
                KeepItem(
                    scan.repository,
                    image.digest,
                    tuple(image.tags),
                    _created(image),
                    tuple(reasons),
                )
            )
        orphans = len(scan.orphan_artifacts)
        if orphans:
            warnings.append(
                f"{scan.repository}: {orphans} artifact(s) whose subject is gone were left alone"
            )

    deleted = {item.digest for item in items}
    summary = PlanSummary(
        images=sum(1 for item in items if item.role == "image"),
        manifests=len(items),
        tags=sum(len(item.tags) for item in items),
        bytes=estimate_bytes(scans, deleted),
        kept_images=len(keep),
        repositories=per_repo,
        untags=len(untags),
    )
    policy = compiled.settings
    return Plan(
        id=secrets.token_hex(4),
        registry=registry_name,
        registry_url=registry_url,
        policy=policy_name,
        created_at=now,
        delete=items,
        keep=keep,
        summary=summary,
        approval=policy.approval,
        gc=policy.gc,
        requested_by=requested_by,
        warnings=warnings,
        keep_rules=keep_rules_spec(policy),
        # Numbered on after the delete items: each has its own outcome row.
        untag=[
            UntagItem(len(items) + index, repository, tag, digest, tuple(reasons))
            for index, (repository, tag, digest, reasons) in enumerate(untags)
        ],
    )


# Words in an untagged referrer's artifactType that say what it is (cosign, in-toto,
# SPDX, CycloneDX, Notation).
_ARTIFACT_KINDS = (
    ("signature", ("signature", ".sig", "notary")),
    ("attestation", ("in-toto", ".att", "attestation")),
    ("SBOM", ("sbom", "spdx", "cyclonedx")),
)


def _artifact_kind(artifact: Image) -> str:
    for tag in artifact.tags:
        if tag.endswith(".sig"):
            return "signature"
        if tag.endswith(".att"):
            return "attestation"
        if tag.endswith(".sbom"):
            return "SBOM"
        if artifact_subject(tag):
            return "referrers index (OCI 1.1 tag schema)"
    kind = (artifact.facts.artifact_type or "").lower()
    for name, words in _ARTIFACT_KINDS:
        if any(word in kind for word in words):
            return name
    return "referrer" if not artifact.tags else "artifact"
