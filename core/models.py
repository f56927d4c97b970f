"""The data regprune passes between scan, select, protect, plan and apply.

Facts about a digest never change, so `ManifestFacts` is frozen and cached by
digest.  An `Image` is one top-level manifest digest in one repository with every
ordinary tag that points to it, its index children, and the signature or
attestation artifacts that belong to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from sys import intern
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .options import Options
    from .storage import GcPreview

from .lifecycle import ITEM_REPORTED, Decision, ItemStatus, PlanStatus


# slots=True on the dataclasses a plan holds one of per tag or per image: no __dict__
# per object, about half the bytes (docs/performance.md#memory).
@dataclass(frozen=True, slots=True)
class Blob:
    """A blob (config or layer) referenced by a manifest."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    """What a manifest digest says about itself; immutable, cached forever by digest."""

    digest: str
    media_type: str
    size: int
    config_digest: str | None = None
    created: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    blobs: tuple[Blob, ...] = ()
    children: tuple[str, ...] = ()
    subject: str | None = None
    artifact_type: str | None = None

    def to_json(self) -> str:
        # By hand, not dataclasses.asdict: its recursive deep copy was the largest part
        # of storing a cold scan's facts (docs/performance.md#storage).  Same text.
        return json.dumps(
            {
                "digest": self.digest,
                "media_type": self.media_type,
                "size": self.size,
                "config_digest": self.config_digest,
                "created": self.created,
                "labels": dict(self.labels),
                "blobs": [{"digest": blob.digest, "size": blob.size} for blob in self.blobs],
                "children": list(self.children),
                "subject": self.subject,
                "artifact_type": self.artifact_type,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, shared: dict[Any, Any] | None = None) -> ManifestFacts:
        """Facts from ``to_json``.  Equal digests, blobs and labels decoded with the same
        ``shared`` dict are one object each (a base layer that 10,000 images list is held
        once), and media types are interned (docs/performance.md#memory)."""
        data = json.loads(text)
        memo: dict[Any, Any] = {} if shared is None else shared
        for key in ("digest", "config_digest", "subject"):
            if isinstance(data.get(key), str):
                data[key] = memo.setdefault(data[key], data[key])
        for key in ("media_type", "artifact_type"):
            if isinstance(data.get(key), str):
                data[key] = intern(data[key])
        blobs = (
            Blob(memo.setdefault(b["digest"], b["digest"]), b["size"])
            for b in data.get("blobs", ())
        )
        data["blobs"] = tuple(memo.setdefault(blob, blob) for blob in blobs)
        data["children"] = tuple(memo.setdefault(c, c) for c in data.get("children", ()))
        labels = data.get("labels")
        if isinstance(labels, dict):
            # Read-only (a Mapping), so images with the same labels share one dict.
            data["labels"] = memo.setdefault(("labels", *sorted(labels.items())), labels)
        return cls(**data)


@dataclass(slots=True)
class Image:
    """One top-level manifest digest in a repository, with everything that goes with it."""

    repository: str
    digest: str
    tags: list[str]
    facts: ManifestFacts
    children: list[ManifestFacts] = field(default_factory=list)
    artifacts: list[Image] = field(default_factory=list)
    first_seen: datetime | None = None
    # Storage scans only: when the manifest was pushed to the repository (its revision
    # link) and when a tag last moved onto it (its newest tag link).
    pushed: datetime | None = None
    tagged_at: datetime | None = None
    # From the registry's notifications (``regprune listen``): pulls of this image's
    # manifests in this repository, None when none were recorded.
    usage: Usage | None = None
    # Filled in by the time sources: when the image was built, and from where.
    time: datetime | None = None
    time_source: str | None = None
    time_note: str | None = None

    @property
    def manifests(self) -> list[ManifestFacts]:
        """This image's own manifest followed by its index children."""
        return [self.facts, *self.children]

    @property
    def blobs(self) -> set[Blob]:
        return {blob for manifest in self.manifests for blob in manifest.blobs}

    @property
    def size(self) -> int:
        """Bytes of the manifests and distinct blobs of this image (artifacts excluded)."""
        return sum(m.size for m in self.manifests) + sum(b.size for b in self.blobs)

    @property
    def label(self) -> str:
        return f"{self.repository}@{self.digest[:19]}"


@dataclass(frozen=True, slots=True)
class Usage:
    """What the recorded events say about one digest in one repository."""

    repository: str
    digest: str
    first_push: datetime | None
    last_pull: datetime | None
    last_pull_tag: str | None
    last_pull_agent: str | None
    pulls: int
    agents: tuple[str, ...] = ()

    @property
    def last_client(self) -> str | None:
        """The first word of the last pull's user agent (``docker/27.1.1 go/…`` ->
        ``docker/27.1.1``), what reasons and tables name; None when it sent none."""
        words = (self.last_pull_agent or "").split()
        return words[0][:60] if words else None


@dataclass(frozen=True)
class Coverage:
    """The time over which the listener heard the registry without a break.

    ``since`` is the start of the unbroken span that reaches ``until`` (None: no
    span reaches it, nothing is known); ``gaps`` lists the breaks before it that
    are still worth telling (newest first).
    """

    registry: str
    until: datetime
    since: datetime | None
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)

    def covers(self, window: timedelta) -> bool:
        """Whether the listener heard the whole of the last ``window``."""
        return self.since is not None and self.since <= self.until - window

    @property
    def span(self) -> timedelta:
        """How long the unbroken span is (zero when there is none)."""
        return self.until - self.since if self.since is not None else timedelta(0)


