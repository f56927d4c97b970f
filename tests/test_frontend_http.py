"""The loopback HTTP front end (tests/frontend_http.py), end to end against a real registry.

The endpoint is a real ``http.server`` on 127.0.0.1; the front end is registered with
the plugin manager by the test, never named in core.  A plan is made by the real
``regprune plan``, posted, approved (or rejected) over HTTP, and applied by the engine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pluggy
import pytest

from regprune.cli import run
from regprune.config import load_settings
from regprune.frontends import collect_front_ends
from regprune.plugin_manager import get_plugin_manager
from regprune.state import State
from regprune.testing import days_ago
from regprune.testing.images import PushError

from . import frontend_http
from .frontend_http import WebhookFrontEnd


@dataclass
class Endpoint:
    """What the fake chat service holds: posted messages, the decisions people made."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, plan_id: str, decision: str, by: str) -> None:
        reference = next(r for r, m in self.messages.items() if m["plan"] == plan_id)
        self.decisions[reference] = {"decision": decision, "by": by}


def make_handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_POST(self) -> None:
            with endpoint.lock:
                endpoint.requests.append(f"POST {self.path}")
                parts = self.path.strip("/").split("/")
                if parts == ["messages"]:
                    reference = f"msg-{len(endpoint.messages) + 1}"
                    endpoint.messages[reference] = self._body()
                    self._json(200, {"reference": reference})
                elif len(parts) == 3 and parts[0] == "messages" and parts[2] == "result":
                    endpoint.results[parts[1]] = self._body()
                    self._json(200, {})
                else:
                    self._json(404, {"error": "no such endpoint"})

        def do_GET(self) -> None:
            with endpoint.lock:
                endpoint.requests.append(f"GET {self.path}")
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "messages" and parts[2] == "decision":
                    if parts[1] not in endpoint.messages:
                        self._json(404, {"error": "no such message"})
                        return
                    self._json(200, endpoint.decisions.get(parts[1], {"decision": "pending"}))
                else:
                    self._json(404, {"error": "no such endpoint"})

    return Handler


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def manager() -> pluggy.PluginManager:
    """Built-ins plus the webhook front end, registered here and nowhere in core."""
    return get_plugin_manager(load_entrypoints=False, extra_plugins=[frontend_http])


CONFIG = """\
[registry.local]
url = "{registry}"

[policy.ci]
registry = "local"
repositories = ["ci/*"]
keep_tags = ["^latest$"]
selectors = [{{ use = "age", older_than = "14d" }}]
approval = "webhook"

[webhook]
url = "{endpoint}"
channel = "ops-room"
"""


def write_config(tmp_path: Path, registry: str, endpoint: str, extra: str = "") -> Path:
    path = tmp_path / "regprune.toml"
    path.write_text(CONFIG.format(registry=registry, endpoint=endpoint) + extra, encoding="utf-8")
    return path


def plan_with_cli(config: Path, state: Path, manager: pluggy.PluginManager, capsys) -> str:
    code = run(["--config", str(config), "--state", str(state), "plan", "--json"], manager=manager)
    assert code == 0
    return str(json.loads(capsys.readouterr().out)["plan_id"])


