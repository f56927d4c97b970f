"""Helpers for the listener tests: an in-thread `Listener` on loopback with its log
captured, envelopes shaped as Distribution sends them, and waiting for deliveries."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from regprune.mediatypes import MANIFEST_ACCEPT, OCI_MANIFEST
from regprune.state import State
from regprune.testing import find_skopeo
from regprune.usage.events import ENVELOPE_TYPE
from regprune.usage.server import Listener
from regprune.usage.settings import ListenSettings

TOKEN = "listen-test-token-5f0c"


class Running:
    """A started in-thread listener, its state DB and every line it logged."""

    def __init__(self, state: State, listener: Listener, lines: list[str]) -> None:
        self.state = state
        self.listener = listener
        self.lines = lines

    @property
    def url(self) -> str:
        host, port = self.listener.address
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self.listener.address[1]

    def post(
        self, path: str, body: bytes | dict[str, Any], token: str | None = TOKEN, **headers: str
    ) -> httpx.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": ENVELOPE_TYPE, **headers}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return httpx.post(self.url + path, content=data, headers=sent, trust_env=False, timeout=10)


def listener_factory(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """``start(registries=("main",), port=0, **ListenSettings)``; each is stopped at the end."""
    started: list[Running] = []

    def start(registries: tuple[str, ...] = ("main",), port: int = 0, **settings: Any) -> Running:
        settings.setdefault("token", TOKEN)
        settings.setdefault("heartbeat", "1s")
        state = State(tmp_path / "state.db")
        lines: list[str] = []
        listener = Listener(
            state, ListenSettings(**settings), registries, port=port, log=lines.append
        )
        listener.start()
        running = Running(state, listener, lines)
        started.append(running)
        return running

    yield start
    for running in started:
        running.listener.stop()


def event(
    action: str = "pull",
    *,
    digest: str = "sha256:" + "a" * 64,
    repository: str = "app",
    tag: str | None = "v1",
    media_type: str = OCI_MANIFEST,
    agent: str = "containerd/1.7.0",
    timestamp: datetime | str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One event as Distribution writes it (field names and shapes of 2.8 and 3.x)."""
    when = timestamp or datetime.now(UTC)
    stamp = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.%f123Z")
    target: dict[str, Any] = {
        "mediaType": media_type,
        "size": 528,
        "digest": digest,
        "length": 528,
        "repository": repository,
        "url": f"http://127.0.0.1:5000/v2/{repository}/manifests/{digest}",
    }
    if tag:
        target["tag"] = tag
    return {
        "id": event_id or str(uuid.uuid4()),
        "timestamp": stamp,
        "action": action,
        "target": target,
        "request": {
            "id": str(uuid.uuid4()),
            "addr": "10.1.2.3:41234",
            "host": "127.0.0.1:5000",
            "method": "GET" if action == "pull" else "PUT",
            "useragent": agent,
        },
        "actor": {"name": "alice"},
        "source": {"addr": "registry:5000", "instanceID": str(uuid.uuid4())},
    }


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def skopeo_pull(registry_url: str, reference: str, target: Path) -> None:
    """``skopeo copy`` an image out of the registry: manifest, config and layers."""
    host = registry_url.split("://", 1)[1]
    subprocess.run(
        [
            find_skopeo(),
            "copy",
            "--src-tls-verify=false",
            f"docker://{host}/{reference}",
            f"dir:{target}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def get_manifest(registry_url: str, repository: str, reference: str, agent: str) -> str:
    """GET a manifest with a chosen User-Agent (a client that is not regprune); its digest."""
    response = httpx.get(
        f"{registry_url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT, "User-Agent": agent},
        trust_env=False,
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]