Verdict = tuple[bool, str]
"""A selector's answer for one image: (selected, reason)."""


@dataclass(frozen=True)
class SelectionContext:
    """What a selector or protector may know besides the images themselves."""

    now: datetime
    registry: str
    repository: str
    policy: str
    # Over which span the listener heard the registry; None: it never did.
    coverage: Coverage | None = None


@runtime_checkable
class Selector(Protocol):
    """Marks images of one repository it would delete.  Built by a factory from options."""

    def select(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, Verdict]:
        """Return ``{digest: (selected, reason)}``; images left out count as not selected."""
        ...


@runtime_checkable
class Protector(Protocol):
    """Vetoes deletion of images (keep rules, images in use)."""

    def protect(self, images: Sequence[Image], context: SelectionContext) -> Mapping[str, str]:
        """Return ``{digest: reason}`` for every image that must be kept."""
        ...


@dataclass(frozen=True)
class TimeReading:
    """A time source's answer: the time it found (or None) and a note saying where from."""

    time: datetime | None
    note: str


Role = Literal["image", "child", "artifact"]


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One manifest a plan deletes.  Children and artifacts are items of their own."""

    seq: int
    repository: str
    digest: str
    tags: tuple[str, ...]
    role: Role
    parent: str | None
    media_type: str
    created: str | None
    size: int
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "repository": self.repository,
            "digest": self.digest,
            "tags": list(self.tags),
            "role": self.role,
            "parent": self.parent,
            "media_type": self.media_type,
            "created": self.created,
            "size": self.size,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanItem:
        return cls(
            seq=data["seq"],
            repository=data["repository"],
            digest=data["digest"],
            tags=tuple(data["tags"]),
            role=data["role"],
            parent=data.get("parent"),
            media_type=data["media_type"],
            created=data.get("created"),
            size=data["size"],
            reasons=tuple(data["reasons"]),
        )


@dataclass(frozen=True, slots=True)
class UntagItem:
    """One tag a plan removes while its image stays (policy option ``untag``).

    The tag shares its digest with a tag a keep rule keeps; no keep rule keeps this
    one.  ``seq`` numbers it after the plan's delete items (its outcome row in the
    state DB); it is not part of the JSON shape, which is exactly
    ``{"repository", "tag", "digest", "reasons"}``.
    """

    seq: int
    repository: str
    tag: str
    digest: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, seq: int, data: Mapping[str, Any]) -> UntagItem:
        return cls(
            seq=seq,
            repository=data["repository"],
            tag=data["tag"],
            digest=data["digest"],
            reasons=tuple(data["reasons"]),
        )


UNTAG_ROLE = "untag"
"""The ``role`` of an untag item's outcome row in ``plan_items``."""

UntagMethod = Literal["tag_delete", "overwrite"]
"""How a plan removes its tags: 3.x's tag DELETE, or 2.x's throwaway manifest."""