def test_plan_posted_approved_over_http_applied_and_images_gone(
    registry_server, pusher, endpoint, manager, tmp_path, capsys, isolated_cli
):
    hooks, url = endpoint
    old = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    older = pusher.push_image("ci/web", ["build-7"], created=days_ago(40))
    latest = pusher.push_image("ci/app", ["latest"], created=days_ago(30))
    new = pusher.push_image("ci/app", ["build-2"], created=days_ago(1))
    config = write_config(tmp_path, registry_server.url, url)
    state_path = tmp_path / "state.db"
    plan_id = plan_with_cli(config, state_path, manager, capsys)

    # `regprune apply` can only wait: the decision is the webhook's.
    code = run(
        ["--config", str(config), "--state", str(state_path), "apply", plan_id, "--yes"],
        manager=manager,
    )
    assert code == 2
    assert "waiting for approval" in capsys.readouterr().err

    settings = load_settings(config, front_ends=collect_front_ends(manager))
    front_end = WebhookFrontEnd(settings, state_path, manager)
    try:
        first = front_end.run_once()
        assert first.posted == [plan_id]
        assert first.applied == {} and first.rejected == []
        (reference,) = hooks.messages
        posted = hooks.messages[reference]
        assert posted["plan"] == plan_id
        assert {item["digest"] for item in posted["items"]} == {
            old.digest.split(":")[1][:12],
            older.digest.split(":")[1][:12],
        }
        with State(state_path) as state:
            message = state.messages.get("webhook", plan_id)
        assert message is not None
        assert (message.channel, message.reference) == ("ops-room", reference)

        # Nothing decided yet: a second round posts nothing again and deletes nothing.
        second = front_end.run_once()
        assert second.posted == [] and second.applied == {}
        assert pusher.resolve("ci/app", "build-1") == old.digest

        hooks.decide(plan_id, "approve", "alice")
        third = front_end.run_once()
    finally:
        front_end.close()

    assert third.applied[plan_id].status == "done"
    assert pusher.resolve("ci/app", "build-1") is None
    assert pusher.resolve("ci/web", "build-7") is None
    with pytest.raises(PushError, match="HTTP 404"):  # the manifest itself is gone
        pusher.get_manifest("ci/app", old.digest)
    assert pusher.resolve("ci/app", "latest") == latest.digest
    assert pusher.resolve("ci/app", "build-2") == new.digest
    assert hooks.results[reference] == {"status": "done", "deleted": 2}
    with State(state_path) as state:
        plan = state.plans.get(plan_id)
        decisions = state.approvals.of(plan_id)
    assert plan.status == "done"
    assert [(d.decision, d.by, d.method) for d in decisions] == [("approved", "alice", "webhook")]


def test_a_rejected_plan_leaves_everything(
    registry_server, pusher, endpoint, manager, tmp_path, capsys, isolated_cli
):
    hooks, url = endpoint
    old = pusher.push_image("ci/app", ["build-1"], created=days_ago(30))
    config = write_config(tmp_path, registry_server.url, url)
    state_path = tmp_path / "state.db"
    plan_id = plan_with_cli(config, state_path, manager, capsys)
    settings = load_settings(config, front_ends=collect_front_ends(manager))
    front_end = WebhookFrontEnd(settings, state_path, manager)
    try:
        front_end.run_once()
        hooks.decide(plan_id, "reject", "bob")
        done = front_end.run_once()
        again = front_end.run_once()  # a rejected plan is never picked up again
    finally:
        front_end.close()

    assert done.rejected == [plan_id] and done.applied == {}
    assert again.rejected == [] and again.applied == {}
    assert pusher.resolve("ci/app", "build-1") == old.digest
    assert pusher.get_manifest("ci/app", old.digest).status_code == 200
    assert not any(r.endswith("/result") for r in hooks.requests)
    with State(state_path) as state:
        assert state.plans.get(plan_id).status == "rejected"
    # And the CLI cannot apply it behind the front end's back.
    code = run(
        ["--config", str(config), "--state", str(state_path), "apply", plan_id, "--yes"],
        manager=manager,
    )
    assert code == 2
    assert pusher.resolve("ci/app", "build-1") == old.digest


def test_the_webhook_section_is_validated_by_core(tmp_path, capsys, manager, isolated_cli):
    config = write_config(
        tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", extra="timeout = 0\nchanel = 'x'\n"
    )

    code = run(
        ["--config", str(config), "--state", str(tmp_path / "s.db"), "plan"], manager=manager
    )

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 2  # every problem, one line each
    assert err[0].startswith(f"error: {config}: webhook.timeout: Input should be greater than 0")
    assert err[1].startswith(f"error: {config}: webhook.chanel: unknown key")


def test_without_the_plugin_the_webhook_section_is_unknown(tmp_path, capsys, isolated_cli):
    config = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")

    code = run(["--config", str(config), "--state", str(tmp_path / "s.db"), "plan"])

    assert code == 2
    assert capsys.readouterr().err.startswith(f"error: {config}: webhook: unknown key")


def test_core_does_not_know_the_webhook_front_end():
    core = Path(__file__).resolve().parent.parent / "core"
    mentions = [
        str(path.relative_to(core))
        for path in core.rglob("*.py")
        if "webhook" in path.read_text(encoding="utf-8").lower()
        or "frontend_http" in path.read_text(encoding="utf-8")
    ]
    assert mentions == []
