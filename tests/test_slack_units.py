"""The Slack bot's pure parts and its start-up checks, without a registry."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from regprune.bots.slack import blocks
from regprune.bots.slack.app import create_app
from regprune.bots.slack.background import Schedules, check_schedules
from regprune.bots.slack.listeners.commands.regprune_command import Parsed, parse
from regprune.bots.slack.progress import ThreadProgress
from regprune.bots.slack.redact import RedactingFilter, Redactor
from regprune.bots.slack.runner import check_settings
from regprune.bots.slack.server import HttpServer
from regprune.cli import run
from regprune.config import parse_settings
from regprune.errors import ConfigError
from regprune.models import ApplyResult, ItemOutcome, Plan, PlanItem, PlanSummary

from .slack_fake import FakeSlack

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def settings(slack: dict[str, Any] | None, approval: str = "slack", **policy: Any):
    data: dict[str, Any] = {
        "registry": {"local": {"url": "http://127.0.0.1:1"}},
        "policy": {
            "ci": {
                "registry": "local",
                "repositories": ["ci/*"],
                "selectors": [{"use": "age", "older_than": "7d"}],
                "approval": approval,
                **policy,
            }
        },
    }
    if slack is not None:
        data["slack"] = slack
    return parse_settings(data)


def item(
    seq: int, repository: str = "ci/app", reasons: tuple[str, ...] = ("age: old",)
) -> PlanItem:
    return PlanItem(
        seq=seq,
        repository=repository,
        digest=f"sha256:{seq:064x}",
        tags=(f"build-{seq}",),
        role="image",
        parent=None,
        media_type="application/vnd.oci.image.manifest.v1+json",
        created=None,
        size=1000 + seq,
        reasons=reasons,
    )


def plan(items: list[PlanItem], status: str = "pending") -> Plan:
    repos: dict[str, int] = {}
    for i in items:
        repos[i.repository] = repos.get(i.repository, 0) + 1
    return Plan(
        id="abcd1234",
        registry="local",
        registry_url="http://127.0.0.1:1",
        policy="ci",
        created_at=NOW,
        delete=items,
        keep=[],
        summary=PlanSummary(len(items), len(items), len(items), 12345, 2, repos),
        approval="slack",
        gc=False,
        status=status,  # type: ignore[arg-type]
        requested_by="slack:U0REQUEST1",
    )


def view(p: Plan, status: str = "pending", **kwargs: Any) -> blocks.PlanView:
    return blocks.PlanView(
        plan=p, status=status, requested_by=p.requested_by, expires_at=NOW, required=1, **kwargs
    )


# -- Block Kit builders ------------------------------------------------------------------


def test_pending_message_has_buttons_with_the_plan_id_and_decided_ones_do_not() -> None:
    p = plan([item(1), item(2)])
    pending = blocks.plan_message(view(p))
    actions = [b for b in pending["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions[0]["elements"]] == [
        ("regprune_approve", "abcd1234"),
        ("regprune_reject", "abcd1234"),
    ]
    assert "<@U0REQUEST1>" in str(pending["blocks"])
    for status in ("approved", "applying", "done", "failed", "rejected", "expired", "cancelled"):
        message = blocks.plan_message(view(p, status, approvals=[("U0APPROVE1", NOW)]))
        assert all(b["type"] != "actions" for b in message["blocks"]), status
        assert blocks.STATUS_LINES[status] in str(message["blocks"])


def test_messages_stay_within_block_kit_limits_for_huge_plans() -> None:
    items = [item(i, f"team-{i}/service-{i}", ("x" * 400, f"reason {i % 7}")) for i in range(800)]
    p = plan(items)
    p.warnings = ["w" * 5000] * 5
    message = blocks.plan_message(view(p, note="n" * 4000))
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                assert len(element["text"]) <= 3000
    chunks = blocks.list_messages(p)
    assert len(chunks) == 32 and all(len(c) <= 4000 for c in chunks)
    assert blocks.list_file(p).count("\n") == 800 + 4
    outcomes = [ItemOutcome(i, "skipped", "y" * 300) for i in items]
    result = blocks.apply_result_message(ApplyResult("abcd1234", "done", outcomes))
    assert all(len(b["text"]["text"]) <= 3000 for b in result["blocks"] if b["type"] == "section")


def test_a_plan_that_only_untags_is_shown_apart_and_can_be_approved() -> None:
    from dataclasses import replace

    from regprune.models import UntagItem

    p = plan([])
    p.untag = [
        UntagItem(0, "ci/app", "pr-1", f"sha256:{7:064x}", ("shares digest with kept tag 'main'",))
    ]
    p.untag_method = "tag_delete"
    p.summary = replace(p.summary, untags=1)
    message = blocks.plan_message(view(p))
    assert "*1* tag(s) removed from kept images (untag)" in str(message["blocks"])
    assert any(b["type"] == "actions" for b in message["blocks"])  # approvable
    chunks = blocks.list_messages(p)
    assert len(chunks) == 1 and chunks[0].startswith(
        "*Untag (tags removed, images stay) 1 to 1 of 1*"
    )
    assert "pr-1" in chunks[0] and "Delete list" not in chunks[0]


def test_user_text_is_escaped_and_mentions_only_for_ids() -> None:
    assert blocks.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert blocks.mention("slack:U0ABC123") == "<@U0ABC123>"
    assert blocks.mention("U0ABC123") == "<@U0ABC123>"
    assert blocks.mention("ci@build-host") == "`ci@build-host`"
    assert blocks.mention("<!here>") == "`&lt;!here&gt;`"


# -- slash command parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Parsed("help")),
        ("  HELP ", Parsed("help")),
        ("plan ci", Parsed("plan", "ci")),
        ("status abcd", Parsed("status", "abcd")),
        ("cancel abcd1234", Parsed("cancel", "abcd1234")),
        ("history", Parsed("history")),
        ("plan", "Usage: `/regprune plan <policy>`."),
        ("cancel a b", "Usage: `/regprune cancel <plan-id>`."),
        ("help me", "`help` takes no arguments."),
        ("delete everything", "Unknown subcommand `delete`."),
    ],
)
def test_parse(text: str, expected: Parsed | str) -> None:
    assert parse(text) == expected


# -- progress --------------------------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_is_batched_by_count_and_time() -> None:
    posted: list[str] = []
    ticks = Ticks()
    progress = ThreadProgress(posted.append, 10, every=3, seconds=60, clock=ticks)
    for i in range(1, 6):
        progress(item(i), "deleted", "")
    assert posted == [":gear: Progress: 3 of 10 (3 deleted)"]
    ticks.t = 61
    progress(item(6), "skipped", "tags changed")
    assert posted[-1] == ":gear: Progress: 6 of 10 (5 deleted, 1 skipped)"
    for i in range(7, 11):
        progress(item(i), "deleted", "")
    assert len(posted) == 3  # 9 of 10; the last item is left to the final report


def test_progress_never_raises_and_stays_quiet_after_a_429() -> None:
    ticks = Ticks()
    calls: list[str] = []

    def rate_limited(text: str) -> None:
        calls.append(text)
        response = SlackResponse(
            client=None,
            http_verb="POST",
            api_url="chat.postMessage",
            req_args={},
            data={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": "30"},
            status_code=429,
        )
        raise SlackApiError("ratelimited", response)

    progress = ThreadProgress(rate_limited, 100, every=1, seconds=60, clock=ticks)
    for i in range(1, 10):
        progress(item(i), "deleted", "")
    assert len(calls) == 1 and progress.failures == 1
    ticks.t = 31
    progress(item(10), "deleted", "")
    assert len(calls) == 2

    def broken(text: str) -> None:
        raise OSError("connection reset")

    other = ThreadProgress(broken, 5, every=1, clock=ticks)
    for i in range(1, 6):
        other(item(i), "failed", "boom")
    assert other.failures == 4 and other.done == 5


# -- redaction -------------------------------------------------------------------------------


def test_redactor_hides_known_secrets_and_token_shapes() -> None:
    redact = Redactor(["s3cr3t-signing-value", None, ""])
    text = "xoxb-111-222-abc and xapp-1-A0-xyz and xoxp-9-8 and s3cr3t-signing-value"
    assert redact(text) == "[redacted] and [redacted] and [redacted] and [redacted]"
    assert redact("no secrets, xoxo") == "no secrets, xoxo"


def test_redacting_filter_covers_arguments_and_tracebacks() -> None:
    filt = RedactingFilter(Redactor(["signing-secret-123"]))
    try:
        raise ValueError("bad token xoxb-1-2-secret")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "got %s", ("signing-secret-123",), sys.exc_info()
        )
    assert filt.filter(record)
    formatted = logging.Formatter().format(record)
    assert "signing-secret-123" not in formatted and "xoxb-1-2-secret" not in formatted
    assert "got [redacted]" in formatted and "ValueError: bad token [redacted]" in formatted


# -- schedules ---------------------------------------------------------------------------------


def test_schedules_fire_once_when_due_and_move_on() -> None:
    s = settings({"channel": "C1", "approvers": ["U0APPROVE1"]}, schedule="0 6 * * *")
    schedules = Schedules(check_schedules(s), NOW)
    assert schedules.due(NOW + timedelta(hours=10)) == []
    assert schedules.due(NOW + timedelta(hours=18, minutes=1)) == ["ci"]
    assert schedules.due(NOW + timedelta(hours=18, minutes=2)) == []
    assert schedules.next_at["ci"] == datetime(2025, 3, 3, 6, 0, tzinfo=UTC)


def test_bad_cron_is_a_config_error_and_non_slack_schedules_are_ignored() -> None:
    with pytest.raises(ConfigError, match=r"policy\.ci\.schedule: invalid cron expression"):
        check_schedules(settings({"channel": "C1"}, schedule="every day"))
    assert check_schedules(settings(None, approval="cli", schedule="0 6 * * *")) == {}


# -- start-up checks: fail closed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("slack", "message"),
    [
        (None, "no [slack] section"),
        ({"approvers": ["U0APPROVE1"]}, "slack.channel: required"),
        ({"channel": "C1"}, "no approvers configured while policy ci"),
        ({"channel": "C1", "approvers": ["@alice"]}, "approvers are listed by ID, never by name"),
        ({"channel": "C1", "approver_groups": ["admins"]}, "not a Slack user-group ID"),
        ({"channel": "C1", "approvers": ["U0APPROVE1"], "team_id": "acme"}, "not a Slack team ID"),
        (
            {"channel": "C1", "approvers": ["U0APPROVE1"], "approvals_required": 2},
            "2 approvals can never be reached with 1 approver",
        ),
    ],
)
def test_check_settings_refuses_unsafe_configs(slack: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_settings(settings(slack))


def test_check_settings_accepts_groups_only() -> None:
    check_settings(settings({"channel": "C1", "approver_groups": ["S0GROUP001"]}))


def write_config(tmp_path: Path, slack: str) -> Path:
    path = tmp_path / "regprune.toml"
    path.write_text(
        '[registry.local]\nurl = "http://127.0.0.1:1"\n\n'
        '[policy.ci]\nregistry = "local"\nrepositories = ["ci/*"]\n'
        'selectors = [{ use = "age", older_than = "7d" }]\napproval = "slack"\n\n' + slack
    )
    return path


def test_bot_refuses_to_start_without_approvers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-2-unit-test-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "unit-test-signing-secret")
    config = write_config(tmp_path, '[slack]\nchannel = "C0PRUNE001"\n')

    code = run(
        [
            "--config",
            str(config),
            "--state",
            str(tmp_path / "s.db"),
            "bot",
            "slack",
            "--http",
            "--port",
            "0",
        ]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(
        "error: slack.approvers: no approvers configured"
    )
    assert "fail closed" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "flags", "missing"),
    [
        ({}, ["--http"], "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1-2-unit-test-token"}, ["--http"], "SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": "xoxb-1-2-unit-test-token"}, [], "SLACK_APP_TOKEN"),
    ],
)
def test_missing_tokens_are_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    flags: list[str],
    missing: str,
) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = write_config(tmp_path, '[slack]\nchannel = "C0PRUNE001"\napprovers = ["U0APPROVE1"]\n')

    code = run(["--config", str(config), "--state", str(tmp_path / "s.db"), "bot", "slack", *flags])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {missing} is not set")
    assert "unit-test-token" not in err


def test_http_mode_needs_a_signing_secret_and_binds_loopback() -> None:
    s = settings({"channel": "C1", "approvers": ["U0APPROVE1"]})
    with FakeSlack() as fake:
        client = WebClient(token="xoxb-1-2-unit", base_url=fake.api_url)
        with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
            create_app(s, ":memory:", client=client)
        app = create_app(s, ":memory:", client=client, signing_secret="unit-signing-secret")
        assert [c.method for c in fake.calls] == ["auth.test"]  # the token is verified at start
        server = HttpServer(app, port=0)
        try:
            assert server.host == "127.0.0.1"
            assert server.url.endswith("/slack/events")
        finally:
            server.shutdown()


def test_the_cli_does_not_import_slack_bolt_to_start() -> None:
    code = (
        "import sys; from regprune.plugin_manager import get_plugin_manager; "
        "from regprune.cli import make_app; make_app(get_plugin_manager()); "
        "print('slack_bolt' in sys.modules, 'slack_sdk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# -- docs and the shipped manifest -------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SLACK_DOC = ROOT / "docs" / "slack.md"
MANIFEST = ROOT / "bots" / "slack" / "manifest.yml"


def test_docs_cover_every_slack_key_and_their_example_is_a_valid_config() -> None:
    import re
    import tomllib

    from regprune.bots.slack.settings import SlackSettings, configured

    text = SLACK_DOC.read_text(encoding="utf-8")
    for key in SlackSettings.model_fields:
        assert re.search(rf"^\| `{key}` \|", text, re.MULTILINE), f"[slack].{key} is not documented"
    example = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    parsed = parse_settings(tomllib.loads(example.group(1)))
    assert configured(parsed) is not None
    check_settings(parsed)


def test_the_manifest_declares_what_the_bot_uses_and_the_docs_name_its_scopes() -> None:
    manifest = MANIFEST.read_text(encoding="utf-8")
    doc = SLACK_DOC.read_text(encoding="utf-8")
    for scope in ("chat:write", "commands", "usergroups:read", "files:write"):
        assert f"      - {scope}" in manifest
        assert f"`{scope}`" in doc
    assert "    - command: /regprune" in manifest
    assert "  interactivity:\n    is_enabled: true" in manifest
    assert "  socket_mode_enabled: true" in manifest
    assert "  bot_user:" in manifest


def test_regprune_bot_slack_serves_http_and_stops_cleanly(tmp_path: Path) -> None:
    """The real command: HTTP mode on loopback, a signed request answered, Ctrl-C, no secrets logged."""
    import os
    import queue
    import re
    import signal
    import threading

    from .slack_fake import SlackRequests

    token, secret = "xoxb-7-8-subprocess-test-token", "subprocess-signing-secret"
    with FakeSlack() as fake:
        config = write_config(
            tmp_path,
            '[slack]\nchannel = "C0PRUNE001"\napprovers = ["U0APPROVE1"]\n'
            f'api_url = "{fake.api_url}"\n',
        )
        env = {**os.environ, "SLACK_BOT_TOKEN": token, "SLACK_SIGNING_SECRET": secret}
        command = [sys.executable, "-m", "regprune", "--config", str(config)]
        command += ["--state", str(tmp_path / "state.db"), "bot", "slack", "--http", "--port", "0"]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        logged: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                logged.append(line)
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            url = None
            while url is None:
                line = lines.get(timeout=30)
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+/slack/events)", line)
                url = found.group(1) if found else None
            slack = SlackRequests(url, secret, fake)
            try:
                answer = slack.command("help", user="U0APPROVE1")
            finally:
                slack.close()
            assert answer.status_code == 200 and "/regprune plan" in answer.json()["text"]
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
            reader.join(timeout=5)
    assert proc.returncode == 0, "".join(logged)
    everything = out + "".join(logged)
    assert token not in everything and secret not in everything
    assert [c.method for c in fake.calls][:1] == ["auth.test"]
