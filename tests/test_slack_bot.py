"""The Slack approval bot end to end: a real registry, the bot in HTTP mode on loopback,
signed requests from "Slack", and a fake Slack Web API recording what the bot says.

Each security and correctness rule of the bot (issue 3, rules 1-9) has a test here
that fails when the rule is broken; the registry is checked after every apply.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from regprune.bots.slack import service as service_module
from regprune.bots.slack.app import create_app
from regprune.bots.slack.background import Background, Schedules, check_schedules
from regprune.bots.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from regprune.bots.slack.messages import SlackFields, slack_fields
from regprune.bots.slack.redact import Redactor, install
from regprune.bots.slack.server import HttpServer
from regprune.bots.slack.service import SlackService
from regprune.config import Settings, parse_settings
from regprune.engine import Engine
from regprune.errors import UsageError
from regprune.models import ApprovalContext, Plan
from regprune.plugin_manager import get_plugin_manager
from regprune.state import AuditEvent, State
from regprune.testing import ImagePusher, PushedImage, RegistryServer, days_ago

from .slack_fake import CHANNEL, TEAM, FakeSlack, SlackRequests, sign

SECRET = "3f1c0ffee4b1d5ecre7t0000aa11bb22"
TOKEN = "xoxb-000000000001-000000000002-TestBotTokenValue123"
APPROVER = "U0APPROVE1"
APPROVER2 = "U0APPROVE2"
REQUESTER = "U0REQUEST1"  # also an approver: self-approval is what stops them
OUTSIDER = "U0OUTSIDE1"
GROUP = "S0GROUP001"
GROUP_MEMBER = "U0GROUPM01"


class Clock:
    """The bot's and the engine's clock: real time, moved forward on demand."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class Bot:
    """The bot under test and everything around it."""

    fake: FakeSlack
    service: SlackService
    server: HttpServer
    slack: SlackRequests
    settings: Settings
    state_path: Path
    pusher: ImagePusher
    repo: str
    clock: Clock
    images: dict[str, PushedImage] = field(default_factory=dict)

    @contextmanager
    def state(self) -> Iterator[State]:
        state = State(self.state_path)
        try:
            yield state
        finally:
            state.close()

    def plan(self, plan_id: str) -> Plan:
        with self.state() as state:
            return state.plans.get(plan_id)

    def fields(self, plan_id: str) -> SlackFields:
        with self.state() as state:
            return slack_fields(state, plan_id)

    def audit(self, event: str, plan_id: str) -> list[AuditEvent]:
        with self.state() as state:
            return [
                e for e in state.audit_log.events(limit=1000, plan_id=plan_id) if e.event == event
            ]

    def command(self, text: str, user: str = REQUESTER, **kwargs: Any) -> dict[str, Any]:
        response = self.slack.command(text, user=user, **kwargs)
        assert response.status_code == 200, response.text
        self.service.join()
        return response.json() if response.content else {}

    def request_plan(self, policy: str = "ci", user: str = REQUESTER) -> str:
        """``/regprune plan <policy>`` and the id of the plan it posted."""
        before = len(self.fake.top_level_posts())
        self.command(f"plan {policy}", user=user)
        posts = self.fake.top_level_posts()
        assert len(posts) == before + 1, self.fake.responses()
        return plan_id_of(posts[-1])

    def cli_plan(self, policy: str = "ci") -> Plan:
        """A plan made the way ``regprune plan`` makes it (the CLI actor, no Slack message)."""
        with self.state() as state:
            engine = Engine(self.settings, state, manager=self.service.manager, now=self.clock)
            try:
                return engine.plan(policy)
            finally:
                engine.close()

    def click(
        self,
        action: str,
        plan_id: str,
        user: str,
        *,
        on: str | None = None,
        channel: str | None = None,
        ts: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Click a button of the message of plan ``on`` (default: ``plan_id``'s own message)."""
        target = self.fields(on or plan_id)
        response = self.slack.click(
            action,
            plan_id,
            user=user,
            channel=channel or target.slack_channel,
            ts=ts or target.slack_ts,
            **kwargs,
        )
        assert response.status_code == 200, response.text
        self.service.join()

    def click_body(self, plan_id: str, user: str = APPROVER, action: str = APPROVE_ACTION) -> str:
        """The form body of a click on plan ``plan_id``'s own message, to post by hand."""
        fields = self.fields(plan_id)
        return self.slack.click_body(
            action, plan_id, user=user, channel=fields.slack_channel, ts=fields.slack_ts
        )

    def approve(self, plan_id: str, user: str = APPROVER, **kwargs: Any) -> None:
        self.click(APPROVE_ACTION, plan_id, user, **kwargs)

    def reject(self, plan_id: str, user: str = APPROVER, **kwargs: Any) -> None:
        self.click(REJECT_ACTION, plan_id, user, **kwargs)

    def message(self, plan_id: str) -> dict[str, Any]:
        fields = self.fields(plan_id)
        return self.fake.current(fields.slack_channel, fields.slack_ts)

    def thread(self, plan_id: str) -> list[str]:
        return self.fake.thread(self.fields(plan_id).slack_ts)

    def existing(self) -> dict[str, bool]:
        """Which pushed images still exist in the registry, by name."""
        return {
            name: self.pusher.manifest_exists(image.repository, image.digest)
            for name, image in self.images.items()
        }


def plan_id_of(message: dict[str, Any]) -> str:
    for block in message["blocks"]:
        if block["type"] == "actions":
            return str(block["elements"][0]["value"])
    raise AssertionError(f"no buttons in {message['text']}")


def has_buttons(message: dict[str, Any]) -> bool:
    return any(block["type"] == "actions" for block in message["blocks"])


def message_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


@pytest.fixture(scope="module")
def registry(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """One registry per module and worker; each test works in its own repositories."""
    server = RegistryServer(
        tmp_path_factory.mktemp("registry"), binary=registry_binary, delete_enabled=True
    ).start()
    yield server
    server.stop()


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(groups={GROUP: [GROUP_MEMBER]}) as server:
        yield server


@pytest.fixture
def make_bot(
    registry: RegistryServer, fake: FakeSlack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Bot]]:
    """Build a bot over a fresh state DB and a repository of its own with five images:
    old1..old3 (30 days, selected), fresh (1 day) and latest (30 days, kept by tag)."""
    made: list[Bot] = []
    repo = "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10] + "/app"

    def make(
        *,
        slack: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        extra_policies: dict[str, Any] | None = None,
        registry_extra: dict[str, Any] | None = None,
        progress_every: int = 25,
        push: bool = True,
    ) -> Bot:
        clock = Clock()
        data: dict[str, Any] = {
            "registry": {"local": {"url": registry.url, **(registry_extra or {})}},
            "policy": {
                "ci": {
                    "registry": "local",
                    "repositories": [repo.split("/")[0] + "/*"],
                    "keep_tags": ["^latest$"],
                    "selectors": [{"use": "age", "older_than": "7d"}],
                    "approval": "slack",
                    **(policy or {}),
                },
                **(extra_policies or {}),
            },
            "slack": {
                "channel": CHANNEL,
                "approvers": [APPROVER, APPROVER2, REQUESTER],
                "approver_groups": [GROUP],
                "team_id": TEAM,
                "api_url": fake.api_url,
                **(slack or {}),
            },
        }
        settings = parse_settings(data)
        state_path = tmp_path / f"state-{len(made)}.db"
        client = WebClient(token=TOKEN, base_url=fake.api_url)
        service = SlackService(
            settings,
            state_path,
            client,
            manager=get_plugin_manager(load_entrypoints=False),
            now=clock,
            progress_every=progress_every,
            progress_seconds=3600,
        )
        app = create_app(
            settings,
            state_path,
            client=client,
            service=service,
            signing_secret=SECRET,
            process_before_response=True,
        )
        server = HttpServer(app, host="127.0.0.1", port=0, poll_interval=0.05).start()
        pusher = ImagePusher(registry.url)
        bot = Bot(
            fake=fake,
            service=service,
            server=server,
            slack=SlackRequests(server.url, SECRET, fake),
            settings=settings,
            state_path=state_path,
            pusher=pusher,
            repo=repo,
            clock=clock,
        )
        if push and not made:
            for name in ("old1", "old2", "old3"):
                bot.images[name] = pusher.push_image(repo, [f"build-{name}"], created=days_ago(30))
            bot.images["fresh"] = pusher.push_image(repo, ["build-fresh"], created=days_ago(1))
            bot.images["latest"] = pusher.push_image(repo, ["latest"], created=days_ago(30))
        elif made:
            bot.images = made[0].images
        made.append(bot)
        return bot

    yield make
    for bot in made:
        bot.server.shutdown()
        bot.service.close()
        bot.slack.close()
        bot.pusher.close()


OLD = {"old1": False, "old2": False, "old3": False, "fresh": True, "latest": True}
UNTOUCHED = {"old1": True, "old2": True, "old3": True, "fresh": True, "latest": True}


# -- the main story ----------------------------------------------------------------------


def test_plan_posted_from_a_policy_approved_by_an_approver_prunes_exactly_what_it_showed(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot(progress_every=1)

    ack = bot.command("plan ci")
    assert ack["response_type"] == "ephemeral" and "Planning `ci`" in ack["text"]

    message = bot.fake.top_level_posts()[-1]
    plan_id = plan_id_of(message)
    plan = bot.plan(plan_id)
    shown = {item.digest for item in plan.delete}
    assert shown == {bot.images[n].digest for n in ("old1", "old2", "old3")}
    # The message: summary, requester, expiry and both buttons carrying the plan id.
    text = message_text(message)
    assert "*3* image(s)" in text and f"<@{REQUESTER}>" in text and "Expires" in text
    buttons = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (APPROVE_ACTION, plan_id),
        (REJECT_ACTION, plan_id),
    ]
    # The full list is in the thread, every digest of the plan.
    listing = "\n".join(bot.thread(plan_id))
    for digest in shown:
        assert digest.split(":")[1][:12] in listing
    assert bot.fake.responses()[-1]["text"].startswith(f"Plan {plan_id} for `ci` is posted")
    assert bot.existing() == UNTOUCHED

    bot.approve(plan_id, APPROVER)

    assert bot.existing() == OLD
    assert bot.plan(plan_id).status == "done"
    updated = bot.message(plan_id)
    assert not has_buttons(updated)
    assert f"Approved by <@{APPROVER}> at" in message_text(updated)
    thread = bot.thread(plan_id)
    assert any(t.startswith(":gear: Progress: 1 of 3") for t in thread)
    result = next(t for t in thread if f"Plan {plan_id} done" in t)
    assert "deleted 3, skipped 0, failed 0" in result
    assert bot.fake.ephemerals(APPROVER)[-1].startswith(f"Plan {plan_id} is approved")


def test_cli_made_plan_is_posted_by_the_poller_and_the_cli_waits_for_slack(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot()
    plan = bot.cli_plan()
    with bot.state() as state:
        engine = Engine(bot.settings, state, manager=bot.service.manager)
        with pytest.raises(UsageError, match="waiting for approval"):
            engine.apply(plan.id, context=ApprovalContext(True, False, "ci@host"))
    assert bot.fields(plan.id).slack_ts is None

    bot.service.poll_once()
    bot.service.poll_once()  # posted once, not twice

    posts = [p for p in bot.fake.top_level_posts() if plan_id_of(p) == plan.id]
    assert len(posts) == 1
    assert bot.fields(plan.id).slack_ts == posts[0]["ts"]
    assert bot.fields(plan.id).expires_at == plan.created_at + timedelta(hours=24)
    # The CLI requester is not a Slack user: any approver may approve.
    bot.approve(plan.id, APPROVER)
    assert bot.existing() == OLD


def test_a_policy_schedule_makes_the_bot_plan_and_post(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(policy={"schedule": "*/10 * * * *"})
    schedules = Schedules(check_schedules(bot.settings), bot.clock())
    background = Background(bot.service, interval=3600, schedules=schedules)

    background.tick()
    bot.service.join()
    assert bot.fake.top_level_posts() == []

    bot.clock.advance(timedelta(minutes=10, seconds=1))
    background.tick()
    bot.service.join()

    plan_id = plan_id_of(bot.fake.top_level_posts()[-1])
    assert bot.plan(plan_id).requested_by == "schedule"
    bot.approve(plan_id, APPROVER)
    assert bot.existing() == OLD


# -- rule 1: signatures -------------------------------------------------------------------


def test_requests_with_a_bad_signature_are_refused(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    body = bot.click_body(plan_id)

    assert bot.slack.post(body, secret="not-the-signing-secret").status_code == 401
    assert bot.slack.post(body, signature="v0=" + "0" * 64).status_code == 401
    assert (
        bot.slack.post(
            body.replace(APPROVER, APPROVER2), signature=sign(SECRET, int(time.time()), body)
        ).status_code
        == 401
    )
    bot.service.join()

    assert bot.plan(plan_id).status == "pending"
    assert bot.fake.of("chat.update") == [] and bot.fake.ephemerals() == []
    assert bot.existing() == UNTOUCHED


def test_requests_older_than_five_minutes_are_refused(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    body = bot.click_body(plan_id)

    old = bot.slack.post(body, timestamp=int(time.time()) - 6 * 60)  # correctly signed, but old
    bot.service.join()
    assert old.status_code == 401
    assert bot.plan(plan_id).status == "pending"
    assert bot.existing() == UNTOUCHED

    fresh = bot.slack.post(body)  # the same click, now
    bot.service.join()
    assert fresh.status_code == 200
    assert bot.plan(plan_id).status == "done"


# -- rule 2: only approvers, by ID and team; fail closed ------------------------------------


def test_only_listed_approvers_may_approve_or_reject(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()

    bot.approve(plan_id, OUTSIDER)
    bot.reject(plan_id, OUTSIDER)
    # A name is never an identity: an outsider whose user name is an approver's ID.
    bot.approve(plan_id, OUTSIDER, username=APPROVER)

    replies = bot.fake.ephemerals(OUTSIDER)
    assert len(replies) == 3 and all("not allowed" in r for r in replies)
    assert bot.plan(plan_id).status == "pending"
    with bot.state() as state:
        assert state.approvals.of(plan_id) == []
    assert bot.fake.of("chat.update") == []
    assert len(bot.audit("slack.refused", plan_id)) == 3
    assert bot.existing() == UNTOUCHED


def test_clicks_from_another_workspace_are_refused(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()

    bot.approve(plan_id, APPROVER, team="T0OTHER001")
    bot.approve(plan_id, APPROVER, user_team="T0OTHER001")  # a guest from elsewhere

    assert all("own Slack workspace" in r for r in bot.fake.ephemerals(APPROVER))
    assert bot.plan(plan_id).status == "pending"
    assert bot.existing() == UNTOUCHED


def test_approver_groups_are_resolved_at_click_time(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()

    bot.approve(plan_id, GROUP_MEMBER)

    calls = bot.fake.of("usergroups.users.list")
    assert [c.params["usergroup"] for c in calls] == [GROUP]
    assert bot.plan(plan_id).status == "done"
    assert bot.existing() == OLD


def test_groups_that_cannot_be_listed_fall_back_to_the_static_list(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    bot.fake.fail("usergroups.users.list", error="missing_scope", times=10)

    bot.approve(plan_id, GROUP_MEMBER)
    assert "not allowed" in bot.fake.ephemerals(GROUP_MEMBER)[-1]
    assert bot.plan(plan_id).status == "pending"

    bot.approve(plan_id, APPROVER)  # listed by ID: still allowed
    assert bot.plan(plan_id).status == "done"


# -- rule 3: no self-approval, N distinct approvers, one reject ends it --------------------


def test_the_requester_cannot_approve_their_own_plan(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan(user=REQUESTER)

    bot.approve(plan_id, REQUESTER)

    assert "cannot approve it yourself" in bot.fake.ephemerals(REQUESTER)[-1]
    assert bot.plan(plan_id).status == "pending"
    assert bot.existing() == UNTOUCHED


def test_self_approval_when_allowed(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(slack={"allow_self_approval": True})
    plan_id = bot.request_plan(user=REQUESTER)

    bot.approve(plan_id, REQUESTER)

    assert bot.plan(plan_id).status == "done"
    assert bot.existing() == OLD


def test_approvals_required_counts_distinct_approvers(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(slack={"approvals_required": 2})
    plan_id = bot.request_plan()

    bot.approve(plan_id, APPROVER)
    assert bot.plan(plan_id).status == "pending"
    assert "1 of 2" in message_text(bot.message(plan_id)) and has_buttons(bot.message(plan_id))

    bot.approve(plan_id, APPROVER)  # the same person again does not count twice
    assert "already approved" in bot.fake.ephemerals(APPROVER)[-1]
    assert bot.plan(plan_id).status == "pending"
    assert bot.existing() == UNTOUCHED

    bot.approve(plan_id, APPROVER2)
    assert bot.plan(plan_id).status == "done"
    assert bot.existing() == OLD
    text = message_text(bot.message(plan_id))
    assert f"<@{APPROVER}>" in text and f"<@{APPROVER2}>" in text


def test_one_reject_ends_the_plan(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(slack={"approvals_required": 2})
    plan_id = bot.request_plan()

    bot.approve(plan_id, APPROVER)
    bot.reject(plan_id, APPROVER2)

    assert bot.plan(plan_id).status == "rejected"
    message = bot.message(plan_id)
    assert not has_buttons(message) and f"Rejected by <@{APPROVER2}>" in message_text(message)
    bot.approve(plan_id, GROUP_MEMBER)
    assert f"already rejected by <@{APPROVER2}>" in bot.fake.ephemerals(GROUP_MEMBER)[-1]
    assert bot.plan(plan_id).status == "rejected"
    assert bot.existing() == UNTOUCHED


# -- rule 4: a click belongs to one plan's message ------------------------------------------


def test_a_click_on_one_plan_never_approves_another(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    first = bot.request_plan()
    second = bot.request_plan()
    one, two = bot.fields(first), bot.fields(second)

    bot.approve(second, APPROVER, on=first)  # second's id on first's message
    bot.approve(first, APPROVER, ts=two.slack_ts)  # first's id, second's message ts
    bot.approve(first, APPROVER, channel="C0ELSEWHERE")  # right ts, wrong channel
    bot.approve("deadbeef", APPROVER, on=first)  # a plan that does not exist

    replies = bot.fake.ephemerals(APPROVER)
    assert len(replies) == 4
    assert all("nothing was changed" in r for r in replies)
    assert bot.plan(first).status == bot.plan(second).status == "pending"
    assert one.slack_ts != two.slack_ts
    assert bot.existing() == UNTOUCHED


# -- rule 5: atomic transitions; double clicks and replays ------------------------------------


def test_double_clicks_and_replayed_payloads_do_nothing_more(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    body = bot.click_body(plan_id)
    stamp = int(time.time())

    assert bot.slack.post(body, timestamp=stamp).status_code == 200
    bot.service.join()
    assert bot.slack.post(body, timestamp=stamp).status_code == 200  # the same request, replayed
    bot.service.join()
    bot.approve(plan_id, APPROVER)  # a second click
    bot.approve(plan_id, APPROVER2)  # someone else, too late

    assert bot.existing() == OLD
    assert len(bot.audit("plan.approved", plan_id)) == 1
    assert len(bot.audit("apply.finished", plan_id)) == 1
    assert len(bot.audit("item.deleted", plan_id)) == 3
    later = bot.fake.ephemerals(APPROVER)[1:] + bot.fake.ephemerals(APPROVER2)
    assert len(later) == 3
    assert all(f"already approved by <@{APPROVER}>" in r for r in later)
    with bot.state() as state:
        assert [a.by for a in state.approvals.of(plan_id)] == [APPROVER]


def test_racing_approvals_apply_once(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    approvers = (APPROVER, APPROVER2, GROUP_MEMBER)
    bodies = [bot.click_body(plan_id, user) for user in approvers]
    # Hold every click at the state transition until all three have passed every other
    # check: only the compare-and-set decides which one wins.
    at_the_gate = threading.Barrier(len(bodies), timeout=20)
    record_decision = Engine.record_decision

    def gated(self: Engine, plan: Plan, approval: Any) -> bool:
        at_the_gate.wait()
        return record_decision(self, plan, approval)

    monkeypatch.setattr(Engine, "record_decision", gated)
    codes: list[int] = []

    def click(body: str) -> None:
        codes.append(bot.slack.post(body).status_code)

    threads = [threading.Thread(target=click, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.service.join()

    assert codes == [200, 200, 200]
    assert len(bot.audit("plan.approved", plan_id)) == 1
    assert len(bot.audit("apply.finished", plan_id)) == 1
    assert len(bot.audit("item.deleted", plan_id)) == 3
    replies = [r for user in approvers for r in bot.fake.ephemerals(user)]
    assert sum(r.endswith("applying it now, progress in the thread.") for r in replies) == 1
    assert sum("already approved" in r for r in replies) == 2
    assert bot.existing() == OLD


# -- rule 6: expiry ---------------------------------------------------------------------------


def test_an_expired_plan_cannot_be_approved_and_its_message_says_so(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot(slack={"plan_ttl": "1h"})
    plan_id = bot.request_plan()
    bot.clock.advance(timedelta(hours=1, minutes=1))

    bot.approve(plan_id, APPROVER)

    assert "expired" in bot.fake.ephemerals(APPROVER)[-1]
    assert bot.plan(plan_id).status == "expired"
    message = bot.message(plan_id)
    assert not has_buttons(message) and "Expired without approval" in message_text(message)
    with bot.state() as state:
        assert state.approvals.of(plan_id) == []  # expiry never counts as approval
    bot.approve(plan_id, APPROVER2)
    assert bot.plan(plan_id).status == "expired"
    assert bot.existing() == UNTOUCHED


def test_the_poller_expires_overdue_plans_and_updates_their_message(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot(slack={"plan_ttl": "2h"})
    plan_id = bot.request_plan()
    bot.service.poll_once()
    assert bot.plan(plan_id).status == "pending"

    bot.clock.advance(timedelta(hours=3))
    bot.service.poll_once()

    assert bot.plan(plan_id).status == "expired"
    assert "Expired without approval" in message_text(bot.message(plan_id))
    # A CLI-made plan already past its time is never posted, only marked expired.
    stale = bot.cli_plan()
    bot.clock.advance(timedelta(hours=3))
    bot.service.poll_once()
    assert bot.plan(stale.id).status == "expired"
    assert bot.fields(stale.id).slack_ts is None


# -- rule 7: re-validation against the registry ------------------------------------------------


def test_what_changed_since_the_plan_is_skipped_and_reported_in_the_thread(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot()
    plan_id = bot.request_plan()
    moved = bot.images["old2"]
    bot.pusher.tag(bot.repo, moved.digest, "hotfix")  # pushed after the plan was shown

    bot.approve(plan_id, APPROVER)

    assert bot.existing() == {**OLD, "old2": True}
    assert bot.pusher.resolve(bot.repo, "hotfix") == moved.digest
    thread = "\n".join(bot.thread(plan_id))
    assert "deleted 2, skipped 1" in thread
    assert "tags changed since the plan" in thread and "hotfix" in thread


# -- rule 8: Slack failures never stop, repeat or extend deletions ------------------------------


def test_slack_failures_while_posting_progress_never_stop_or_repeat_deletions(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot(progress_every=1)
    plan_id = bot.request_plan()

    def progress(params: dict[str, Any]) -> bool:
        return str(params.get("text", "")).startswith(":gear: Progress")

    bot.fake.fail("chat.postMessage", status=500, when=progress)
    bot.fake.fail("chat.postMessage", error="channel_not_found", when=progress)
    bot.fake.fail("chat.postMessage", status=429, retry_after=30, when=progress)
    bot.fake.fail("chat.update", status=500, times=5)
    # The final report is rate limited once: it is posted again after Retry-After.
    bot.fake.fail(
        "chat.postMessage",
        status=429,
        retry_after=0.2,
        when=lambda p: f"Plan {plan_id} done" in str(p.get("text", "")),
    )

    bot.approve(plan_id, APPROVER)

    assert bot.existing() == OLD  # exactly the approved deletions, nothing else
    assert bot.plan(plan_id).status == "done"
    deleted = [e.details["digest"] for e in bot.audit("item.deleted", plan_id)]
    assert sorted(deleted) == sorted(bot.images[n].digest for n in ("old1", "old2", "old3"))
    assert len(bot.audit("apply.finished", plan_id)) == 1
    assert sum(f"Plan {plan_id} done" in t for t in bot.thread(plan_id)) == 1


def plan_on_a_registry_that_refuses_deletes(
    make_bot: Callable[..., Bot], registry_factory: Callable[..., RegistryServer]
) -> tuple[Bot, str]:
    """A bot on a registry with deletes disabled, one old image, and a plan for it."""
    readonly = registry_factory(delete_enabled=False)
    bot = make_bot(push=False, registry_extra={"url": readonly.url})
    with ImagePusher(readonly.url) as pusher:
        pusher.push_image(bot.repo, ["build-1"], created=days_ago(30))
    return bot, bot.request_plan()


def test_a_failed_apply_is_reported_and_not_retried_by_the_bot(
    make_bot: Callable[..., Bot], registry_factory: Callable[..., RegistryServer]
) -> None:
    bot, plan_id = plan_on_a_registry_that_refuses_deletes(make_bot, registry_factory)

    bot.approve(plan_id, APPROVER)

    thread = "\n".join(bot.thread(plan_id))
    assert f"Apply of plan {plan_id} stopped" in thread
    assert "storage.delete.enabled" in thread
    # Refused before anything was deleted: a failure event, and the plan needs a new approval.
    assert bot.plan(plan_id).status == "pending"
    assert "pending again" in thread and "approve it again" in thread
    assert len(bot.audit("apply.refused", plan_id)) == 1
    assert len(bot.audit("item.deleted", plan_id)) == 0
    # Its approvals are void: the same approver can approve again (refused again here).
    bot.approve(plan_id, APPROVER)
    assert len(bot.audit("apply.refused", plan_id)) == 2
    assert bot.plan(plan_id).status == "pending"


# -- rule 9: secrets -----------------------------------------------------------------------------


def test_tokens_and_secrets_never_appear_in_logs_or_messages(make_bot: Callable[..., Bot]) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    filt = install(Redactor([TOKEN, SECRET]), root)
    try:
        bot = make_bot(progress_every=1)
        bot.service.redact.add(SECRET)
        plan_id = bot.request_plan()
        bot.slack.post("payload=%7B%7D", secret="wrong-secret")  # bolt logs refused requests
        bot.approve(plan_id, APPROVER)
        # A secret reaching a message or a log line by accident is redacted on the way out.
        log = logging.getLogger("regprune.bots.slack.test")
        log.warning("token %s and secret %s", TOKEN, SECRET)
        try:
            raise RuntimeError(f"boom with {TOKEN}")
        except RuntimeError:
            log.exception("failure")
        fields = bot.fields(plan_id)
        bot.service.say_in_thread(fields.slack_channel, fields.slack_ts, f"oops {TOKEN} {SECRET}")
    finally:
        for h in root.handlers:
            h.removeFilter(filt)
        root.removeHandler(handler)
        root.setLevel(old_level)

    logged = stream.getvalue()
    assert "slack_sdk" in logged or "regprune" in logged  # debug logging was on
    assert "[redacted]" in logged
    assert TOKEN not in logged and SECRET not in logged and "TestBotTokenValue" not in logged
    sent = json.dumps([c.params for c in bot.fake.calls])
    assert TOKEN not in sent and SECRET not in sent
    assert "oops [redacted] [redacted]" in bot.thread(plan_id)


# -- gc, slash commands, large plans -------------------------------------------------------------


def test_gc_runs_after_the_apply_when_the_policy_asks(
    make_bot: Callable[..., Bot], registry: RegistryServer
) -> None:
    bot = make_bot(policy={"gc": True}, registry_extra={"gc": {"command": registry.gc_command()}})
    plan_id = bot.request_plan()

    bot.approve(plan_id, APPROVER)

    assert bot.existing() == OLD
    thread = bot.thread(plan_id)
    assert any(t.startswith(":broom: Garbage collection on `local` ok") for t in thread)
    with bot.state() as state:
        assert state.gc_runs.recent(registry="local")[0].ok


def test_slash_command_help_and_bad_arguments(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(
        push=False,
        extra_policies={
            "manual": {
                "registry": "local",
                "repositories": ["x/*"],
                "selectors": [{"use": "age", "older_than": "1d"}],
            }
        },
    )
    cases = {
        "": None,
        "help": None,
        "frobnicate": "Unknown subcommand `frobnicate`",
        "plan": "Usage: `/regprune plan &lt;policy&gt;`",
        "plan a b": "Usage",
        "history now": "takes no arguments",
        "status": "Usage: `/regprune status &lt;plan-id&gt;`",
        "plan nope": "Unknown policy `nope`",
        "plan manual": "not in Slack",
        "status zz": "no plan 'zz'",
    }
    for text, problem in cases.items():
        ack = bot.command(text)
        assert ack["response_type"] == "ephemeral", text
        assert "/regprune plan &lt;policy&gt;" in ack["text"], text
        if problem:
            assert problem in ack["text"], text
    assert bot.fake.top_level_posts() == []


def test_status_cancel_and_history(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    plan_id = bot.request_plan(user=REQUESTER)

    status = bot.command(f"status {plan_id[:6]}")
    assert f"*Plan {plan_id}*" in status["text"] and "*pending*" in status["text"]

    bot.command(f"cancel {plan_id}", user=OUTSIDER)
    assert "Only approvers and the requester" in bot.fake.responses()[-1]["text"]
    assert bot.plan(plan_id).status == "pending"

    bot.command(f"cancel {plan_id}", user=REQUESTER)
    assert bot.fake.responses()[-1]["text"] == f"Plan {plan_id} is cancelled."
    assert bot.plan(plan_id).status == "cancelled"
    message = bot.message(plan_id)
    assert not has_buttons(message) and f"Cancelled by <@{REQUESTER}>" in message_text(message)

    bot.approve(plan_id, APPROVER)
    assert "cancelled" in bot.fake.ephemerals(APPROVER)[-1]
    assert f"`{plan_id}`" in bot.command("history")["text"]
    assert bot.existing() == UNTOUCHED


def test_large_plans_get_their_list_as_a_file(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "FILE_THRESHOLD", 2)
    bot = make_bot()
    plan_id = bot.request_plan()

    complete = bot.fake.of("files.completeUploadExternal")
    assert len(complete) == 1 and complete[0].params["thread_ts"] == bot.fields(plan_id).slack_ts
    uploaded = bot.fake.of("upload")[0].params["body"]
    for name in ("old1", "old2", "old3"):
        assert bot.images[name].digest in uploaded

    # Without the files:write scope, the list falls back to threaded replies.
    bot.fake.fail("files.getUploadURLExternal", error="missing_scope")
    second = bot.request_plan()
    assert any("Delete list 1 to 3 of 3" in t for t in bot.thread(second))