@dataclass(frozen=True, slots=True)
class KeepItem:
    """An image the plan keeps, with every reason it is kept."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    created: str | None
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "tags": list(self.tags),
            "created": self.created,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeepItem:
        return cls(
            repository=data["repository"],
            digest=data["digest"],
            tags=tuple(data["tags"]),
            created=data.get("created"),
            reasons=tuple(data["reasons"]),
        )


@dataclass(frozen=True)
class PlanSummary:
    images: int
    manifests: int
    tags: int
    bytes: int
    kept_images: int
    repositories: Mapping[str, int]
    # Tags removed from images that stay (policy option ``untag``).
    untags: int = 0
    # ``bytes`` is exact: what the registry's garbage-collect would free more because of
    # this plan, worked out from its storage (``[registry.NAME] storage``); else an
    # estimate from the scanned repositories (an upper bound when layers are shared).
    bytes_exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "manifests": self.manifests,
            "tags": self.tags,
            "bytes": self.bytes,
            "kept_images": self.kept_images,
            "repositories": dict(self.repositories),
            "untags": self.untags,
        } | ({"bytes_exact": True} if self.bytes_exact else {})


@dataclass
class Plan:
    """What a policy would delete and keep, and why.  Immutable once stored."""

    id: str
    registry: str
    registry_url: str
    policy: str
    created_at: datetime
    delete: list[PlanItem]
    keep: list[KeepItem]
    summary: PlanSummary
    approval: str
    gc: bool
    content_hash: str = ""
    status: PlanStatus = PlanStatus.PENDING
    requested_by: str = ""
    expires_at: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    # The policy's keep rules (keep_tags, protectors) when the plan was made: apply runs
    # them again.  None for plans stored before regprune recorded them.
    keep_rules: dict[str, Any] | None = None
    # The registry's Distribution version when the plan was made: ``{"version": 2 | 3 |
    # None, "source": "configured" | "detected" | "unknown", "evidence": ...}``.  None
    # for plans stored before regprune recorded it.
    registry_version: dict[str, Any] | None = None
    # Tags removed from images that stay, and how (see ``UntagMethod``).
    untag: list[UntagItem] = field(default_factory=list)
    untag_method: UntagMethod | None = None
    # False for a plan the engine did not store (an empty scope, see ``Engine.plan``).
    stored: bool = True

    @property
    def has_work(self) -> bool:
        """Whether applying it would change anything: a deletion or a tag removal."""
        return bool(self.delete or self.untag)

    def deletions(self) -> dict[str, set[str]]:
        """repository -> the digests this plan deletes there."""
        found: dict[str, set[str]] = {}
        for item in self.delete:
            found.setdefault(item.repository, set()).add(item.digest)
        return found

    def content(self) -> dict[str, Any]:
        """The part of the plan its hash covers: everything that decides what is deleted."""
        extra: dict[str, Any] = {} if self.keep_rules is None else {"keep_rules": self.keep_rules}
        if self.registry_version is not None:
            extra["registry_version"] = self.registry_version
        if self.untag:  # absent when empty: plans without untags hash as they always did
            extra["untag"] = [item.to_dict() for item in self.untag]
            extra["untag_method"] = self.untag_method
        return {
            **extra,
            "registry": self.registry,
            "registry_url": self.registry_url,
            "policy": self.policy,
            "created_at": self.created_at.isoformat(),
            "approval": self.approval,
            "gc": self.gc,
            "delete": [item.to_dict() for item in self.delete],
            "keep": [item.to_dict() for item in self.keep],
            "summary": self.summary.to_dict(),
            "warnings": list(self.warnings),
        }

    def content_parts(self) -> tuple[dict[str, Any], dict[str, Sequence[PlanItem | KeepItem]]]:
        """``content()`` in two parts, so a plan of 100,000 items can be hashed, stored
        and printed item by item: everything but the item lists (their keys hold ``[]``),
        and those lists, whose entries ``content()`` spells ``item.to_dict()``."""
        return replace(self, delete=[], keep=[]).content(), {
            "delete": self.delete,
            "keep": self.keep,
        }

    def json_parts(self) -> tuple[dict[str, Any], dict[str, Sequence[PlanItem | KeepItem]]]:
        """``to_json_dict()`` in two parts, like ``content_parts``: for ``plan --json``."""
        return replace(self, delete=[], keep=[]).to_json_dict(), {
            "delete": self.delete,
            "keep": self.keep,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The documented ``--json`` shape of a plan."""
        return {
            "plan_id": self.id,
            "registry": self.registry,
            "policy": self.policy,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "content_hash": self.content_hash,
            "registry_version": self.registry_version,
            "delete": [item.to_dict() for item in self.delete],
            "keep": [item.to_dict() for item in self.keep],
            "untag": [item.to_dict() for item in self.untag],
            "untag_method": self.untag_method,
            "summary": self.summary.to_dict(),
            "warnings": list(self.warnings),
        } | ({} if self.stored else {"stored": False})


