"""The Slack bot after a restart: plans approved in Slack whose apply a crash or a deploy
interrupted are finished when the bot starts, through the same apply path, and nothing
else is: not failed, rejected, expired, cancelled or unapproved plans, not a plan another
live process is applying, and never at every poll.

Same set-up as test_slack_bot.py (a real registry, the bot in HTTP mode, a fake Slack);
a "restart" is a new ``SlackService`` over the same state DB, started the way
``regprune bot slack`` starts it (``Background.start``).  A bot that dies mid-apply is
a real process killed with SIGKILL after its first deletion.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from slack_sdk import WebClient

from regprune.bots.slack import service as service_module
from regprune.bots.slack.background import Background
from regprune.bots.slack.service import SlackService
from regprune.engine import lock_name
from regprune.models import Approval
from regprune.plugin_manager import get_plugin_manager
from regprune.testing import RegistryServer

from . import test_slack_bot
from .test_slack_bot import (
    APPROVER,
    OLD,
    TOKEN,
    UNTOUCHED,
    Bot,
    plan_on_a_registry_that_refuses_deletes,
)

# The bot fixtures of test_slack_bot.py, shared rather than copied.
registry = test_slack_bot.registry
fake = test_slack_bot.fake
make_bot = test_slack_bot.make_bot

# Plays the bot that dies: applies the plan like the bot does, and is killed with
# SIGKILL (no cleanup at all) right after its first deletion is recorded and audited.
DYING_APPLY = textwrap.dedent(
    """
    import os, signal, sys
    from regprune import hookimpl
    from regprune.config import parse_settings
    from regprune.engine import Engine
    from regprune.models import ApprovalContext
    from regprune.plugin_manager import get_plugin_manager
    from regprune.state import State

    class Die:
        @hookimpl(trylast=True)  # after the audit plugin wrote item.deleted
        def item_deleted(self, plan, item, state):
            os.kill(os.getpid(), signal.SIGKILL)

    url, state_path, plan_id = sys.argv[1:4]
    settings = parse_settings({"registry": {"local": {"url": url}}})
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(Die())
    engine = Engine(settings, State(state_path), manager=manager)
    engine.apply(plan_id, context=ApprovalContext(False, False, "regprune-bot"))
    sys.exit("the apply finished; it should have died first")
    """
)

# Another live process holding the registry's lock, as a `regprune apply` running now would.
LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from regprune.state import State

    state_path, name, purpose = sys.argv[1:4]
    state = State(state_path)
    with state.locks.hold(name, purpose=purpose):
        print("locked", flush=True)
        sys.stdin.read()  # until the test closes our stdin
    """
)


def approve_but_crash_before_apply(bot: Bot, plan_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Approve in Slack; the bot "dies" after recording the approval, before the apply starts."""
    started: list[str] = []
    monkeypatch.setattr(bot.service, "start_apply", lambda plan_id, **kw: started.append(plan_id))
    bot.approve(plan_id, APPROVER)
    assert started == [plan_id]
    assert bot.plan(plan_id).status == "approved"
    assert bot.existing() == UNTOUCHED


def restart(bot: Bot) -> list[str]:
    """Start a new bot over the same config and state DB the way the runner does; return the
    ids of the plans it resumed, after their applies finished."""
    service = SlackService(
        bot.settings,
        bot.state_path,
        WebClient(token=TOKEN, base_url=bot.fake.api_url),
        manager=get_plugin_manager(load_entrypoints=False),
        now=bot.clock,
        progress_every=1,
        progress_seconds=3600,
    )
    resumed: list[str] = []
    original = service.resume_interrupted

    def recording() -> list[str]:
        resumed.extend(original())
        return resumed

    service.resume_interrupted = recording  # type: ignore[method-assign]
    background = Background(service, interval=3600).start()
    try:
        background.stop()
        service.join()
    finally:
        service.close()
    return resumed


def deleted_digests(bot: Bot, plan_id: str) -> list[str]:
    return sorted(e.details["digest"] for e in bot.audit("item.deleted", plan_id))


def old_digests(bot: Bot) -> list[str]:
    return sorted(bot.images[n].digest for n in ("old1", "old2", "old3"))


def bot_lock(bot: Bot) -> str:
    """The lock of the bot's registry: named by its identity, not by "local"."""
    return lock_name(bot.settings.registry["local"].url)


@contextmanager
def live_lock_holder(bot: Bot, purpose: str) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(bot.state_path), bot_lock(bot), purpose],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=20)


