"""A scripted approver: a policy's ``approval`` that says what the test tells it to.

An approver plugin is tested, or a flow that depends on a decision (rejected,
pending, approved later) is driven, without a person at a terminal::

    def test_a_rejected_plan_deletes_nothing(pusher, regprune_plan, approver):
        pusher.push_image("app", ["v1"])
        approver.answer("rejected", note="not today")
        plan = regprune_plan(
            {"selectors": [{"use": "count", "keep": 0}], "approval": approver.name},
            extra_plugins=[approver],
        )
        assert regprune_plan.apply(plan).status == "rejected"
        assert approver.asked == [plan.id]

The instance is itself the plugin: pass it in ``extra_plugins`` and it registers
itself under ``name`` through ``register_approvers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..hookspecs import hookimpl
from ..lifecycle import Decision
from ..models import Approval, ApprovalContext, Approver, Plan

__all__ = ["ScriptedApprover"]


@dataclass(frozen=True)
class _Answer:
    decision: Decision
    by: str
    note: str


class ScriptedApprover:
    """An approver registered as ``name`` that answers ``decision`` unless told otherwise.

    ``answer(decision, ...)`` queues answers for the next calls, in order; when the
    queue is empty every call gets the default.  ``asked`` lists the id of every plan
    it was asked about, ``contexts`` the ``ApprovalContext`` of each call.
    """

    def __init__(
        self,
        name: str = "scripted",
        *,
        decision: Decision | str = Decision.APPROVED,
        by: str = "regprune.testing",
    ) -> None:
        self.name = name
        self.__name__ = f"scripted-approver-{name}"  # the plugin's name in errors
        self._default = _Answer(Decision(decision), by, "")
        self._queue: list[_Answer] = []
        self.asked: list[str] = []
        self.contexts: list[ApprovalContext] = []

    def answer(self, decision: Decision | str, *, by: str | None = None, note: str = "") -> None:
        """Queue one answer: ``approved``, ``rejected`` or ``pending`` (decided elsewhere)."""
        self._queue.append(_Answer(Decision(decision), by or self._default.by, note))

    def approve(self, plan: Plan, context: ApprovalContext) -> Approval:
        """The next queued answer, or the default one."""
        self.asked.append(plan.id)
        self.contexts.append(context)
        chosen = self._queue.pop(0) if self._queue else self._default
        by = chosen.by if chosen.decision != Decision.PENDING else ""
        return Approval(chosen.decision, by, self.name, note=chosen.note)

    @hookimpl
    def register_approvers(self, register: Callable[[str, Approver], None]) -> None:
        """Registers itself under ``name``."""
        register(self.name, self)

    def __repr__(self) -> str:
        return f"<ScriptedApprover {self.name!r} default={self._default.decision}>"