ApprovalDecision = Decision
"""An approver's answer; spelled in ``regprune.lifecycle``."""


@dataclass(frozen=True)
class Approval:
    """An approver's answer for a plan."""

    decision: ApprovalDecision
    by: str
    method: str
    note: str = ""


@dataclass(frozen=True)
class ApprovalContext:
    """What an approver may use: --yes, whether a person is at a terminal, who asks, the state."""

    assume_yes: bool
    interactive: bool
    actor: str
    state: Any = None
    settings: Any = None
    # The options of `approval = { use = "NAME", ... }`, validated by the approver's
    # `options_model`; None when it declares none.
    options: Options | None = None


@runtime_checkable
class Approver(Protocol):
    """Decides whether a plan may be applied (a prompt, a rule, a vote in a front end)."""

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        """Return approved, rejected, or pending (decided elsewhere later, in a front end)."""
        ...


@dataclass(frozen=True)
class ItemOutcome:
    item: PlanItem
    status: ItemStatus
    reason: str = ""


@dataclass(frozen=True)
class UntagOutcome:
    item: UntagItem
    status: ItemStatus
    reason: str = ""


@dataclass
class ApplyResult:
    plan_id: str
    status: PlanStatus
    outcomes: list[ItemOutcome] = field(default_factory=list)
    untag_outcomes: list[UntagOutcome] = field(default_factory=list)

    def of(self, status: ItemStatus) -> list[ItemOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def bytes_deleted(self) -> int:
        return sum(outcome.item.size for outcome in self.of(ItemStatus.DELETED))

    def to_json_dict(self) -> dict[str, Any]:
        def rows(status: ItemStatus) -> list[dict[str, Any]]:
            return [
                {**outcome.item.to_dict(), "reason": outcome.reason} for outcome in self.of(status)
            ]

        return {
            "plan_id": self.plan_id,
            "status": self.status,
            # The JSON keys are the item statuses they list.
            **{status: rows(status) for status in ITEM_REPORTED},
            # Tags removed from images that stay: each with its ``status`` and ``reason``.
            "untag": [
                {**outcome.item.to_dict(), "status": outcome.status, "reason": outcome.reason}
                for outcome in self.untag_outcomes
            ],
        }


@dataclass(frozen=True)
class GcEligible:
    """What a garbage-collect run found eligible for deletion (a dry run's report),
    as its own output says (see ``gc_output.py``)."""

    blobs: int
    manifests: int
    blobs_marked: int | None = None  # blobs still referenced; None when not reported
    bytes: int | None = None
    """Sizes of the eligible blobs, measured in ``storage_path``; None without it."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "blobs": self.blobs,
            "manifests": self.manifests,
            "blobs_marked": self.blobs_marked,
            "bytes": self.bytes,
        }


@dataclass
class GcResult:
    """The outcome of one garbage-collection run."""

    registry: str
    dry_run: bool
    command: list[str]
    exit_code: int
    output: str
    started_at: datetime
    finished_at: datetime
    bytes_before: int | None = None
    bytes_after: int | None = None
    warnings: list[str] = field(default_factory=list)
    # What the collector would free, worked out from the registry's storage (a dry
    # run with ``[registry.NAME] storage`` set); None otherwise.
    preview: GcPreview | None = None
    # What the collector said is eligible for deletion (parsed from its whole output,
    # before ``output`` keeps only the tail); None when it said nothing we could read.
    eligible: GcEligible | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def bytes_freed(self) -> int | None:
        if self.bytes_before is None or self.bytes_after is None:
            return None
        return self.bytes_before - self.bytes_after

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "dry_run": self.dry_run,
            "command": self.command,
            "exit_code": self.exit_code,
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_freed": self.bytes_freed,
            "warnings": self.warnings,
            "output": self.output,
            "eligible": self.eligible.to_json_dict() if self.eligible is not None else None,
        } | ({"preview": self.preview.to_json_dict()} if self.preview is not None else {})
