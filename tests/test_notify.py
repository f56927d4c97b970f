"""Run reports through the real command line to real receivers on loopback.

A webhook and a Slack incoming webhook (stdlib HTTP servers in threads), an SMTP
server (aiosmtpd): the report's schema and signature, retries after a 500, a
receiver that hangs (one warning line, the prune still done, the exit code
unchanged), the policy and outcome filters, and failure reports from plan, apply,
run and gc (a registry refusing deletes, a broken policy, a failing GC command).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from regprune.notify import SCHEMA, SCHEMA_VERSION, SIGNATURE_HEADER
from regprune.testing import ImagePusher, days_ago
from tests.receivers import HttpReceiver, SmtpReceiver

pytestmark = pytest.mark.usefixtures("isolated_cli")

SECRET = "s3cret-for-tests"
POLICY = """\
[registry.local]
url = "{url}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
keep_tags = ["^latest$"]
selectors = [{{ use = "age", older_than = "14d" }}]
approval = "auto"
"""


def write_config(tmp_path: Path, url: str, notify: str, policy: str = POLICY) -> Path:
    path = tmp_path / "regprune.toml"
    path.write_text(policy.format(url=url) + "\n" + notify, encoding="utf-8")
    return path


def webhook(url: str, *, on: str = '["failure", "success", "deleted"]', extra: str = "") -> str:
    return f'[notify.hook]\nuse = "webhook"\nurl = "{url}/hook"\non = {on}\n{extra}\n'


def seed(pusher: ImagePusher, old: int = 3) -> None:
    for n in range(old):
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30 + n))
    pusher.push_image("ci/app", ["latest"], created=days_ago(40))


def only_json(receiver: HttpReceiver) -> dict:
    assert len(receiver.requests) == 1, receiver.requests
    return json.loads(receiver.requests[0].body)


def test_webhook_reports_a_run_signed_with_the_documented_schema(
    regprune_cli, registry_server, pusher, tmp_path, monkeypatch
):
    seed(pusher)
    monkeypatch.setenv("REGPRUNE_WEBHOOK_SECRET", SECRET)
    with HttpReceiver() as hook:
        write_config(
            tmp_path,
            registry_server.url,
            webhook(hook.url, extra='secret = "${REGPRUNE_WEBHOOK_SECRET}"'),
        )
        result = regprune_cli("run", "--json")
    assert result.code == 0, result.err
    assert result.err == ""
    ran = result.json()["plans"][0]
    request = hook.requests[0]
    assert (request.method, request.path) == ("POST", "/hook")
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == expected
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Regprune-Event"] == "run.deleted"
    report = only_json(hook)
    assert (report["schema"], report["version"]) == (SCHEMA, SCHEMA_VERSION)
    assert (report["event"], report["outcome"], report["exit_code"]) == ("run", "deleted", 0)
    assert (report["policy"], report["registry"], report["plan_id"]) == (
        "ci",
        "local",
        ran["plan_id"],
    )
    assert report["error"] is None
    deleted = ran["apply"]["deleted"]
    assert report["counts"]["deleted"] == len(deleted) == 3
    assert report["counts"]["planned"] == ran["summary"]["images"]
    assert report["counts"]["skipped"] == report["counts"]["failed"] == 0
    assert report["bytes"]["deleted"] == sum(item["size"] for item in deleted) > 0
    assert report["bytes"]["planned"] == ran["summary"]["bytes"]
    assert report["duration_seconds"] > 0
    assert report["host"] and report["regprune_version"]
    assert report["timestamp"] >= report["started_at"]
    assert report["plans"][0]["status"] == "done"
    assert sorted(pusher.tags("ci/app")) == ["latest"]


def test_webhook_is_retried_after_500_and_delivered(
    regprune_cli, registry_server, pusher, tmp_path
):
    seed(pusher, old=1)
    with HttpReceiver(statuses=[500, 503]) as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url, extra="retries = 2"))
        result = regprune_cli("plan")
    assert result.code == 0 and result.err == ""
    assert [r.method for r in hook.requests] == ["POST"] * 3
    bodies = {r.body for r in hook.requests}
    assert len(bodies) == 1, "every attempt sends the same report"
    report = json.loads(hook.requests[-1].body)
    assert (report["event"], report["outcome"]) == ("plan", "success")
    assert report["counts"]["planned"] == 1


def test_a_receiver_that_keeps_failing_is_one_warning_and_changes_nothing(
    regprune_cli, registry_server, pusher, tmp_path
):
    seed(pusher, old=2)
    with HttpReceiver(statuses=[500] * 10) as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url, extra="retries = 1"))
        result = regprune_cli("run")
    assert result.code == 0
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("warning: notify.hook (webhook): the report was not delivered")
    assert "HTTP 500 (2 attempts)" in lines[0]
    assert len(hook.requests) == 2
    assert sorted(pusher.tags("ci/app")) == ["latest"]


def test_a_hanging_receiver_times_out_and_the_prune_still_succeeds(
    regprune_cli, registry_server, pusher, tmp_path
):
    seed(pusher, old=2)
    with HttpReceiver(hang=5.0) as hook:
        write_config(
            tmp_path, registry_server.url, webhook(hook.url, extra="timeout = 0.5\nretries = 0")
        )
        started = time.monotonic()
        result = regprune_cli("run")
        elapsed = time.monotonic() - started
    assert result.code == 0
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: notify.hook"), result.err
    assert "no answer within 0.5s (1 attempt)" in lines[0]
    assert elapsed < 4.5, f"the run waited {elapsed:.1f}s for a hanging receiver"
    assert sorted(pusher.tags("ci/app")) == ["latest"]
    assert "Deleted 2" in result.out or "deleted 2" in result.out.lower()


def test_slack_incoming_webhook_gets_a_summary(regprune_cli, registry_server, pusher, tmp_path):
    seed(pusher, old=1)
    with HttpReceiver() as slack:
        notify = f'[notify.team]\nuse = "slack-webhook"\nurl = "{slack.url}/services/T/B/x"\non = ["deleted"]\n'
        write_config(tmp_path, registry_server.url, notify)
        result = regprune_cli("run")
    assert result.code == 0, result.err
    message = only_json(slack)
    assert slack.requests[0].path == "/services/T/B/x"
    assert message["text"].startswith(
        ":wastebasket: regprune run succeeded (ci on local): 1 deleted"
    )
    assert [block["type"] for block in message["blocks"]] == ["section", "section", "context"]
    fields = " ".join(f["text"] for f in message["blocks"][1]["fields"])
    assert "*ci* on local" in fields and "1 deleted" in fields


def test_email_report_through_a_real_smtp_server(regprune_cli, registry_server, pusher, tmp_path):
    seed(pusher, old=1)
    with SmtpReceiver() as smtp:
        notify = (
            '[notify.mail]\nuse = "email"\nhost = "127.0.0.1"\n'
            f'port = {smtp.port}\nsecurity = "none"\nfrom = "regprune@example.org"\n'
            'to = ["ops@example.org", "dev@example.org"]\non = ["success"]\n'
        )
        write_config(tmp_path, registry_server.url, notify)
        result = regprune_cli("run")
    assert result.code == 0, result.err
    assert len(smtp.messages) == 1
    sender, recipients, message = smtp.messages[0]
    assert sender == "regprune@example.org"
    assert recipients == ["ops@example.org", "dev@example.org"]
    assert message["Subject"].startswith("[regprune] regprune run succeeded (ci on local)")
    text = message.get_payload(decode=True).decode()
    report = json.loads(text[text.index("{") :])
    assert (report["outcome"], report["counts"]["deleted"]) == ("deleted", 1)
    assert "policy ci on local, plan " in text


def test_policy_and_outcome_filters(regprune_cli, registry_server, pusher, tmp_path):
    seed(pusher, old=1)
    with HttpReceiver() as hook:
        notify = (
            f'[notify.other]\nuse = "webhook"\nurl = "{hook.url}/other"\non = ["success"]\n'
            'policies = ["prod-*"]\n'
            f'[notify.ci]\nuse = "webhook"\nurl = "{hook.url}/ci"\non = ["success"]\n'
            'policies = ["c*"]\n'
            f'[notify.failures]\nuse = "webhook"\nurl = "{hook.url}/failures"\n'
            f'[notify.gc-only]\nuse = "webhook"\nurl = "{hook.url}/gc"\non = ["success"]\n'
            'commands = ["gc"]\n'
        )
        write_config(tmp_path, registry_server.url, notify)
        result = regprune_cli("run")
    assert result.code == 0, result.err
    assert [r.path for r in hook.requests] == ["/ci"]


# -- failures of plan, apply, run and gc ---------------------------------------------------


def test_a_registry_refusing_deletes_is_a_failure_report(regprune_cli, registry_factory, tmp_path):
    server = registry_factory(delete_enabled=False)
    with ImagePusher(server.url) as pusher:
        seed(pusher, old=1)
    with HttpReceiver() as hook:
        write_config(tmp_path, server.url, webhook(hook.url, on='["failure"]'))
        result = regprune_cli("run")
    assert result.code != 0
    report = only_json(hook)
    assert (report["event"], report["outcome"]) == ("run", "failure")
    assert report["exit_code"] == result.code
    error_line = next(line for line in result.err.splitlines() if line.startswith("error:"))
    assert report["error"] == error_line.removeprefix("error: ")
    assert "delete" in report["error"].lower()
    assert report["counts"]["deleted"] == 0


def test_a_broken_policy_is_reported(regprune_cli, registry_server, tmp_path):
    broken = POLICY.replace('use = "age", older_than = "14d"', 'use = "agee"')
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url), policy=broken)
        result = regprune_cli("plan")
    assert result.code == 2
    report = only_json(hook)
    assert (report["event"], report["outcome"], report["exit_code"]) == ("plan", "failure", 2)
    assert "unknown selector 'agee'" in report["error"]
    assert report["plans"] == [] and report["policy"] is None


def test_a_policy_the_config_model_refuses_is_still_reported(
    regprune_cli, registry_server, tmp_path
):
    # selectors missing: the whole file is refused, but its [notify] tables still load.
    broken = POLICY.replace('selectors = [{{ use = "age", older_than = "14d" }}]\n', "")
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url), policy=broken)
        result = regprune_cli("run", "--yes")
    assert result.code == 2
    report = only_json(hook)
    assert report["outcome"] == "failure"
    assert "policy.ci.selectors: required key is missing" in report["error"]


def test_a_failing_in_use_command_is_reported(regprune_cli, registry_server, pusher, tmp_path):
    # The case: a nightly run whose in_use command failed.
    seed(pusher, old=1)
    policy = POLICY.replace(
        'approval = "auto"',
        'approval = "auto"\nprotectors = [{{ use = "in_use", command = ["sh", "-c", "echo no cluster >&2; exit 4"] }}]',
    )
    with HttpReceiver() as hook:
        write_config(
            tmp_path, registry_server.url, webhook(hook.url, on='["failure"]'), policy=policy
        )
        result = regprune_cli("run")
    assert result.code != 0
    report = only_json(hook)
    assert (report["event"], report["outcome"], report["exit_code"]) == (
        "run",
        "failure",
        result.code,
    )
    assert "in_use: command: " in report["error"]
    assert "exited with status 4: no cluster" in report["error"]
    assert result.err == f"error: {report['error']}\n"
    assert sorted(pusher.tags("ci/app")) == ["build-0", "latest"]


def test_a_refused_approval_is_reported(regprune_cli, registry_server, pusher, tmp_path):
    # approval "cli" with no terminal and no --yes: refused, nothing deleted.
    seed(pusher, old=1)
    policy = POLICY.replace('approval = "auto"', 'approval = "cli"')
    with HttpReceiver() as hook:
        write_config(
            tmp_path, registry_server.url, webhook(hook.url, on='["failure"]'), policy=policy
        )
        result = regprune_cli("run")
    assert result.code != 0
    report = only_json(hook)
    assert report["outcome"] == "failure" and report["policy"] == "ci"
    assert "needs approval and there is no terminal to ask" in report["error"]
    assert report["plans"][0]["status"] == "pending" and report["counts"]["deleted"] == 0
    assert sorted(pusher.tags("ci/app")) == ["build-0", "latest"]


def test_apply_of_an_unknown_plan_is_reported(regprune_cli, registry_server, tmp_path):
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url))
        result = regprune_cli("apply", "deadbeef", "--yes")
    assert result.code == 2
    report = only_json(hook)
    assert (report["event"], report["outcome"]) == ("apply", "failure")
    assert "deadbeef" in report["error"]


def test_an_unreachable_registry_is_a_plan_failure_report(regprune_cli, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with HttpReceiver() as hook:
        write_config(tmp_path, f"http://127.0.0.1:{port}", webhook(hook.url))
        result = regprune_cli("plan")
    assert result.code != 0
    report = only_json(hook)
    assert (report["event"], report["outcome"]) == ("plan", "failure")
    assert str(port) in report["error"]


def test_a_failing_gc_command_is_reported(regprune_cli, registry_server, tmp_path):
    gc = '\n[registry.local.gc]\ncommand = ["sh", "-c", "echo broken >&2; exit 3"]\n'
    policy = POLICY.replace("\n[policy.ci]", gc + "\n[policy.ci]")
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url), policy=policy)
        result = regprune_cli("gc")
    assert result.code == 1
    report = only_json(hook)
    assert (report["event"], report["outcome"], report["registry"]) == ("gc", "failure", "local")
    assert report["gc"][0]["ok"] is False and report["gc"][0]["exit_code"] == 3
    assert report["error"] == "gc of local failed (exit code 3)"


def test_apply_with_a_failed_item_names_it(regprune_cli, registry_server, pusher, tmp_path):
    seed(pusher, old=1)
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url, on='["success"]'))
        planned = regprune_cli("plan", "--json")
        assert planned.code == 0
        assert len(hook.requests) == 1  # the plan's success
    data = planned.json()
    plan_id = (data[0] if isinstance(data, list) else data)["plan_id"]
    registry_server.restart(delete_enabled=False)
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url, on='["failure"]'))
        result = regprune_cli("apply", plan_id, "--yes")
    assert result.code != 0
    report = only_json(hook)
    assert (report["event"], report["plan_id"]) == ("apply", plan_id)
    assert report["outcome"] == "failure" and report["error"]


def test_help_of_a_command_is_no_run(regprune_cli, registry_server, tmp_path):
    with HttpReceiver() as hook:
        write_config(tmp_path, registry_server.url, webhook(hook.url))
        helped = regprune_cli("plan", "--help")
        bad = regprune_cli("plan", "--no-such-flag")
    assert helped.code == 0 and bad.code == 2
    # --help reports nothing; a command line that cannot run is a failure like any other.
    report = only_json(hook)
    assert (report["event"], report["outcome"], report["exit_code"]) == ("plan", "failure", 2)
    assert "no such option" in report["error"].lower()


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        (
            '[notify.x]\nuse = "pager"\n',
            "notify.x.use: unknown notifier 'pager' (available: email, slack-webhook, webhook)",
        ),
        ('[notify.x]\nuse = "webhook"\n', "notify.x: url"),
        ('[notify.x]\nuse = "webhook"\nurl = "ftp://h/x"\n', "is not an http:// or https:// URL"),
        ('[notify.x]\nuse = "webhook"\nurl = "http://h/x"\ntimeout = 0\n', "notify.x: timeout"),
        (
            '[notify.x]\nuse = "webhook"\nurl = "http://h/x"\non = ["always"]\n',
            "notify.x.on: 'always' is not an outcome: use 'failure', 'success', 'deleted'",
        ),
        (
            '[notify.x]\nuse = "email"\nhost = "h"\nfrom = "a@b"\nto = ["c@d"]\nusername = "u"\n',
            "username and password go together",
        ),
        ('[notify.x]\nuse = "email"\nhost = "h"\nfrom = "a@b"\nto = []\n', "notify.x: to"),
        ('[notify."bad name"]\nuse = "webhook"\n', "invalid name"),
    ],
)
def test_bad_notify_config_is_one_line_exit_2(regprune_cli, tmp_path, notify, expected):
    write_config(tmp_path, "http://127.0.0.1:1", notify)
    result = regprune_cli("plan")
    assert result.code == 2
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert expected in lines[0]


def test_the_slack_summary_escapes_what_the_run_quotes(regprune_cli, registry_server, tmp_path):
    """An error line quotes the config: in mrkdwn it must stay text, never a ping."""
    broken = POLICY.replace('use = "age", older_than = "14d"', 'use = "<!channel> & co"')
    with HttpReceiver() as slack:
        notify = (
            f'[notify.team]\nuse = "slack-webhook"\nurl = "{slack.url}/hook"\non = ["failure"]\n'
        )
        write_config(tmp_path, registry_server.url, notify, policy=broken)
        result = regprune_cli("plan")
    assert result.code == 2
    text = only_json(slack)["text"]
    assert "unknown selector '&lt;!channel&gt; &amp; co'" in text
    assert "<!channel>" not in text


def test_a_notifier_with_an_invalid_name_is_refused_and_never_used(
    regprune_cli, registry_server, tmp_path
):
    with HttpReceiver() as hook:
        invalid = webhook(hook.url).replace("[notify.hook]", '[notify."a b"]')
        write_config(tmp_path, registry_server.url, invalid)
        result = regprune_cli("plan")
    assert result.code == 2
    lines = result.err.splitlines()
    assert len(lines) == 1 and "invalid name" in lines[0], result.err  # no delivery warning
    assert hook.requests == []


def test_a_mail_server_that_hangs_up_is_one_plain_warning(regprune_cli, registry_server, tmp_path):
    """A real socket that accepts and closes: smtplib says "Connection unexpectedly
    closed", which must not read like a bug in regprune."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = server.accept()
                connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        notify = (
            '[notify.mail]\nuse = "email"\nhost = "127.0.0.1"\n'
            f'port = {port}\nsecurity = "none"\nfrom = "regprune@example.org"\n'
            'to = ["ops@example.org"]\non = ["success"]\n'
        )
        write_config(tmp_path, registry_server.url, notify)
        result = regprune_cli("plan")
    finally:
        server.close()
    assert result.code == 0, result.err
    [warning] = [line for line in result.err.splitlines() if "notify.mail" in line]
    assert "closed the connection before the report was sent" in warning
    assert "unexpected" not in result.err.lower()


def test_a_config_saved_with_a_byte_order_mark_is_read(regprune_cli, registry_server, tmp_path):
    path = write_config(tmp_path, registry_server.url, "")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = regprune_cli("plan", "--json")
    assert result.code == 0, result.err
