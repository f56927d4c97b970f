"""``regprune listen`` against real registries (2.8.2 and 3.1.1) that send their
notifications to it on loopback: skopeo's pulls and pushes are recorded, regprune's
own reads and ignored agents are not, duplicates count once, a listener restart
loses nothing, bad tokens and bodies are refused with one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from regprune.cli import run
from regprune.mediatypes import DOCKER_MANIFEST
from regprune.state import State
from regprune.testing.server import notification_endpoint
from tests.distributions import pusher_for
from tests.listen_helpers import (
    TOKEN,
    envelope,
    event,
    get_manifest,
    listener_factory,
    skopeo_pull,
    wait_for,
)

VERSIONS = [2, 3]
HEARTBEAT = timedelta(seconds=1)
MAX_GAP = timedelta(minutes=10)


@pytest.fixture
def start_listener(tmp_path: Path):
    yield from listener_factory(tmp_path)


def notify(
    listener_url: str, path: str = "/events/main", token: str = TOKEN
) -> list[dict[str, Any]]:
    return [notification_endpoint(listener_url + path, token)]


def pulls(state: State, digest: str, repository: str = "app") -> int:
    found = state.usage.get("main", repository, [digest]).get(digest)
    return found.pulls if found else 0


# -- real registries -------------------------------------------------------------------------


@pytest.mark.parametrize("major", VERSIONS)
def test_pushes_and_skopeo_pulls_are_recorded(major, start_registry, start_listener, tmp_path):
    listening = start_listener()
    registry = start_registry(major, notify=notify(listening.url))
    with pusher_for(registry) as pusher:
        image = pusher.push_image("app", ["v1"], layers=2)
    usage = listening.state.usage
    pushed = wait_for(
        lambda: usage.get("main", "app", [image.digest]).get(image.digest), what="push"
    )
    assert pushed.first_push is not None and pushed.pulls == 0

    skopeo_pull(registry.url, "app:v1", tmp_path / "copy1")
    got = wait_for(
        lambda: (u := usage.get("main", "app", [image.digest])[image.digest]).pulls and u,
        what="skopeo pull",
    )
    # One manifest pull: skopeo's config and layer GETs are blob events, not pulls.
    assert got.pulls == 1
    assert got.last_pull_tag == "v1"
    assert got.last_pull_agent and got.last_pull_agent.startswith("skopeo/")
    assert got.agents == (got.last_pull_agent,)
    assert got.last_pull is not None and abs(got.last_pull - datetime.now(UTC)) < timedelta(
        minutes=1
    )
    assert got.first_push == pushed.first_push

    skopeo_pull(registry.url, f"app@{image.digest}", tmp_path / "copy2")
    wait_for(lambda: pulls(listening.state, image.digest) == 2, what="second pull")
    assert usage.get("main", "app", [image.digest])[image.digest].last_pull_tag is None
    assert not any("malformed" in line for line in listening.lines)
    coverage = usage.coverage("main", datetime.now(UTC), heartbeat=HEARTBEAT, max_gap=MAX_GAP)
    assert coverage.since is not None


@pytest.mark.parametrize("major", VERSIONS)
def test_regprune_reads_and_ignored_agents_are_not_pulls(
    major, start_registry, start_listener, tmp_path, capsys
):
    # Images pushed before the registry notifies anyone: only reads reach the listener.
    registry = start_registry(major)
    with pusher_for(registry) as pusher:
        image = pusher.push_image("app", ["v1"])
        other = pusher.push_image("app", ["v2"], seed="other")
    listening = start_listener(ignore_agents=["^skopeo/"])
    registry.restart(notify=notify(listening.url))

    config = tmp_path / "regprune.toml"
    config.write_text(f'[registry.main]\nurl = "{registry.url}"\n')
    for command in (["ls"], ["plan", "--registry", registry.url, "--repo", "app", "--keep", "1"]):
        code = run(["--state", str(tmp_path / "cli.db"), "--config", str(config), *command])
        assert code == 0, capsys.readouterr().err
    skopeo_pull(registry.url, "app:v1", tmp_path / "copy")
    # Delivery is in order: once this pull is recorded, every earlier read was delivered.
    get_manifest(registry.url, "app", "v2", agent="containerd/1.7.0")
    wait_for(lambda: pulls(listening.state, other.digest) == 1, what="containerd pull")

    assert pulls(listening.state, image.digest) == 0
    assert listening.listener.counters.ignored >= 3  # ls, plan and skopeo each read v1
    recorded = listening.state.usage.get("main", "app", [other.digest])[other.digest]
    assert recorded.last_pull_agent == "containerd/1.7.0"
    assert recorded.first_push is None
    # regprune's reads still proved delivery: the session's coverage started.
    (session,) = listening.state.usage.sessions("main")
    assert session.first_event is not None


@pytest.mark.parametrize("major", VERSIONS)
def test_listener_restart_loses_nothing_and_keeps_coverage(major, start_registry, start_listener):
    first = start_listener()
    registry = start_registry(major, notify=notify(first.url))
    with pusher_for(registry) as pusher:
        image = pusher.push_image("app", ["v1"])
    wait_for(lambda: first.state.usage.get("main", "app", [image.digest]), what="push")
    port = first.port
    first.listener.stop()

    for _ in range(5):  # the registry queues these and retries while nobody listens
        get_manifest(registry.url, "app", "v1", agent="containerd/1.7.0")
    assert pulls(first.state, image.digest) == 0
    second = start_listener(port=port)
    wait_for(lambda: pulls(second.state, image.digest) == 5, what="queued pulls")
    assert second.state.usage.event_count("main") == 6

    sessions = second.state.usage.sessions("main")
    assert len(sessions) == 2 and sessions[0].ended is not None
    coverage = second.state.usage.coverage(
        "main", datetime.now(UTC), heartbeat=HEARTBEAT, max_gap=MAX_GAP
    )
    assert coverage.since == sessions[0].first_event  # the short gap is bridged
    tight = second.state.usage.coverage(
        "main", datetime.now(UTC), heartbeat=HEARTBEAT, max_gap=timedelta(microseconds=1)
    )
    assert tight.since == sessions[1].first_event


@pytest.mark.parametrize("major", VERSIONS)
def test_a_registry_with_the_wrong_token_is_refused_and_retries(
    major, start_registry, start_listener
):
    listening = start_listener()
    registry = start_registry(major, notify=notify(listening.url, token="not-the-token"))
    with pusher_for(registry) as pusher:
        pusher.push_image("app", ["v1"])
    wait_for(lambda: listening.listener.counters.refused >= 2, what="retried 401s")
    assert listening.state.usage.event_count("main") == 0
    refusals = [line for line in listening.lines if "401" in line]
    assert refusals and all("wrong bearer token" in line for line in refusals)
    assert not any("not-the-token" in line or TOKEN in line for line in listening.lines)


# -- deliveries, synthetic ------------------------------------------------------------------


def test_duplicate_delivery_counts_once(start_listener):
    listening = start_listener()
    body = envelope(event("pull"), event("push", tag="v1"))
    for _ in range(3):
        assert listening.post("/events/main", body).status_code == 200
    digest = body["events"][0]["target"]["digest"]
    found = listening.state.usage.get("main", "app", [digest])[digest]
    assert found.pulls == 1 and found.first_push is not None
    assert listening.state.usage.event_count("main") == 2
    assert listening.listener._writer.snapshot().duplicates == 4  # type: ignore[union-attr]


def test_out_of_order_events(start_listener):
    listening = start_listener()
    now = datetime.now(UTC).replace(microsecond=0)
    newer = event("pull", tag="new", agent="containerd/1.7.0", timestamp=now)
    older = event("pull", tag="old", agent="docker/24", timestamp=now - timedelta(hours=1))
    late_push = event("push", timestamp=now - timedelta(minutes=5))
    early_push = event("push", timestamp=now - timedelta(days=1))
    for one in (newer, late_push, older, early_push):
        assert listening.post("/events/main", envelope(one)).status_code == 200
    digest = newer["target"]["digest"]
    found = listening.state.usage.get("main", "app", [digest])[digest]
    assert found.pulls == 2
    assert (found.last_pull, found.last_pull_tag) == (now, "new")
    assert found.first_push == now - timedelta(days=1)
    assert found.agents == ("containerd/1.7.0", "docker/24")


def test_what_is_not_use_is_skipped(start_listener):
    listening = start_listener(ignore_agents=["^trivy/"])
    digest = "sha256:" + "b" * 64
    skipped = [
        event("pull", media_type="application/octet-stream", digest=digest),  # a layer
        event("pull", media_type="application/vnd.oci.image.config.v1+json", digest=digest),
        event("delete", digest=digest),
        event("mount", media_type="application/octet-stream", digest=digest),
        event("pull", agent="regprune/0.1.0", digest=digest),
        event("pull", agent="trivy/0.50", digest=digest),
    ]
    counted = event("pull", media_type=DOCKER_MANIFEST, digest=digest, agent="docker/24")
    assert listening.post("/events/main", envelope(*skipped, counted)).status_code == 200
    assert pulls(listening.state, digest) == 1
    assert listening.listener.counters.ignored == len(skipped)


def test_future_timestamp_is_clamped(start_listener):
    listening = start_listener()
    ahead = event("pull", timestamp=datetime.now(UTC) + timedelta(days=2))
    before = datetime.now(UTC)
    assert listening.post("/events/main", envelope(ahead)).status_code == 200
    digest = ahead["target"]["digest"]
    last = listening.state.usage.get("main", "app", [digest])[digest].last_pull
    assert last is not None and before <= last <= datetime.now(UTC)
    assert any("ahead" in line and ahead["id"] in line for line in listening.lines)


def test_bad_tokens_are_refused_and_never_logged(start_listener):
    listening = start_listener()
    body = envelope(event("pull"))
    assert listening.post("/events/main", body, token=None).status_code == 401
    assert listening.post("/events/main", body, token="guess-" + TOKEN).status_code == 401
    assert listening.post("/events/main", body, token=None, Authorization=TOKEN).status_code == 401
    assert listening.state.usage.event_count("main") == 0
    assert len([line for line in listening.lines if ": 401: " in line]) == 3
    assert not any(TOKEN in line or "Bearer" in line for line in listening.lines)
    assert listening.post("/events/main", body).status_code == 200


def test_malformed_bodies_get_one_line_and_the_server_keeps_serving(start_listener):
    listening = start_listener()
    good = event("pull")
    cases = [b"not json", b"\xff\xfe", b"[1, 2]", b'{"events": 3}', b"{}"]
    for body in cases:
        response = listening.post("/events/main", body)
        assert response.status_code == 400
    assert len([line for line in listening.lines if ": 400: " in line]) == len(cases)
    # Well-formed envelope, bad events: acknowledged (a retry cannot fix them), logged.
    bad_events = [
        "a string",
        {"action": "pull"},
        {**event("pull"), "timestamp": "yesterday"},
        {**event("pull"), "target": {**good["target"], "digest": "latest"}},
        {**event("pull"), "target": {"mediaType": good["target"]["mediaType"]}},
    ]
    response = listening.post("/events/main", {"events": [*bad_events, good]})
    assert response.status_code == 200
    dropped = [line for line in listening.lines if "dropped malformed" in line]
    assert len(dropped) == len(bad_events)
    assert any("'yesterday'" in line for line in dropped)
    assert pulls(listening.state, good["target"]["digest"]) == 1
    # Over the size limit, and no Content-Length: refused, the next request still served.
    too_big = f"Content-Length: {10**9}\r\nAuthorization: Bearer {TOKEN}\r\n"
    for headers, status in ((too_big, b"413"), ("", b"411")):
        with socket.create_connection(listening.listener.address) as sock:
            sock.sendall(f"POST /events/main HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 " + status)
    assert listening.post("/events/main", envelope(event("pull"))).status_code == 200


def test_registries_by_path(start_listener):
    listening = start_listener(registries=("main", "other"), registry="other")
    body = envelope(event("pull"))
    digest = body["events"][0]["target"]["digest"]
    assert listening.post("/events", body).status_code == 200
    assert listening.state.usage.get("other", "app", [digest])[digest].pulls == 1
    assert listening.post("/events/main", envelope(event("pull"))).status_code == 200
    assert pulls(listening.state, digest) == 1
    assert listening.post("/events/nope", body).status_code == 404
    assert any("/events/nope: no such registry" in line for line in listening.lines)
    unset = start_listener(registries=("main",))
    assert unset.post("/events", body).status_code == 404
    assert any("[listen] registry is not set" in line for line in unset.lines)


def test_concurrent_deliveries_are_group_committed(start_listener):
    import concurrent.futures

    listening = start_listener()
    bodies = [
        envelope(*(event("pull", digest=f"sha256:{n:064x}") for _ in range(5))) for n in range(40)
    ]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda b: listening.post("/events/main", b).status_code, bodies))
    assert codes == [200] * 40
    assert listening.state.usage.event_count("main") == 200
    totals = listening.listener._writer.snapshot()  # type: ignore[union-attr]
    assert totals.recorded == 200 and totals.batches < 40


# -- the command ----------------------------------------------------------------------------


def _config(tmp_path: Path, listen: str) -> Path:
    path = tmp_path / "regprune.toml"
    path.write_text(f'[registry.main]\nurl = "http://127.0.0.1:1"\n\n[listen]\n{listen}\n')
    return path


def _command(tmp_path: Path, config: Path, *argv: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "regprune",
            "--config",
            str(config),
            "--state",
            str(tmp_path / "state.db"),
            "listen",
            *argv,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REGPRUNE_LOAD_PLUGINS": "", **env},
    )


def test_listen_without_token_exits_2_with_one_line(tmp_path):
    for listen in ('registry = "main"', 'token = ""'):
        process = _command(tmp_path, _config(tmp_path, listen), "--port", "0")
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 2
        assert err.count("\n") == 1 and "[listen] token is not set" in err


def test_listen_refuses_a_whitespace_token_and_an_empty_host(tmp_path):
    """A blank token is no secret; an empty host would bind every interface (0.0.0.0)
    where the default is 127.0.0.1: both exit 2 with one line, before binding."""
    cases = [
        ('token = " \\t"', (), "[listen] token is only whitespace"),
        ('token = "t"\nhost = ""', (), "listen.host: empty address"),
        ('token = "t"\nhost = " "', (), "listen.host: empty address"),
        ('token = "t"\nhost = "0.0.0.0"', ("--host", ""), "--host: empty address"),
    ]
    for listen, argv, expected in cases:
        process = _command(tmp_path, _config(tmp_path, listen), "--port", "0", *argv)
        try:
            _out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:  # it listened: stop it, the assertion below says so
                process.kill()
                process.communicate()
        assert process.returncode == 2, err
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
        assert "listening on" not in err


def test_listen_bad_settings_exit_2(tmp_path):
    process = _command(tmp_path, _config(tmp_path, 'token = "t"\nignore_agents = ["(("]'))
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2 and err.count("\n") == 1 and "listen.ignore_agents" in err
    process = _command(tmp_path, _config(tmp_path, 'token = "t"\nregistry = "nope"'))
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2 and "'nope' is not a configured registry" in err


def test_listen_port_in_use_exits_2_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _command(tmp_path, _config(tmp_path, 'token = "t"'), "--port", str(port))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.strip() == f"error: cannot listen on 127.0.0.1:{port}: address already in use"


def test_listen_records_then_stops_cleanly_on_sigterm(tmp_path):
    config = _config(
        tmp_path, 'token = "${T}"\nregistry = "main"\nheartbeat = "1s"\nmax_gap = "3m"'
    )
    process = _command(tmp_path, config, "--host", "127.0.0.1", "--port", "0", T="secret-t")
    assert process.stderr is not None
    first = process.stderr.readline()
    assert "listening on http://127.0.0.1:" in first and "registries main" in first
    url = first.split("listening on ", 1)[1].split()[0]
    body = json.dumps(envelope(event("pull"))).encode()
    response = httpx.post(
        url + "/events", content=body, headers={"Authorization": "Bearer secret-t"}, trust_env=False
    )
    assert response.status_code == 200
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0
    assert "stopped: 1 deliveries, 1 events recorded" in rest
    state = State(tmp_path / "state.db")
    (session,) = state.usage.sessions("main")
    assert session.ended is not None and session.first_event is not None
    # The session carries the listener's settings: plans made elsewhere judge coverage by them.
    assert (session.heartbeat, session.max_gap) == (timedelta(seconds=1), timedelta(minutes=3))
    assert "secret-t" not in first + rest


# -- retention by use, end to end --------------------------------------------------------------


def _age_recorded_use(state_path: Path, hours: float) -> None:
    """Move everything the listener recorded ``hours`` back, as if it had listened that
    long: sessions' first event and start, and push times (pulls stay where they are,
    so a pull made in the test is recent)."""
    import sqlite3

    shift = f"-{hours * 3600:.0f} seconds"
    with sqlite3.connect(state_path) as db:
        for column in ("started", "first_event"):
            db.execute(
                f"UPDATE usage_sessions SET {column} ="
                f" strftime('%Y-%m-%dT%H:%M:%f000+00:00', {column}, ?) WHERE {column} IS NOT NULL",
                (shift,),
            )
        db.execute(
            "UPDATE usage SET first_push ="
            " strftime('%Y-%m-%dT%H:%M:%f000+00:00', first_push, ?) WHERE first_push IS NOT NULL",
            (shift,),
        )


@pytest.mark.parametrize("major", VERSIONS)
@pytest.mark.parametrize("covered_hours", [3, 0.5])
def test_unused_deletes_what_skopeo_did_not_pull_and_ignores_regprune(
    major, covered_hours, start_registry, start_listener, tmp_path, capsys
):
    listening = start_listener()
    registry = start_registry(major, notify=notify(listening.url))
    with pusher_for(registry) as pusher:
        used = pusher.push_image("app", ["used"], seed="used")
        idle = pusher.push_image("app", ["idle"], seed="idle")
        multi = pusher.push_index("app", ["multi"], seed="multi")
    usage = listening.state.usage
    wait_for(
        lambda: (
            usage.get("main", "app", [used.digest, idle.digest, multi.digest]).keys()
            == {used.digest, idle.digest, multi.digest}
        ),
        what="pushes",
    )
    config = tmp_path / "regprune.toml"
    config.write_text(
        f'[registry.main]\nurl = "{registry.url}"\n\n'
        '[policy.unused]\nregistry = "main"\nrepositories = ["app"]\n'
        'selectors = [{ use = "unused", not_pulled_for = "1h" }]\n'
    )
    cli = ["--state", str(tmp_path / "state.db"), "--config", str(config)]
    # regprune reads every manifest first: none of that is use.
    assert run([*cli, "ls", "--json"]) == 0
    skopeo_pull(registry.url, "app:used", tmp_path / "copy")
    wait_for(lambda: pulls(listening.state, used.digest) == 1, what="skopeo pull")
    assert pulls(listening.state, idle.digest) == pulls(listening.state, multi.digest) == 0
    _age_recorded_use(tmp_path / "state.db", covered_hours)
    capsys.readouterr()

    assert run([*cli, "plan", "--policy", "unused", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    deleted = {tag for item in plan["delete"] for tag in item["tags"]}
    kept = {tag: " ".join(item["reasons"]) for item in plan["keep"] for tag in item["tags"]}
    if covered_hours < 1:
        assert deleted == set()
        assert all("usage known only for 30m, not 1h" in reason for reason in kept.values())
        return
    assert deleted == {"idle", "multi"}
    assert "last pulled" in kept["used"] and "by skopeo/" in kept["used"]
    assert run([*cli, "apply", plan["plan_id"], "--yes"]) == 0
    tags = httpx.get(f"{registry.url}/v2/app/tags/list", trust_env=False).json()["tags"]
    assert tags == ["used"]
