"""The scan's pipelined GETs (``RegistryClient.get_manifests`` / ``get_blobs``).

Real sockets throughout: a real registry for what must match the one-by-one GETs,
and a scripted HTTP/1.1 server on loopback for what a registry may do to a pipeline
(close a keep-alive connection, say ``Connection: close`` or reset mid-pipeline,
answer slowly and unevenly, trickle, challenge, refuse with 503, send too much).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regprune.errors import RegistryError, RegistryUnreachable
from regprune.mediatypes import OCI_CONFIG, OCI_MANIFEST
from regprune.registry import Credentials, RegistryClient, _pipeline, _session
from regprune.testing import APPROVE_ALL, days_ago, make_engine, make_self_signed_cert
from regprune.testing.plans import DEFAULT_POLICY

# --- a scripted HTTP/1.1 server ------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request the scripted server read."""

    connection: int  # 0, 1, ... in accept order
    index: int  # 0, 1, ... on its connection
    method: str
    target: str
    headers: dict[str, str]


# What the script answers to one request: the answer's bytes, a Trickle of them,
# "close" (close the connection without answering) or "reset" (close it with a TCP RST).
Script = Callable[[Seen], "bytes | str | Trickle"]


class ScriptedServer:
    """A threaded raw-socket server: reads request heads as they arrive (pipelined or
    not) and writes each answer the script gives, in order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._connections = 0
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                number = self._connections
                self._connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        index = 0
        try:
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
                line, *fields = head.split("\r\n")
                method, target, _ = line.split(" ")
                headers = {}
                for field in fields:
                    name, _, value = field.partition(":")
                    headers[name.strip().lower()] = value.strip()
                seen = Seen(number, index, method, target, headers)
                index += 1
                with self._lock:
                    self.seen.append(seen)
                answer = self.script(seen)
                if answer == "close":
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if answer == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if isinstance(answer, Trickle):
                    for offset in range(len(answer.data)):
                        conn.sendall(answer.data[offset : offset + 1])
                        time.sleep(answer.interval)
                    continue
                assert isinstance(answer, bytes)
                conn.sendall(answer)
                if b"\r\nConnection: close\r\n" in answer.partition(b"\r\n\r\n")[0] + b"\r\n":
                    return  # as it said: nothing more is read on this connection
        except OSError:
            return
        finally:
            conn.close()

    @property
    def connections(self) -> int:
        return self._connections

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _manifest(n: int) -> bytes:
    config = hashlib.sha256(b"config %d" % n).hexdigest()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{config}", "size": 9},
            "layers": [],
            "annotations": {"n": str(n)},
        }
    ).encode()


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def answer_bytes(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, chunked: bool = False
) -> bytes:
    fields = dict(headers or {})
    if chunked:
        fields["Transfer-Encoding"] = "chunked"
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
            for i in range(0, len(body), 7)
        )
        payload += b"0\r\n\r\n"
    else:
        fields["Content-Length"] = str(len(body))
        payload = body
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode() + b"\r\n" + payload


def manifest_answer(target: str, **options: Any) -> bytes:
    """The 200 answer for /v2/<repo>/manifests/t<N>: manifest N, or a 404 for t-missing."""
    tag = target.rsplit("/", 1)[1]
    if tag == "t-missing":
        return answer_bytes(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
    body = _manifest(int(tag[1:]))
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": _digest(body)}
    return answer_bytes(200, body, headers, **options)


def careful(server: ScriptedServer) -> int:
    """Requests that came through httpx (it says Connection: keep-alive; the pipeline
    does not), i.e. sent again the careful way."""
    return sum(1 for seen in server.seen if "connection" in seen.headers)


def refs(count: int) -> list[tuple[str, str]]:
    return [(f"repo/{n % 3}", f"t{n}") for n in range(count)]


def assert_right(results: list[Any], references: list[tuple[str, str]]) -> None:
    """Each result is the manifest of its own reference, in input order."""
    assert len(results) == len(references)
    for (_, tag), manifest in zip(references, results, strict=True):
        if tag == "t-missing":
            assert manifest is None
            continue
        body = _manifest(int(tag[1:]))
        assert manifest is not None
        assert (manifest.content, manifest.digest) == (body, _digest(body))


# --- against a real registry -----------------------------------------------------------------


def test_pipelined_manifests_and_blobs_match_the_one_by_one_gets(registry_server, pusher):
    images = [pusher.push_image(f"ci/app-{n % 3}", [f"v{n}"]) for n in range(12)]
    references = [(f"ci/app-{n % 3}", f"v{n}") for n in range(12)] + [("ci/app-0", "nope")]
    with RegistryClient(registry_server.url, concurrency=4) as client:
        batch = client.get_manifests(references)
        assert client.requests_by_method == {"GET": len(references)}  # one request each
        one_by_one = [client.get_manifest(*ref) for ref in references[:-1]]
        assert batch[-1] is None
        assert batch[:-1] == one_by_one
        assert [m.digest for m in batch[:-1] if m] == [image.digest for image in images]
        configs = [
            (ref[0], m.data["config"]["digest"])
            for ref, m in zip(references, batch, strict=True)
            if m
        ]
        missing = ("ci/app-0", "sha256:" + "0" * 64)
        blobs = client.get_blobs([*configs, missing])
        assert blobs[:-1] == [client.get_blob(*ref) for ref in configs]
        assert blobs[-1] is None


def test_pipelined_gets_over_tls_with_a_ca_file(registry_factory, tmp_path, monkeypatch):
    cert, key = make_self_signed_cert(tmp_path / "tls")
    server = registry_factory(tls=(cert, key))
    sent = _record_pipelined(monkeypatch)
    with RegistryClient(server.url, ca_file=str(cert)) as client:
        assert client.get_manifests([("none", "v1"), ("none", "v2")]) == [None, None]
    assert len(sent) == 2  # they went the fast way, verified by the CA file


def test_only_gets_are_ever_pipelined(registry_server, pusher, tmp_path, monkeypatch):
    """Safety: a DELETE (or PUT) resent after a dropped connection could delete twice."""
    for n in range(4):
        pusher.push_image("ci/app", [f"build-{n}"], created=days_ago(30 + n))
    sent = _record_pipelined(monkeypatch)
    policy = {"selectors": [{"use": "age", "older_than": "7d"}]}
    engine = make_engine(registry_server.url, policy, state_dir=tmp_path)
    try:
        plan = engine.plan(DEFAULT_POLICY)
        assert len(plan.delete) == 4
        engine.apply(plan.id, context=APPROVE_ALL)
        deletes = sum(c.requests_by_method.get("DELETE", 0) for c in engine._clients.values())
    finally:
        engine.close()
        engine.state.close()
    assert deletes >= 4
    assert sent and all(head.startswith(b"GET ") for head in sent)


def _record_pipelined(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    sent: list[bytes] = []
    real = _pipeline.fetch_pipelined

    def recording(endpoint: Any, requests: Any, **options: Any) -> Any:
        sent.extend(requests)
        return real(endpoint, requests, **options)

    monkeypatch.setattr(_session, "fetch_pipelined", recording)
    return sent


# --- what a registry may do to a pipeline ----------------------------------------------------


def test_a_registry_closing_keep_alive_connections_every_few_answers(scripted):
    # Like a server with a keep-alive request limit: answers 3, then closes, no warning.
    def script(seen: Seen) -> bytes | str:
        return "close" if seen.index == 3 else manifest_answer(seen.target)

    server = scripted(script)
    references = [*refs(40), ("repo/0", "t-missing")]
    with RegistryClient(server.url, concurrency=8) as client:
        results = client.get_manifests(references)
        counted = client.request_count
    assert_right(results, references)
    assert server.connections > 4  # it did reconnect
    # Every request put on the wire is counted, the re-sent ones too (and those the
    # server never read, as it closed).
    assert counted >= len(server.seen) > len(references)
    assert careful(server) == 0  # the pipeline itself sent the rest again


def test_connection_close_mid_pipeline_sends_the_rest_again(scripted):
    def script(seen: Seen) -> bytes | str:
        answer = manifest_answer(seen.target)
        if seen.index == 2:  # then it stops reading this connection
            return answer.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
        return answer

    server = scripted(script)
    references = refs(30)
    with RegistryClient(server.url, concurrency=8) as client:
        results = client.get_manifests(references)
    assert_right(results, references)
    assert server.connections > 4  # each connection answered 3, then said close
    assert careful(server) == 0


def test_a_reset_mid_pipeline_loses_nothing(scripted):
    resets = {"left": 3}

    def script(seen: Seen) -> bytes | str:
        if seen.index == 2 and resets["left"] > 0:
            resets["left"] -= 1
            return "reset"
        return manifest_answer(seen.target)

    server = scripted(script)
    references = refs(25)
    with RegistryClient(server.url, concurrency=4, backoff=0) as client:
        results = client.get_manifests(references)
    assert_right(results, references)
    assert resets["left"] == 0
    assert careful(server) == 0


def test_uneven_delays_on_several_connections_keep_every_answer_with_its_request(scripted):
    rng = random.Random(9)
    delays = {f"t{n}": rng.choice([0, 0, 0, 0.002, 0.01]) for n in range(60)}

    def script(seen: Seen) -> bytes | str:
        time.sleep(delays.get(seen.target.rsplit("/", 1)[1], 0))
        return manifest_answer(seen.target, chunked=seen.index % 2 == 1)

    server = scripted(script)
    references = refs(60)
    rng.shuffle(references)
    with RegistryClient(server.url, concurrency=8) as client:
        results = client.get_manifests(references)
    assert_right(results, references)
    assert server.connections == _session.PIPELINE_CONNECTIONS
    assert max(seen.index for seen in server.seen) > 3  # it really was pipelined


def test_a_basic_challenge_is_answered_once_and_the_rest_goes_with_credentials(scripted):
    good = "Basic " + base64.b64encode(b"ci:pw").decode()

    def script(seen: Seen) -> bytes | str:
        if seen.headers.get("authorization") != good:
            return answer_bytes(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})
        return manifest_answer(seen.target)

    server = scripted(script)
    references = refs(30)
    with RegistryClient(server.url, concurrency=8, credentials=Credentials("ci", "pw")) as c:
        results = c.get_manifests(references)
        # Learned from that batch: the next one goes with credentials up front.
        before = len(server.seen)
        assert_right(c.get_manifests(references), references)
    assert_right(results, references)
    assert len(server.seen) - before == len(references)
    assert all(s.headers.get("authorization") == good for s in server.seen[before:])


def test_503_with_retry_after_goes_the_careful_way(scripted):
    busy = {"left": 1}

    def script(seen: Seen) -> bytes | str:
        if busy["left"]:
            busy["left"] -= 1
            return answer_bytes(503, b"busy", {"Retry-After": "3"})
        return manifest_answer(seen.target)

    server = scripted(script)
    references = refs(20)
    with RegistryClient(server.url, concurrency=4) as client:
        waits: list[float] = []
        client._sleep = waits.append
        results = client.get_manifests(references)
    assert_right(results, references)
    assert len(server.seen) >= len(references) + 1
    assert careful(server) > 0 and waits  # httpx retried, as told by Retry-After
    assert min(waits) == 3


def test_a_trickling_registry_cannot_hold_a_batch_past_its_timeout(scripted):
    # 50 bytes/s: each answer would take seconds, far over the 0.5 s timeout.
    server = scripted(lambda seen: Trickle(manifest_answer(seen.target), 0.02))
    with (
        RegistryClient(server.url, concurrency=2, timeout=0.5, retries=0) as client,
        pytest.raises(RegistryUnreachable, match="timed out"),
    ):
        client.get_manifests(refs(4))


def test_an_answer_over_the_size_limit_is_refused(scripted, monkeypatch):
    monkeypatch.setattr(_session, "MAX_ANSWER_BYTES", 1000)
    big = json.dumps({"schemaVersion": 2, "layers": [], "pad": "x" * 2000}).encode()
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": _digest(big)}
    for chunked in (False, True):
        server = scripted(lambda seen, c=chunked: answer_bytes(200, big, headers, chunked=c))
        with (
            RegistryClient(server.url, concurrency=4) as client,
            pytest.raises(RegistryError, match="sent more than 1,000 bytes"),
        ):
            client.get_manifests(refs(6))


def test_a_proxy_from_the_environment_carries_every_request(scripted, monkeypatch):
    """Pipelining must not bypass an HTTP(S)_PROXY the user set for this registry."""
    direct = scripted(lambda seen: manifest_answer(seen.target))
    proxy = scripted(lambda seen: manifest_answer(seen.target))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    references = refs(5)
    with RegistryClient(direct.url, concurrency=4) as client:
        assert_right(client.get_manifests(references), references)
    assert direct.seen == []
    assert len(proxy.seen) == len(references)
    assert all(s.target.startswith(direct.url + "/v2/") for s in proxy.seen)  # proxy form


def test_an_injected_transport_sees_every_request():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        answer = manifest_answer(request.url.path)
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        headers = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n")[1:]]
        return httpx.Response(status, headers=headers, content=body)

    references = [*refs(5), ("repo/1", "t-missing")]
    transport = httpx.MockTransport(handler)
    with RegistryClient("http://registry.test", transport=transport) as client:
        assert_right(client.get_manifests(references), references)
    assert len(seen) == len(references)


def test_a_reference_that_needs_escaping_goes_the_careful_way(scripted):
    server = scripted(lambda seen: manifest_answer(seen.target.replace("%20", "")))
    with RegistryClient(server.url) as client:
        results = client.get_manifests([("repo/0", "t1"), ("repo/0", "t 2")])
    assert [m.digest if m else None for m in results] == [
        _digest(_manifest(1)),
        _digest(_manifest(2)),
    ]
    assert {s.target for s in server.seen} == {
        "/v2/repo/0/manifests/t1",
        "/v2/repo/0/manifests/t%202",
    }


@given(st.text(min_size=1, max_size=40))
def test_no_target_with_a_space_or_a_line_break_is_pipelined(text):
    target = "/v2/" + text
    if any(char in text for char in " \r\n\t\x00"):
        assert not _pipeline.safe_target(target)
    if _pipeline.safe_target(target):
        assert target.isascii() and target.isprintable() and " " not in target


@dataclass(frozen=True)
class Trickle:
    """An answer the scripted server sends one byte at a time."""

    data: bytes
    interval: float