# -- (1) approved, apply never started ------------------------------------------------------


def test_a_plan_approved_before_the_restart_is_applied_when_the_bot_starts(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    approve_but_crash_before_apply(bot, plan_id, monkeypatch)
    # Polling never resumes anything: only a start does.
    bot.service.poll_once()
    Background(bot.service, interval=3600).tick()
    bot.service.join()
    assert bot.plan(plan_id).status == "approved" and bot.existing() == UNTOUCHED

    assert restart(bot) == [plan_id]

    assert bot.existing() == OLD  # exactly the plan's deletions
    assert bot.plan(plan_id).status == "done"
    assert deleted_digests(bot, plan_id) == old_digests(bot)
    thread = bot.thread(plan_id)
    resumed = [i for i, t in enumerate(thread) if "resuming after a restart" in t]
    assert len(resumed) == 1
    assert "approved but its apply had not started" in thread[resumed[0]]
    later = "\n".join(thread[resumed[0] :])
    assert ":gear: Progress: 1 of 3" in later
    assert f"Plan {plan_id} done" in later and "deleted 3, skipped 0, failed 0" in later
    assert ":white_check_mark: Applied" in json.dumps(bot.message(plan_id)["blocks"])
    assert len(bot.audit("slack.resumed", plan_id)) == 1

    # A done plan is not resumed again at the next start.
    assert restart(bot) == []
    assert len(bot.audit("item.deleted", plan_id)) == 3


# -- (2) the bot died mid-apply -------------------------------------------------------------


def test_a_plan_left_applying_by_a_killed_bot_is_finished_and_repeats_nothing(
    make_bot: Callable[..., Bot], registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    approve_but_crash_before_apply(bot, plan_id, monkeypatch)
    dying = subprocess.Popen(
        [sys.executable, "-c", DYING_APPLY, registry.url, str(bot.state_path), plan_id],
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = dying.communicate(timeout=60)
    assert dying.returncode == -signal.SIGKILL, stderr
    # What the crash left: applying, one manifest deleted, the dead process's lock.
    assert bot.plan(plan_id).status == "applying"
    first = deleted_digests(bot, plan_id)
    assert len(first) == 1
    assert sum(not exists for exists in bot.existing().values()) == 1
    with bot.state() as state:
        (lock,) = state.locks.current()  # a dead holder on this host: the next apply takes it over
        assert (lock.name, lock.pid) == (bot_lock(bot), dying.pid)

    assert restart(bot) == [plan_id]

    assert bot.existing() == OLD
    assert bot.plan(plan_id).status == "done"
    # Every approved manifest deleted exactly once over both runs: nothing repeated.
    assert deleted_digests(bot, plan_id) == old_digests(bot)
    assert len(bot.audit("apply.finished", plan_id)) == 1
    thread = "\n".join(bot.thread(plan_id))
    assert "was being applied; resuming after a restart" in thread
    assert "1 of 3 manifest(s) were already handled" in thread
    assert "deleting 2 manifest(s)" in thread
    assert f"Plan {plan_id} done" in thread and "deleted 3, skipped 0, failed 0" in thread
    with bot.state() as state:
        assert state.locks.current() == []


# -- (3) what is never resumed --------------------------------------------------------------


def test_failed_rejected_expired_cancelled_and_unapproved_plans_are_not_resumed(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    failed = bot.request_plan()
    approve_but_crash_before_apply(bot, failed, monkeypatch)
    with bot.state() as state:
        # An apply that ended failed: a person reads why and re-runs `regprune apply`.
        assert state.plans.set_status(failed, "applying", expected=("approved",))
        first = bot.plan(failed).delete[0].seq
        state.plans.set_item_status(failed, first, "failed", "HTTP 500 from the registry")
        assert state.plans.set_status(failed, "failed", expected=("applying",))
    rejected = bot.request_plan()
    bot.reject(rejected, APPROVER)
    cancelled = bot.request_plan()
    bot.command(f"cancel {cancelled}")
    expired = bot.request_plan()
    pending = bot.request_plan()
    forged = bot.request_plan()  # "approved" in the DB without any approval recorded
    no_message = bot.cli_plan().id  # never posted: no thread to report in
    with bot.state() as state:
        assert state.plans.set_status(expired, "expired", expected=("pending",))
        assert state.plans.set_status(forged, "approved", expected=("pending",))
        assert state.plans.set_status(no_message, "applying", expected=("pending",))
        state.approvals.add(no_message, Approval("approved", APPROVER, "slack"))
    before = {p: len(bot.thread(p)) for p in (failed, rejected, cancelled, expired, forged)}

    assert restart(bot) == []

    assert bot.existing() == UNTOUCHED
    statuses = {p: bot.plan(p).status for p in (failed, rejected, cancelled, expired, pending)}
    assert statuses == {
        failed: "failed",
        rejected: "rejected",
        cancelled: "cancelled",
        expired: "expired",
        pending: "pending",
    }
    assert bot.plan(forged).status == "approved"
    assert bot.plan(no_message).status == "applying"
    for plan_id, count in before.items():
        assert len(bot.thread(plan_id)) == count  # nothing posted about them
        assert bot.audit("slack.resumed", plan_id) == []
    with bot.state() as state:
        assert [e for e in state.audit_log.events(limit=1000) if e.event == "item.deleted"] == []


def test_a_plan_whose_apply_stopped_with_an_error_waits_for_a_person(
    make_bot: Callable[..., Bot], registry_factory: Callable[..., RegistryServer]
) -> None:
    bot, plan_id = plan_on_a_registry_that_refuses_deletes(make_bot, registry_factory)
    bot.approve(plan_id, APPROVER)  # refused by the registry: pending again, reported
    assert bot.plan(plan_id).status == "pending"
    replies = len(bot.thread(plan_id))
    assert len(bot.audit("slack.apply_stopped", plan_id)) == 1
    assert len(bot.audit("apply.refused", plan_id)) == 1

    assert restart(bot) == []

    assert len(bot.thread(plan_id)) == replies
    assert bot.plan(plan_id).status == "pending"


def test_a_plan_resumed_too_often_is_left_to_a_person_and_said_once(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    approve_but_crash_before_apply(bot, plan_id, monkeypatch)
    with bot.state() as state:  # two earlier starts resumed it and died while applying
        for _ in range(service_module.MAX_RESUMES):
            state.audit_log.record(
                "slack.resumed", plan_id=plan_id, registry="local", actor="regprune-bot"
            )

    assert restart(bot) == []
    assert restart(bot) == []

    assert bot.existing() == UNTOUCHED
    warnings = [t for t in bot.thread(plan_id) if "was not resumed" in t]
    assert len(warnings) == 1 and f"regprune apply {plan_id}" in warnings[0]


# -- a plan another live process is applying ------------------------------------------------


def test_a_plan_another_live_process_is_applying_is_reported_busy_not_applied_twice(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    approve_but_crash_before_apply(bot, plan_id, monkeypatch)

    with live_lock_holder(bot, f"apply of plan {plan_id}") as holder:
        assert restart(bot) == [plan_id]  # handed to a worker, which finds the lock held
        thread = bot.thread(plan_id)
        busy = [t for t in thread if "did not start" in t]
        assert len(busy) == 1
        assert "is busy" in busy[0] and f"apply of plan {plan_id}" in busy[0]
        assert f":{holder.pid}" in busy[0]
        assert not any("resuming after a restart" in t for t in thread)
        assert bot.existing() == UNTOUCHED
        assert bot.plan(plan_id).status == "approved"
        assert bot.audit("item.deleted", plan_id) == []

    # Told once; the next start leaves it to the person who reads the thread.
    assert restart(bot) == []
    assert sum("did not start" in t for t in bot.thread(plan_id)) == 1


def test_an_approval_while_another_process_holds_the_registry_reports_busy(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    with live_lock_holder(bot, "garbage collection"):
        bot.approve(plan_id, APPROVER)
    thread = "\n".join(bot.thread(plan_id))
    assert f"Apply of plan {plan_id} did not start" in thread and "garbage collection" in thread
    assert bot.existing() == UNTOUCHED
    assert bot.plan(plan_id).status == "approved"
    assert restart(bot) == []  # a person re-runs it; the bot never retries by itself
    assert bot.existing() == UNTOUCHED
