"""The plan lifecycle: the only module where plan and item statuses are spelled.

A plan moves ``pending -> approved -> applying -> done`` (or ``rejected``,
``expired``, ``cancelled``, ``failed``).  Every move is a compare-and-set made by
the engine (``Engine.transition``) along an edge of `TRANSITIONS`; front ends
never write a status themselves.  The statuses are `StrEnum` members, so what the
state DB stores and what ``--json`` prints are exactly the strings they always were.

| from       | to                                              |
|------------|-------------------------------------------------|
| pending    | approved, rejected, expired, cancelled          |
| approved   | applying, cancelled, pending (apply refused)     |
| applying   | applying (resumed after a crash), done, failed   |
| failed     | applying (resumed), cancelled, pending (refused) |
| done, rejected, expired, cancelled | nothing: finished     |

``tests/test_lifecycle.py`` fails when a status literal appears anywhere else in
``core/``, ``plugins/`` or ``bots/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class PlanStatus(StrEnum):
    """Where a plan is in its lifecycle (the ``status`` of ``plans`` and of ``--json``)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    APPLYING = "applying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ItemStatus(StrEnum):
    """Where one delete item of a plan is (the ``status`` of ``plan_items``)."""

    PENDING = "pending"
    DELETING = "deleting"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


class Decision(StrEnum):
    """An approver's answer (``Approval.decision``); pending means decided elsewhere, later."""

    APPROVED = "approved"
    REJECTED = "rejected"
    PENDING = "pending"


class DeleteAnswer(StrEnum):
    """What a ``delete_manifest`` implementation answers for one manifest."""

    DELETED = "deleted"
    ABSENT = "absent"  # already gone: counts as deleted


P = PlanStatus

TRANSITIONS: Mapping[PlanStatus, frozenset[PlanStatus]] = {
    P.PENDING: frozenset({P.APPROVED, P.REJECTED, P.EXPIRED, P.CANCELLED}),
    # Back to pending: the registry refused the apply before anything was deleted, so
    # the plan needs a fresh approval (its approvals are voided with the move).
    P.APPROVED: frozenset({P.APPLYING, P.CANCELLED, P.PENDING}),
    # applying -> applying: an apply that died with its process is resumed.
    P.APPLYING: frozenset({P.APPLYING, P.DONE, P.FAILED}),
    P.FAILED: frozenset({P.APPLYING, P.CANCELLED, P.PENDING}),
    P.DONE: frozenset(),
    P.REJECTED: frozenset(),
    P.EXPIRED: frozenset(),
    P.CANCELLED: frozenset(),
}
"""Old status -> the statuses a compare-and-set may move it to."""

# -- named groups of plan statuses -------------------------------------------------------

DECIDABLE: tuple[PlanStatus, ...] = (P.PENDING,)
"""Open for a decision: approve, reject, expire (and cancel)."""

CANCELLABLE: tuple[PlanStatus, ...] = (P.PENDING, P.APPROVED, P.FAILED)
"""What every front end may cancel: not yet applied, or stopped part-way.  A plan
being applied cannot be cancelled (its deletions are under way)."""

REOPENABLE: tuple[PlanStatus, ...] = (P.APPROVED, P.FAILED)
"""Back to pending when the registry refused the apply before anything was deleted."""

RESUMABLE: tuple[PlanStatus, ...] = (P.APPROVED, P.APPLYING, P.FAILED)
"""What ``regprune apply`` starts or continues; plan retention never removes these."""

UNATTENDED_RESUMABLE: tuple[PlanStatus, ...] = (P.APPROVED, P.APPLYING)
"""What a bot resumes on its own: never ``failed``, a person reads why first."""

FINISHED: tuple[PlanStatus, ...] = (P.DONE, P.REJECTED, P.EXPIRED, P.CANCELLED)
"""Nothing will ever happen to these again; retention removes them when old."""

APPROVED_ONCE: tuple[PlanStatus, ...] = (P.APPROVED, P.APPLYING, P.DONE, P.FAILED)
"""Plans that were approved (whatever happened since)."""

WITH_OUTCOMES: tuple[PlanStatus, ...] = (P.APPLYING, P.DONE, P.FAILED)
"""Plans whose items have outcomes worth counting."""

UNSUCCESSFUL: tuple[PlanStatus, ...] = (P.FAILED, P.REJECTED)
"""How an apply may end that the command line reports with exit code 1."""

# -- named groups of item statuses ---------------------------------------------------------

ITEM_FINISHED: tuple[ItemStatus, ...] = (ItemStatus.DELETED, ItemStatus.SKIPPED)
"""An item a resumed apply never touches again."""

ITEM_UNFINISHED: tuple[ItemStatus, ...] = (ItemStatus.PENDING, ItemStatus.DELETING)
"""An item no apply has finished yet."""

ITEM_REPORTED: tuple[ItemStatus, ...] = (ItemStatus.DELETED, ItemStatus.SKIPPED, ItemStatus.FAILED)
"""The outcomes an apply result lists, in its ``--json`` order."""

ITEM_INTERRUPTED: tuple[ItemStatus, ...] = (ItemStatus.DELETING, ItemStatus.FAILED)
"""An item whose DELETE may have been sent before the apply stopped."""


def allowed(old: str, new: str) -> bool:
    """Whether a plan may move from ``old`` to ``new`` (both status strings)."""
    try:
        return PlanStatus(new) in TRANSITIONS[PlanStatus(old)]
    except ValueError:
        return False


def sources(new: PlanStatus, among: Iterable[PlanStatus] | None = None) -> tuple[PlanStatus, ...]:
    """The statuses (of ``among``, default all) from which a plan may move to ``new``."""
    candidates = tuple(PlanStatus) if among is None else tuple(among)
    return tuple(old for old in candidates if new in TRANSITIONS[old])


def plan_status(value: str) -> PlanStatus:
    """A stored status string as a `PlanStatus`; ValueError names the known ones."""
    try:
        return PlanStatus(value)
    except ValueError:
        raise ValueError(f"unknown plan status {value!r}; known: {', '.join(PlanStatus)}") from None
