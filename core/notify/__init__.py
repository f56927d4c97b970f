"""Run reports and where they go: the report model, the notifier protocol, delivery.

A notifier plugin registers a factory through ``register_notifiers``; the CLI builds
a `RunReport` when ``plan``, ``apply``, ``run`` or ``gc`` ends and hands it to every
``[notify.NAME]`` whose ``on``, ``policies`` and ``commands`` match (``dispatch``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .http import SIGNATURE_HEADER, DeliveryError, encode, post_json, signature
from .report import (
    COMMANDS,
    DELETED,
    FAILURE,
    ITEM_STATUSES,
    OUTCOMES,
    SCHEMA,
    SCHEMA_VERSION,
    SUCCESS,
    GcReport,
    Outcome,
    PlanReport,
    RunReport,
)


@runtime_checkable
class Notifier(Protocol):
    """What a notifier factory returns."""

    def send(self, report: RunReport) -> None:
        """Deliver one report; raise on failure (it is logged, never fatal)."""


__all__ = [
    "COMMANDS",
    "DELETED",
    "FAILURE",
    "ITEM_STATUSES",
    "OUTCOMES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SIGNATURE_HEADER",
    "SUCCESS",
    "DeliveryError",
    "GcReport",
    "Notifier",
    "Outcome",
    "PlanReport",
    "RunReport",
    "encode",
    "post_json",
    "signature",
]
