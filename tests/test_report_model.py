"""The run report's rules without a registry: outcome, the ``on`` and ``policies``
filters, the JSON totals, and the webhook signature and retry helper's limits."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from regprune.notify import DeliveryError, PlanReport, RunReport, encode, post_json, signature

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)


def plan(policy: str, *, deleted: int = 0, failed: int = 0, size: int = 0) -> PlanReport:
    return PlanReport(
        policy=policy,
        registry="main",
        plan_id=f"id-{policy}",
        status="done",
        planned_images=deleted + failed,
        applied=True,
        deleted=deleted,
        failed=failed,
        deleted_bytes=size,
    )


def report(*plans: PlanReport, exit_code: int = 0) -> RunReport:
    return RunReport(
        event="run",
        exit_code=exit_code,
        error=None if exit_code == 0 else "boom",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=2.5),
        host="h",
        version="0",
        plans=plans,
    )


@pytest.mark.parametrize(
    ("exit_code", "deleted", "outcome", "heard_by"),
    [
        (0, 0, "success", {"success"}),
        (0, 2, "deleted", {"success", "deleted"}),
        (1, 0, "failure", {"failure"}),
        (1, 2, "failure", {"failure", "deleted"}),
    ],
)
def test_outcome_and_on(exit_code, deleted, outcome, heard_by):
    run = report(plan("ci", deleted=deleted), exit_code=exit_code)
    assert run.outcome == outcome
    assert {on for on in ("failure", "success", "deleted") if run.matches([on])} == heard_by


def test_policy_globs_keep_only_matching_plans_and_recount():
    run = report(plan("ci", deleted=1, size=10), plan("prod-web", deleted=4, size=40))
    scoped = run.for_policies(["prod-*"])
    assert scoped is not None and [p.policy for p in scoped.plans] == ["prod-web"]
    data = scoped.to_dict()
    assert (data["policy"], data["counts"]["deleted"], data["bytes"]["deleted"]) == (
        "prod-web",
        4,
        40,
    )
    assert run.for_policies(["nightly"]) is None
    assert run.for_policies([]) is run


def test_a_report_without_plans_goes_to_every_policy_filter():
    early = report(exit_code=2)
    assert early.for_policies(["prod-*"]) is early
    assert early.to_dict()["policy"] is None and early.to_dict()["counts"]["planned"] == 0


def test_several_plans_name_no_single_policy():
    data = report(plan("a", deleted=1), plan("b", deleted=2)).to_dict()
    assert (data["policy"], data["plan_id"], data["registry"]) == (None, None, "main")
    assert data["counts"]["deleted"] == 3 and len(data["plans"]) == 2
    assert data["duration_seconds"] == 2.5


def test_signature_is_the_hmac_of_the_exact_body():
    body = encode({"b": 1, "a": "é"})
    assert body == '{"b":1,"a":"é"}'.encode()
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) == f"sha256={expected}"


def test_post_json_gives_up_on_a_closed_port_after_its_retries():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(DeliveryError, match=r"\(3 attempts\)$"):
        post_json(f"http://127.0.0.1:{port}/", {}, timeout=1, retries=2, sleep=waits.append)
    assert waits == [0.5, 1.0]


def test_summary_line():
    line = report(replace(plan("ci", deleted=2), skipped=1), exit_code=1).summary()
    assert line == "regprune run failed (ci on main): 2 deleted, 1 skipped, 0 failed; boom"
